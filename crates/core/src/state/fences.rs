//! Invalidation fences and their retention.
//!
//! A fence must outlive the value it removed by the retention window, then go, or the state
//! would grow with every key ever invalidated. Fences are set in log order, and log order is
//! time order (`now` is monotonic), so a FIFO queue holds them oldest first and pruning pops
//! from its front: each fence costs one push and one pop, however far time jumps.
use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::key::CacheKey;

/// Rough per-fence cost of a map slot and a queue slot, not counting the two key copies.
const FENCE_OVERHEAD: usize = 96;

/// The fence of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fence {
    /// Log index of the invalidation.
    pub(crate) version: u64,
    /// Leader time of the invalidation; the fence is retained while `now < at_ms + retention`.
    pub(crate) at_ms: u64,
}

impl Fence {
    fn retained_at(&self, now: u64, retention_ms: u64) -> bool {
        now < self.at_ms.saturating_add(retention_ms)
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Fences {
    /// The newest fence of each key that has one.
    by_key: BTreeMap<CacheKey, Fence>,
    /// Every fence of `by_key`, plus superseded ones not yet popped, in non-decreasing `at_ms`
    /// order. A queued fence whose version differs from `by_key`'s is superseded and ignored.
    queue: VecDeque<(Fence, CacheKey)>,
    /// Sum of [`fence_mem`] over `by_key`. Superseded queue slots are transient and not counted,
    /// so the figure depends on the fences alone and survives a snapshot round trip.
    mem: usize,
}

fn fence_mem(key: &CacheKey) -> usize {
    2 * key.size_bytes() + FENCE_OVERHEAD
}

impl Fences {
    /// Rebuilds the queue from a map (snapshot restore).
    pub(crate) fn from_map(by_key: BTreeMap<CacheKey, Fence>) -> Self {
        let mut queued: Vec<_> = by_key.iter().map(|(k, f)| (*f, k.clone())).collect();
        queued.sort_by_key(|(f, _)| (f.at_ms, f.version));
        let mem = by_key.keys().map(fence_mem).sum();
        Self { by_key, queue: queued.into(), mem }
    }

    pub(crate) fn map(&self) -> &BTreeMap<CacheKey, Fence> {
        &self.by_key
    }

    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    pub(crate) fn mem_bytes(&self) -> usize {
        self.mem
    }

    #[cfg(test)]
    pub(crate) fn queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Fences `key` at `version`, set at leader time `at_ms` (no earlier than any fence before).
    pub(crate) fn record(&mut self, key: CacheKey, version: u64, at_ms: u64) {
        debug_assert!(self.queue.back().is_none_or(|(f, _)| f.at_ms <= at_ms), "fence time went backwards");
        let fence = Fence { version, at_ms };
        self.queue.push_back((fence, key.clone()));
        let mem = fence_mem(&key);
        if self.by_key.insert(key, fence).is_none() {
            self.mem += mem;
        }
    }

    /// Drops every fence no longer retained at `now`.
    pub(crate) fn prune(&mut self, now: u64, retention_ms: u64) {
        while let Some((fence, _)) = self.queue.front() {
            if fence.retained_at(now, retention_ms) {
                break;
            }
            let Some((fence, key)) = self.queue.pop_front() else { break };
            if self.by_key.get(&key).is_some_and(|current| current.version == fence.version) {
                self.by_key.remove(&key);
                self.mem -= fence_mem(&key);
            }
        }
    }

    /// The fence version of `key` if it is retained at `now`.
    pub(crate) fn get(&self, key: &CacheKey, now: u64, retention_ms: u64) -> Option<u64> {
        self.by_key.get(key).filter(|f| f.retained_at(now, retention_ms)).map(|f| f.version)
    }
}
