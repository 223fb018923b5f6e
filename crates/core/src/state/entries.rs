//! Stored values with an expiry index.
//!
//! A cache holds many small values, so what a key costs beyond its own bytes decides how much
//! fits. Each entry is one heap allocation — a [`Slot`] holding version, expiry, namespace, key
//! and value — kept in hash sets addressed by the key's bytes ([`SHARDS`] of them, so that growing
//! never moves every entry at once): about 80 bytes per key beyond
//! the namespace, key and value themselves (the slot's header, the allocator's rounding, the
//! set's pointer at its load factor), where a `BTreeMap<CacheKey, Entry>` with separately
//! allocated namespace, key and value cost about 270 (1M keys of 100-byte values: 196 against
//! 389 bytes of RSS per key).
//!
//! The expiry index makes "which keys are expired as of t" a range walk from the front instead
//! of a scan, and keeping it inside this type means no caller can update one map and forget the
//! other.
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

use bytes::Bytes;
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use xxhash_rust::xxh3::xxh3_64;

use crate::key::CacheKey;
use crate::state::Entry;

/// Per-entry cost beyond the slot's own bytes: the set's pointer and control byte at its usual
/// load, and the allocator's rounding and header. For [`Entries::mem_bytes`].
const ENTRY_OVERHEAD: usize = 48;
/// Rough cost of one expiry index slot, not counting its key copy.
const EXPIRY_OVERHEAD: usize = 48;

/// Byte offsets of a slot's header fields.
const VERSION: usize = 0;
const EXPIRES: usize = 8;
const HAS_EXPIRY: usize = 16;
const KEY_LEN: usize = 17;
/// Where the lookup key starts: `[ns_len u8][ns][key]`, the form [`lookup_key`] builds.
const NS_LEN: usize = 19;

/// One stored entry in one allocation:
/// `[version u64][expires_at_ms u64][has_expiry u8][key_len u16][ns_len u8][ns][key][value]`,
/// integers little-endian. Hashes and compares by its lookup key (`[ns_len][ns][key]`) only.
#[derive(Clone)]
struct Slot(Box<[u8]>);

impl Slot {
    fn new(key: &CacheKey, value: &[u8], version: u64, expires_at_ms: Option<u64>) -> Self {
        let ns = key.ns.as_str().as_bytes();
        // Namespaces are at most 128 bytes and keys at most 4096 (CacheKey validates both).
        let ns_len = u8::try_from(ns.len()).expect("namespace longer than 255 bytes");
        let key_len = u16::try_from(key.key.len()).expect("key longer than 65535 bytes");
        let mut b = Vec::with_capacity(NS_LEN + 1 + ns.len() + key.key.len() + value.len());
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&expires_at_ms.unwrap_or(0).to_le_bytes());
        b.push(u8::from(expires_at_ms.is_some()));
        b.extend_from_slice(&key_len.to_le_bytes());
        b.push(ns_len);
        b.extend_from_slice(ns);
        b.extend_from_slice(&key.key);
        b.extend_from_slice(value);
        Self(b.into_boxed_slice())
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().expect("8 bytes"))
    }

    fn version(&self) -> u64 {
        self.u64_at(VERSION)
    }

    fn expires_at_ms(&self) -> Option<u64> {
        (self.0[HAS_EXPIRY] != 0).then(|| self.u64_at(EXPIRES))
    }

    fn ns_len(&self) -> usize {
        usize::from(self.0[NS_LEN])
    }

    fn key_len(&self) -> usize {
        usize::from(u16::from_le_bytes([self.0[KEY_LEN], self.0[KEY_LEN + 1]]))
    }

    fn lookup_key(&self) -> &[u8] {
        &self.0[NS_LEN..NS_LEN + 1 + self.ns_len() + self.key_len()]
    }

    fn ns(&self) -> &str {
        let start = NS_LEN + 1;
        // Written from a validated Namespace, which is ASCII.
        std::str::from_utf8(&self.0[start..start + self.ns_len()]).expect("namespace bytes are ASCII")
    }

    fn key(&self) -> &[u8] {
        let start = NS_LEN + 1 + self.ns_len();
        &self.0[start..start + self.key_len()]
    }

    fn value(&self) -> &[u8] {
        &self.0[NS_LEN + 1 + self.ns_len() + self.key_len()..]
    }

    fn meta(&self) -> Meta {
        Meta { version: self.version(), expires_at_ms: self.expires_at_ms() }
    }

    fn entry(&self) -> Entry {
        Entry {
            value: Bytes::copy_from_slice(self.value()),
            version: self.version(),
            expires_at_ms: self.expires_at_ms(),
        }
    }

    /// The order of `CacheKey`: namespace, then key.
    fn cmp_key(&self, other: &Self) -> Ordering {
        self.ns().cmp(other.ns()).then_with(|| self.key().cmp(other.key()))
    }

    fn mem(&self) -> usize {
        self.0.len() + ENTRY_OVERHEAD
    }
}

impl Borrow<[u8]> for Slot {
    fn borrow(&self) -> &[u8] {
        self.lookup_key()
    }
}

// Hash and Eq agree with those of the borrowed `[u8]`, as `HashSet::get(&[u8])` requires.
impl Hash for Slot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.lookup_key().hash(state);
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.lookup_key() == other.lookup_key()
    }
}

impl Eq for Slot {}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("ns", &self.ns())
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value_len", &self.value().len())
            .field("version", &self.version())
            .field("expires_at_ms", &self.expires_at_ms())
            .finish()
    }
}

/// `[ns_len][ns][key]`: how a slot is looked up.
fn lookup_key(key: &CacheKey) -> Vec<u8> {
    let ns = key.ns.as_str().as_bytes();
    let mut b = Vec::with_capacity(1 + ns.len() + key.key.len());
    b.push(ns.len() as u8);
    b.extend_from_slice(ns);
    b.extend_from_slice(&key.key);
    b
}

/// Version and expiry of a stored entry, without its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) version: u64,
    pub(crate) expires_at_ms: Option<u64>,
}

impl Meta {
    /// Whether the entry is still live at leader time `at_ms` (see [`Entry::is_live_at`]).
    pub(crate) fn is_live_at(&self, at_ms: u64) -> bool {
        crate::state::live_at(self.expires_at_ms, at_ms)
    }
}

/// How many hash sets the entries are spread over. A hash set grows by moving every entry into a
/// table twice the size, all at once: in one apply, under the state lock. Measured on the
/// benchmark machine (`cargo run --release -p raftcache-core --example grow`, one set): the
/// apply that grew it past 1.8M entries took 444–464 ms, past 3.7M 908–1,019 ms, longer than an
/// election timeout. Spread over this many sets, a growth moves a 1/1024th share, and the sets
/// grow at different times: the slowest of 4M applies took 2–3 ms.
const SHARDS: usize = 1024;

/// The slots, spread over [`SHARDS`] hash sets by a hash of their lookup key that is independent
/// of the one each set uses inside.
#[derive(Clone, Debug)]
struct Slots {
    shards: Box<[HashSet<Slot>]>,
    /// Picks a slot's shard. Keyed at random like the sets' own hashers, so clients cannot
    /// choose keys that pile into one shard.
    pick: RandomState,
    len: usize,
}

impl Default for Slots {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| HashSet::new()).collect(), pick: RandomState::new(), len: 0 }
    }
}

impl Slots {
    fn shard(&self, lookup: &[u8]) -> usize {
        (self.pick.hash_one(lookup) % SHARDS as u64) as usize
    }

    fn get(&self, lookup: &[u8]) -> Option<&Slot> {
        self.shards[self.shard(lookup)].get(lookup)
    }

    /// Stores `slot`; the one it replaced.
    fn replace(&mut self, slot: Slot) -> Option<Slot> {
        let i = self.shard(slot.lookup_key());
        let old = self.shards[i].replace(slot);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    fn take(&mut self, lookup: &[u8]) -> Option<Slot> {
        let i = self.shard(lookup);
        let old = self.shards[i].take(lookup);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    fn len(&self) -> usize {
        self.len
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.shards.iter().flatten()
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Entries {
    slots: Slots,
    /// Exactly the `(expires_at_ms, key)` of every entry in `slots` that has an expiry.
    by_expiry: BTreeSet<(u64, CacheKey)>,
    /// Sum of [`Slot::mem`] and the expiry index's share over `slots`.
    mem: usize,
}

impl Entries {
    /// The stored entry of `key`, with a copy of its value.
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Entry> {
        self.slots.get(lookup_key(key).as_slice()).map(Slot::entry)
    }

    /// Version and expiry of `key`'s entry, without copying the value.
    pub(crate) fn meta(&self, key: &CacheKey) -> Option<Meta> {
        self.slots.get(lookup_key(key).as_slice()).map(Slot::meta)
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn mem_bytes(&self) -> usize {
        self.mem
    }

    /// Stores `value` under `key` (copying both), replacing any previous entry; the replaced
    /// entry's version and expiry.
    pub(crate) fn insert(
        &mut self,
        key: &CacheKey,
        value: &[u8],
        version: u64,
        expires_at_ms: Option<u64>,
    ) -> Option<Meta> {
        let slot = Slot::new(key, value, version, expires_at_ms);
        self.mem += slot.mem();
        // Forget the old entry before indexing the new one: both may expire at the same time.
        let old = self.slots.replace(slot).map(|old| self.forget(key, &old));
        if let Some(exp) = expires_at_ms {
            self.mem += key.size_bytes() + EXPIRY_OVERHEAD;
            self.by_expiry.insert((exp, key.compact()));
        }
        old
    }

    /// Removes `key`'s entry; its version and expiry if there was one.
    pub(crate) fn remove(&mut self, key: &CacheKey) -> Option<Meta> {
        let old = self.slots.take(lookup_key(key).as_slice())?;
        Some(self.forget(key, &old))
    }

    /// Drops the accounting and index slot of `key`'s entry `old`, which left `slots`.
    fn forget(&mut self, key: &CacheKey, old: &Slot) -> Meta {
        self.mem -= old.mem();
        let meta = old.meta();
        if let Some(exp) = meta.expires_at_ms {
            self.mem -= key.size_bytes() + EXPIRY_OVERHEAD;
            self.by_expiry.remove(&(exp, key.clone()));
        }
        meta
    }

    /// Up to `limit` keys whose expiry is `<= at`, oldest first.
    pub(crate) fn expired(&self, at: u64, limit: usize) -> Vec<CacheKey> {
        self.by_expiry.iter().take_while(|(exp, _)| *exp <= at).take(limit).map(|(_, k)| k.clone()).collect()
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = EntryRef<'_>> {
        self.slots.iter().map(EntryRef)
    }

    /// Every entry, in the order a snapshot lists them: by a fixed hash of the lookup key, ties
    /// (64-bit collisions) in key order. Every process computes the same order, so replicas
    /// holding the same entries encode the same bytes. The sort compares integers in the vector
    /// rather than keys behind pointers: a 1M-key encode took 3.2–4.1 s in key order, mostly
    /// sorting, and takes 0.7 s in this one (`examples/grow.rs`).
    pub(crate) fn in_snapshot_order(&self) -> Vec<EntryRef<'_>> {
        let mut slots: Vec<(u64, &Slot)> = self.slots.iter().map(|s| (xxh3_64(s.lookup_key()), s)).collect();
        slots.sort_unstable_by(|(ha, a), (hb, b)| ha.cmp(hb).then_with(|| a.cmp_key(b)));
        slots.into_iter().map(|(_, s)| EntryRef(s)).collect()
    }
}

/// A borrowed stored entry, for the snapshot encoding and the digest.
#[derive(Clone, Copy)]
pub(crate) struct EntryRef<'a>(&'a Slot);

impl EntryRef<'_> {
    pub(crate) fn ns(&self) -> &str {
        self.0.ns()
    }
    pub(crate) fn key(&self) -> &[u8] {
        self.0.key()
    }
    pub(crate) fn value(&self) -> &[u8] {
        self.0.value()
    }
    pub(crate) fn version(&self) -> u64 {
        self.0.version()
    }
    pub(crate) fn expires_at_ms(&self) -> Option<u64> {
        self.0.expires_at_ms()
    }
}

/// Serializes as a map from `CacheKey` to `Entry`, the layout a `BTreeMap<CacheKey, Entry>` had,
/// in [`Entries::in_snapshot_order`]. Decoding takes the entries in any order.
impl Serialize for Entries {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ordered = self.in_snapshot_order();
        let mut map = serializer.serialize_map(Some(ordered.len()))?;
        for e in ordered {
            map.serialize_entry(
                &KeyView { ns: e.ns(), key: e.key() },
                &EntryView { value: e.value(), version: e.version(), expires_at_ms: e.expires_at_ms() },
            )?;
        }
        map.end()
    }
}

/// Encodes like [`CacheKey`].
#[derive(Serialize)]
struct KeyView<'a> {
    ns: &'a str,
    #[serde(serialize_with = "as_bytes")]
    key: &'a [u8],
}

/// Encodes like [`Entry`].
#[derive(Serialize)]
struct EntryView<'a> {
    #[serde(serialize_with = "as_bytes")]
    value: &'a [u8],
    version: u64,
    expires_at_ms: Option<u64>,
}

fn as_bytes<S: Serializer>(b: &&[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bytes(b)
}

/// Reads the map [`Entries::serialize`] writes, straight into slots; a key that appears twice
/// is an error (no encoder writes one).
impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of cache keys to entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Entries::default();
                while let Some((key, entry)) = map.next_entry::<CacheKey, Entry>()? {
                    if entries.insert(&key, &entry.value, entry.version, entry.expires_at_ms).is_some() {
                        return Err(de::Error::custom(format!("entry {key} appears twice")));
                    }
                }
                Ok(entries)
            }
        }
        deserializer.deserialize_map(EntriesVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, k: &str) -> CacheKey {
        CacheKey::new(ns, Bytes::copy_from_slice(k.as_bytes())).unwrap()
    }

    #[test]
    fn a_slot_reads_back_what_it_was_built_from() {
        let k = key("users", "alice");
        let s = Slot::new(&k, b"v1", 42, Some(7));
        assert_eq!((s.ns(), s.key(), s.value()), ("users", &b"alice"[..], &b"v1"[..]));
        assert_eq!(s.meta(), Meta { version: 42, expires_at_ms: Some(7) });
        assert_eq!(s.lookup_key(), lookup_key(&k).as_slice());
        let empty = Slot::new(&k, b"", 1, None);
        assert_eq!((empty.value(), empty.expires_at_ms()), (&b""[..], None));
    }

    #[test]
    fn namespace_and_key_do_not_run_into_each_other() {
        // Without the namespace length, ("ab", "c") and ("a", "bc") would share a lookup key.
        let mut e = Entries::default();
        e.insert(&key("ab", "c"), b"1", 1, None);
        e.insert(&key("a", "bc"), b"2", 2, None);
        assert_eq!(e.len(), 2);
        assert_eq!(e.get(&key("ab", "c")).unwrap().value, Bytes::from_static(b"1"));
        assert_eq!(e.get(&key("a", "bc")).unwrap().value, Bytes::from_static(b"2"));
    }

    #[test]
    fn memory_accounting_returns_to_zero_and_the_expiry_index_follows() {
        let mut e = Entries::default();
        e.insert(&key("n", "a"), &[0; 100], 1, Some(50));
        e.insert(&key("n", "b"), &[0; 10], 2, None);
        e.insert(&key("n", "a"), &[0; 5], 3, Some(60));
        assert_eq!(e.expired(100, 10), vec![key("n", "a")]);
        assert_eq!(e.expired(55, 10), Vec::<CacheKey>::new(), "the replaced expiry left the index");
        assert_eq!(e.remove(&key("n", "a")), Some(Meta { version: 3, expires_at_ms: Some(60) }));
        assert_eq!(e.remove(&key("n", "a")), None);
        e.remove(&key("n", "b"));
        assert_eq!((e.len(), e.mem_bytes(), e.by_expiry.len()), (0, 0, 0));

        // Replacing an entry by one with the same expiry keeps the key in the index.
        assert_eq!(e.insert(&key("n", "c"), b"1", 4, Some(70)), None);
        assert_eq!(e.insert(&key("n", "c"), b"2", 5, Some(70)), Some(Meta { version: 4, expires_at_ms: Some(70) }));
        assert_eq!(e.expired(80, 10), vec![key("n", "c")]);
    }

    #[test]
    fn a_snapshot_naming_a_key_twice_does_not_decode() {
        let entry = |version| Entry { value: Bytes::from_static(b"v"), version, expires_at_ms: None };
        let config = bincode::config::standard();
        // bincode writes a map as its length and its pairs, like a sequence of pairs.
        let twice =
            bincode::serde::encode_to_vec(vec![(key("n", "a"), entry(1)), (key("n", "a"), entry(2))], config).unwrap();
        let err = bincode::serde::borrow_decode_from_slice::<Entries, _>(&twice, config).unwrap_err();
        assert!(err.to_string().contains("n/a appears twice"), "{err}");

        let once =
            bincode::serde::encode_to_vec(vec![(key("n", "a"), entry(1)), (key("n", "b"), entry(2))], config).unwrap();
        let (decoded, _) = bincode::serde::borrow_decode_from_slice::<Entries, _>(&once, config).unwrap();
        assert_eq!(decoded.len(), 2);
    }

    #[test]
    fn entries_spread_over_the_shards_are_all_found_counted_and_listed() {
        let mut e = Entries::default();
        let n = 20 * SHARDS;
        for i in 0..n {
            e.insert(&key("n", &format!("k{i}")), b"v", i as u64 + 1, None);
        }
        let used = e.slots.shards.iter().filter(|s| !s.is_empty()).count();
        assert!(used > SHARDS * 9 / 10, "{n} keys landed in only {used} of {SHARDS} shards");
        assert_eq!((e.len(), e.iter().count()), (n, n));
        for i in (0..n).step_by(7) {
            assert_eq!(e.meta(&key("n", &format!("k{i}"))).map(|m| m.version), Some(i as u64 + 1));
        }
        for i in 0..n / 2 {
            assert!(e.remove(&key("n", &format!("k{i}"))).is_some());
        }
        assert!(e.remove(&key("n", "k0")).is_none());
        assert_eq!((e.len(), e.iter().count()), (n - n / 2, n - n / 2));
        assert!(e.get(&key("n", &format!("k{}", n - 1))).is_some());
    }

    #[test]
    fn every_process_lists_the_same_entries_in_the_same_order() {
        let keys: Vec<CacheKey> = (0..500).map(|i| key(if i % 3 == 0 { "a" } else { "b" }, &format!("k{i}"))).collect();
        // Two sets with their own random hashers, filled in opposite orders.
        let (mut one, mut two) = (Entries::default(), Entries::default());
        for (i, k) in keys.iter().enumerate() {
            one.insert(k, b"v", i as u64 + 1, None);
        }
        for (i, k) in keys.iter().enumerate().rev() {
            two.insert(k, b"v", i as u64 + 1, None);
        }
        let names = |e: &Entries| -> Vec<(String, Vec<u8>)> {
            e.in_snapshot_order().iter().map(|r| (r.ns().to_owned(), r.key().to_vec())).collect()
        };
        assert_eq!(names(&one), names(&two));
        assert_eq!(names(&one).len(), keys.len());
        let config = bincode::config::standard();
        assert_eq!(
            bincode::serde::encode_to_vec(&one, config).unwrap(),
            bincode::serde::encode_to_vec(&two, config).unwrap()
        );
    }
}
