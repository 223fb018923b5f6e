use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::key::CacheKey;

/// One entry of a group's Raft log: a command stamped by the leader that proposed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The proposing leader's wall clock in ms since the Unix epoch. Apply uses
    /// `max(previous now, now_ms)`, so time is monotonic across the log.
    pub now_ms: u64,
    /// Identifies a client write for de-duplication of retries; `None` for internal commands.
    pub client: Option<ClientSeq>,
    /// What to do.
    pub cmd: Command,
}

/// A client's identity and the sequence number of one of its writes. A retry carries the same
/// pair; sequence numbers of one client increase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientSeq {
    /// Random per client instance.
    pub client_id: u64,
    /// Increases by one per write of that client.
    pub seq: u64,
}

/// A replicated cache command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Store `value` under `key` if `cond` holds. `ttl_ms` counts from the entry's `now_ms`.
    Set {
        /// The key.
        key: CacheKey,
        /// The value.
        value: Bytes,
        /// Time to live; `None` lives until deleted, invalidated or evicted.
        ttl_ms: Option<u64>,
        /// Precondition.
        cond: Condition,
    },
    /// Remove `key` if `cond` holds.
    Delete {
        /// The key.
        key: CacheKey,
        /// Precondition.
        cond: Condition,
    },
    /// Remove `key` and fence it: conditional writes based on an older version are rejected.
    Invalidate {
        /// The key.
        key: CacheKey,
    },
    /// Remove those of `keys` that are expired as of `min(as_of_ms, now)`. Proposed by leaders.
    Expire {
        /// The leader time the sweep was computed at.
        as_of_ms: u64,
        /// Candidate keys; keys no longer expired (rewritten meanwhile) are kept.
        keys: Vec<CacheKey>,
    },
    /// Does nothing but advance time and the applied index (used to probe a group).
    Noop,
    /// Client writes proposed together in one log entry, applied in order as if each were an
    /// entry of its own at the same index and leader time: each is de-duplicated with its own
    /// client and versioned with the entry's index (see
    /// [`CacheState::apply`](crate::CacheState::apply)). Leaders batch only `Set`, `Delete` and
    /// `Invalidate` of distinct keys; a batch nested in a batch applies as nothing.
    Batch(Vec<BatchItem>),
}

/// One client write inside a [`Command::Batch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    /// The write's de-duplication identity, as in [`Request::client`].
    pub client: Option<ClientSeq>,
    /// The write.
    pub cmd: Command,
}

impl Command {
    /// Roughly how many bytes the command carries (keys and values), for size limits.
    pub fn approx_bytes(&self) -> usize {
        match self {
            Command::Set { key, value, .. } => key.key.len() + value.len(),
            Command::Delete { key, .. } | Command::Invalidate { key } => key.key.len(),
            Command::Expire { keys, .. } => keys.iter().map(|k| k.key.len()).sum(),
            Command::Noop => 0,
            Command::Batch(items) => items.iter().map(|i| i.cmd.approx_bytes()).sum(),
        }
    }
}

/// A precondition on a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// Always apply.
    #[default]
    None,
    /// Apply only if the key holds no live value.
    IfAbsent,
    /// Apply only if the key's current version is exactly this. The version of an absent key is
    /// its retained fence, or 0. If a retained fence is newer than this version the write is
    /// [`Rejection::Fenced`].
    IfVersion(u64),
}

/// Why a write was not applied. Deterministic: every replica reaches the same rejection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    /// The precondition did not hold; `current_version` is the key's version at apply time.
    ConditionFailed {
        /// The key's version when the command applied (0 if absent and unfenced).
        current_version: u64,
    },
    /// The expected version predates an invalidation fence.
    Fenced {
        /// The fence (log index of the invalidation).
        fence: u64,
    },
    /// A retry of a write whose result is no longer remembered; it may or may not have applied.
    DuplicateTooOld,
}

/// The result of applying one log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A `Set` applied; the new version.
    Written {
        /// The new version (the entry's log index).
        version: u64,
    },
    /// A `Delete` applied.
    Deleted {
        /// The log index of the delete.
        version: u64,
        /// Whether a live value was removed.
        existed: bool,
    },
    /// An `Invalidate` applied.
    Invalidated {
        /// The fence: the log index of the invalidation.
        fence: u64,
    },
    /// An `Expire` sweep applied.
    Expired {
        /// How many keys it removed.
        removed: u32,
    },
    /// The command was rejected.
    Rejected(Rejection),
    /// A membership change, a blank entry or a `Noop`.
    Blank,
    /// The responses of a [`Command::Batch`]'s items, in order.
    Batch(Vec<Response>),
}
