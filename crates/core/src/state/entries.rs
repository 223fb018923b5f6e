//! Stored values with an expiry index.
//!
//! The index makes "which keys are expired as of t" a range walk from the front instead of a
//! scan, and keeping it inside this type means no caller can update one map and forget the other.
use std::collections::{BTreeMap, BTreeSet};

use crate::key::CacheKey;
use crate::state::Entry;

/// Rough per-entry cost of a B-tree slot plus the `Entry` header, for [`Entries::mem_bytes`].
const ENTRY_OVERHEAD: usize = 96;
/// Rough cost of one expiry index slot, not counting its key copy.
const EXPIRY_OVERHEAD: usize = 48;

#[derive(Clone, Debug, Default)]
pub(crate) struct Entries {
    map: BTreeMap<CacheKey, Entry>,
    /// Exactly the `(expires_at_ms, key)` of every entry in `map` that has an expiry.
    by_expiry: BTreeSet<(u64, CacheKey)>,
    /// Sum of [`entry_mem`] over `map`.
    mem: usize,
}

fn entry_mem(key: &CacheKey, entry: &Entry) -> usize {
    let expiry = if entry.expires_at_ms.is_some() { key.size_bytes() + EXPIRY_OVERHEAD } else { 0 };
    key.size_bytes() + entry.value.len() + ENTRY_OVERHEAD + expiry
}

impl Entries {
    /// Rebuilds the index from a map (snapshot restore).
    pub(crate) fn from_map(map: BTreeMap<CacheKey, Entry>) -> Self {
        let by_expiry = map.iter().filter_map(|(k, e)| Some((e.expires_at_ms?, k.clone()))).collect();
        let mem = map.iter().map(|(k, e)| entry_mem(k, e)).sum();
        Self { map, by_expiry, mem }
    }

    pub(crate) fn map(&self) -> &BTreeMap<CacheKey, Entry> {
        &self.map
    }

    pub(crate) fn get(&self, key: &CacheKey) -> Option<&Entry> {
        self.map.get(key)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn mem_bytes(&self) -> usize {
        self.mem
    }

    /// Stores `entry` under `key`, replacing (and returning) any previous one.
    pub(crate) fn insert(&mut self, key: CacheKey, entry: Entry) -> Option<Entry> {
        // Forget the old entry before indexing the new one: both may expire at the same time.
        let old = self.map.remove(&key);
        if let Some(old) = &old {
            self.forget(&key, old);
        }
        self.mem += entry_mem(&key, &entry);
        if let Some(exp) = entry.expires_at_ms {
            self.by_expiry.insert((exp, key.clone()));
        }
        self.map.insert(key, entry);
        old
    }

    /// Removes and returns the entry under `key`.
    pub(crate) fn remove(&mut self, key: &CacheKey) -> Option<Entry> {
        let old = self.map.remove(key)?;
        self.forget(key, &old);
        Some(old)
    }

    /// Up to `limit` keys whose expiry is `<= at`, oldest first.
    pub(crate) fn expired(&self, at: u64, limit: usize) -> Vec<CacheKey> {
        self.by_expiry.iter().take_while(|(exp, _)| *exp <= at).take(limit).map(|(_, k)| k.clone()).collect()
    }

    /// Drops the index slot and accounting of an entry that left `map`.
    fn forget(&mut self, key: &CacheKey, old: &Entry) {
        self.mem -= entry_mem(key, old);
        if let Some(exp) = old.expires_at_ms {
            self.by_expiry.remove(&(exp, key.clone()));
        }
    }
}
