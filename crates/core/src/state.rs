//! The per-group cache state machine.
//!
//! [`CacheState`] is what one Raft group replicates. The crate docs give the guarantees
//! (versions, fences, TTL, idempotent retries); this module is about how they are kept.
//!
//! ## DETERMINISM
//!
//! [`CacheState::apply`] reads nothing but the state and the entry: no clock, no randomness, no
//! iteration over hash maps. Every replica that applies the same log reaches the same state,
//! byte for byte, which [`CacheState::digest`] lets tests and operators check. Time is the
//! leader-stamped `now_ms` of each entry, folded into a monotonic `now` kept in the state, so
//! "later in the log" always means "not earlier in time". Everything that ages — fences, client
//! sessions — ages against that `now`, never against a replica's own clock.
//!
//! ## COST
//!
//! Apply is O(log n) per key it touches (amortized; see below). It never scans the state:
//!
//! - entries live in hash sets (many small ones: see `entries::SHARDS`) with a secondary
//!   `(expires_at, key)` index, so the leader can
//!   find expired keys ([`CacheState::expired_keys`]) without a scan, and apply can keep the
//!   index exact on every write;
//! - fences sit in a map for lookup and in a queue ordered by the time they were set, so pruning
//!   pops from the front — each fence is pushed and popped once, whatever the time jumps;
//! - client sessions are ordered by the log index of their last write, which orders them by
//!   time as well, so both idle expiry and capacity eviction pop the oldest.
//!
//! Secondary indexes are not part of a snapshot: [`CacheState::from_bytes`] rebuilds them from
//! the primary maps, so a snapshot cannot carry an index that disagrees with its data.
//!
//! ## SNAPSHOTS
//!
//! A snapshot is the bincode 2 (standard config) encoding of the primary state with a format
//! number in front. Decoding borrows from the input, checks every length against it before
//! allocating, validates keys and cross-checks the data against the last applied index, and
//! reports any problem as [`Error::Corrupt`](crate::Error::Corrupt).
//!
//! ## CAVEATS
//!
//! - De-duplication is bounded: a client's record is dropped when it idles for
//!   [`SESSION_IDLE_MS`](crate::limits::SESSION_IDLE_MS) or when `max_sessions` other clients
//!   wrote more recently. A retry that arrives after its client's record was dropped is applied
//!   again. Within a known client, a sequence number at or below the highest one dropped from its
//!   window is refused as [`Rejection::DuplicateTooOld`](crate::Rejection::DuplicateTooOld);
//!   any other unseen sequence number is a new write (writes may arrive out of order).
//! - `mem_bytes` is an estimate for eviction policy and metrics, not an exact measure.
mod digest;
mod entries;
mod fences;
mod sessions;
mod snapshot;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::command::{ClientSeq, Command, Condition, Rejection, Request, Response};
use crate::key::CacheKey;
use entries::{Entries, Meta};
use fences::Fences;
use sessions::{Dedup, Sessions};

/// Settings that shape apply; identical on every replica of a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateConfig {
    /// How long an invalidation fence is retained, in leader-stamped ms.
    pub fence_retention_ms: u64,
    /// How many clients' de-duplication records are kept.
    pub max_sessions: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            fence_retention_ms: crate::limits::DEFAULT_FENCE_RETENTION_MS,
            max_sessions: crate::limits::DEFAULT_MAX_SESSIONS,
        }
    }
}

/// A stored value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The value bytes.
    #[serde(with = "crate::serde_bytes")]
    pub value: Bytes,
    /// Log index of the write that produced it.
    pub version: u64,
    /// Leader-stamped expiry, ms since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

impl Entry {
    /// Whether the entry is still live at leader time `at_ms` (it expires *at* `expires_at_ms`).
    pub fn is_live_at(&self, at_ms: u64) -> bool {
        live_at(self.expires_at_ms, at_ms)
    }
}

/// Whether something expiring at `expires_at_ms` (never if `None`) is live at `at_ms`.
pub(crate) fn live_at(expires_at_ms: Option<u64>, at_ms: u64) -> bool {
    expires_at_ms.is_none_or(|exp| exp > at_ms)
}

/// What a read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// A live value.
    Found(Entry),
    /// No live value. `version` is the key's retained fence, or 0.
    Missing {
        /// Version to use with `Condition::IfVersion` for a fence-safe fill.
        version: u64,
    },
}

/// The replicated state of one group.
///
/// Serializes (serde) to the snapshot form: the primary data only. Deserializing rebuilds the
/// indexes and validates the data, so serde and [`CacheState::from_bytes`] agree.
#[derive(Clone, Debug)]
pub struct CacheState {
    /// Same on every replica; travels in snapshots.
    config: StateConfig,
    /// Largest leader-stamped time applied. Never decreases.
    now_ms: u64,
    /// Index of the last applied entry; 0 before the first. Strictly increases with each apply.
    last_index: u64,
    /// Stored values, including expired ones not yet swept. Every version is `<= last_index`.
    entries: Entries,
    /// Invalidation fences retained as of `now_ms`. Every fence is `<= last_index`.
    fences: Fences,
    /// Recent results per client for de-duplicating retries.
    sessions: Sessions,
}

impl Default for CacheState {
    fn default() -> Self {
        Self::new(StateConfig::default())
    }
}

impl CacheState {
    /// An empty state.
    pub fn new(config: StateConfig) -> Self {
        Self {
            config,
            now_ms: 0,
            last_index: 0,
            entries: Entries::default(),
            fences: Fences::default(),
            sessions: Sessions::default(),
        }
    }

    /// Applies the log entry at `index`. Deterministic.
    ///
    /// `index` must be greater than [`CacheState::last_index`] (Raft applies each index once, in
    /// order); debug builds assert it. The one exception is index 0 on a fresh state: openraft
    /// puts the initial membership at index 0, and it may be applied as a `Noop`. Rejections are
    /// ordinary responses, never errors: every replica rejects the same entries.
    ///
    /// A [`Command::Batch`] applies its writes in order, each de-duplicated by its own client and
    /// versioned with `index`, and answers [`Response::Batch`] with one response per write. The
    /// proposer keeps keys distinct within a batch; were one repeated, its later write would
    /// carry the same version as the earlier.
    pub fn apply(&mut self, index: u64, req: &Request) -> Response {
        debug_assert!(
            index > self.last_index || (index == 0 && self.last_index == 0),
            "apply out of order: index {index} after {}",
            self.last_index
        );
        self.now_ms = self.now_ms.max(req.now_ms);
        self.last_index = index;
        let now = self.now_ms;
        self.fences.prune(now, self.config.fence_retention_ms);
        self.sessions.prune_idle(now);
        match &req.cmd {
            Command::Batch(items) => {
                Response::Batch(items.iter().map(|item| self.apply_write(index, item.client, &item.cmd)).collect())
            }
            cmd => self.apply_write(index, req.client, cmd),
        }
    }

    /// Applies one write of the entry at `index`, de-duplicated by `client`.
    fn apply_write(&mut self, index: u64, client: Option<ClientSeq>, cmd: &Command) -> Response {
        let now = self.now_ms;
        let Some(client) = client else {
            return self.execute(index, cmd);
        };
        match self.sessions.check(client, index, now) {
            Dedup::Replay(response) => response,
            Dedup::TooOld => Response::Rejected(Rejection::DuplicateTooOld),
            Dedup::New => {
                let response = self.execute(index, cmd);
                self.sessions.record(client, index, now, response.clone(), self.config.max_sessions);
                response
            }
        }
    }

    /// Reads `key` as of `now_ms` (entries with `expires_at_ms <= max(now_ms, self.now_ms())` are hidden).
    ///
    /// A fence counts as retained if it still would be at that time, so the version reported for
    /// a missing key is the one a conditional write applied then would be checked against.
    pub fn get(&self, key: &CacheKey, now_ms: u64) -> ReadResult {
        let at = now_ms.max(self.now_ms);
        match self.entries.get(key) {
            Some(entry) if entry.is_live_at(at) => ReadResult::Found(entry),
            _ => ReadResult::Missing { version: self.fence_at(key, at).unwrap_or(0) },
        }
    }

    /// The largest leader-stamped time applied so far.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// The index of the last applied log entry (0 if none). Also the newest version in the state.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// The settings this state applies with.
    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// Up to `limit` keys expired as of `max(now_ms, self.now_ms())`, oldest expiry first (ties
    /// in key order). What a leader puts in an `Expire` sweep.
    pub fn expired_keys(&self, now_ms: u64, limit: usize) -> Vec<CacheKey> {
        self.entries.expired(now_ms.max(self.now_ms), limit)
    }

    /// Number of stored entries (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entries are stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of retained invalidation fences.
    pub fn fence_count(&self) -> usize {
        self.fences.len()
    }

    /// Number of clients whose recent results are remembered.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Approximate heap bytes held by the state: keys, values, fences and session records, with
    /// a fixed per-item overhead for the maps. An estimate for memory budgets and metrics.
    pub fn mem_bytes(&self) -> usize {
        self.entries.mem_bytes() + self.fences.mem_bytes() + self.sessions.mem_bytes()
    }

    /// The retained fence of `key` as of leader time `at`.
    fn fence_at(&self, key: &CacheKey, at: u64) -> Option<u64> {
        self.fences.get(key, at, self.config.fence_retention_ms)
    }

    /// The live entry of `key` at the current leader time.
    fn live(&self, key: &CacheKey) -> Option<Meta> {
        self.entries.meta(key).filter(|e| e.is_live_at(self.now_ms))
    }

    /// Checks `cond` against `key` at the current leader time.
    fn check(&self, key: &CacheKey, cond: Condition) -> Result<(), Rejection> {
        let live_version = self.live(key).map(|e| e.version);
        match cond {
            Condition::None => Ok(()),
            Condition::IfAbsent => match live_version {
                None => Ok(()),
                Some(current_version) => Err(Rejection::ConditionFailed { current_version }),
            },
            Condition::IfVersion(expected) => {
                let fence = self.fence_at(key, self.now_ms);
                if let Some(fence) = fence.filter(|f| *f > expected) {
                    return Err(Rejection::Fenced { fence });
                }
                let current_version = live_version.or(fence).unwrap_or(0);
                if current_version == expected {
                    Ok(())
                } else {
                    Err(Rejection::ConditionFailed { current_version })
                }
            }
        }
    }

    /// Executes `cmd` at `index`; sessions are handled by the caller.
    fn execute(&mut self, index: u64, cmd: &Command) -> Response {
        let now = self.now_ms;
        match cmd {
            Command::Set { key, value, ttl_ms, cond } => {
                if let Err(rejection) = self.check(key, *cond) {
                    return Response::Rejected(rejection);
                }
                // The stored copy owns exactly its bytes: on the leader, key and value are slices
                // of the client's receive buffer, which would otherwise stay pinned with them.
                self.entries.insert(key, value, index, ttl_ms.map(|ttl| now.saturating_add(ttl)));
                Response::Written { version: index }
            }
            Command::Delete { key, cond } => {
                if let Err(rejection) = self.check(key, *cond) {
                    return Response::Rejected(rejection);
                }
                let existed = self.entries.remove(key).is_some_and(|e| e.is_live_at(now));
                Response::Deleted { version: index, existed }
            }
            Command::Invalidate { key } => {
                self.entries.remove(key);
                self.fences.record(key.compact(), index, now);
                Response::Invalidated { fence: index }
            }
            Command::Expire { as_of_ms, keys } => {
                let cutoff = (*as_of_ms).min(now);
                let mut removed = 0u32;
                for key in keys {
                    let expired = self.entries.meta(key).is_some_and(|e| !e.is_live_at(cutoff));
                    if expired {
                        self.entries.remove(key);
                        removed = removed.saturating_add(1);
                    }
                }
                Response::Expired { removed }
            }
            Command::Noop => Response::Blank,
            // A batch inside a batch: never proposed; applied as nothing, deterministically.
            Command::Batch(_) => Response::Batch(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests;
