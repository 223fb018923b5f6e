use std::time::Duration;

use bytes::Bytes;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Never older than the last acknowledged write (leader, after ReadIndex).
    #[default]
    Linearizable,
    /// As strict, served by a follower after it caught up with the leader's read index.
    FollowerLinearizable,
    /// Served by a replica that applied at least `min_index`; `0` uses this client's own session
    /// token for the key's group (read-your-writes, monotonic reads).
    Session {
        /// Lowest applied index the serving replica may have.
        min_index: u64,
    },
    /// Served by a replica that heard from a leader within `max_staleness`.
    Eventual {
        /// Staleness bound.
        max_staleness: Duration,
    },
}

/// A write precondition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    /// Unconditional.
    #[default]
    None,
    /// Only if the key has no live value.
    IfAbsent,
    /// Only if the key's version is exactly this (the version a read returned; for a missing key
    /// the read's version is its fence or 0).
    IfVersion(u64),
}

/// Options of a set.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetOptions {
    /// Time to live.
    pub ttl: Option<Duration>,
    /// Precondition.
    pub condition: Condition,
}

/// Client-wide settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Deadline of one operation, retries included.
    pub timeout: Duration,
    /// Longest wait for one attempt before trying elsewhere (a paused or partitioned node never
    /// answers). Retried writes are de-duplicated, so giving up on an attempt is safe.
    pub attempt_timeout: Duration,
    /// Connect timeout per node.
    pub connect_timeout: Duration,
    /// Whether writes carry `(client_id, seq)` for exactly-once retries.
    pub idempotent_writes: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            idempotent_writes: true,
        }
    }
}

/// What a read returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResult {
    /// The value; `None` when the key has no live value.
    pub value: Option<Bytes>,
    /// The value's version; for a missing key, its fence or 0.
    pub version: u64,
    /// Leader-stamped expiry (ms since the Unix epoch), if any.
    pub expires_at_ms: Option<u64>,
    /// The key's group.
    pub group: u64,
    /// The serving replica's applied index.
    pub applied_index: u64,
    /// The node that served the read.
    pub served_by: u64,
}

/// What a write returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResult {
    /// The new version (set), the delete's index, or the fence (invalidate).
    pub version: u64,
    /// For deletes: whether a live value was removed.
    pub existed: bool,
    /// The key's group.
    pub group: u64,
    /// The index to use as a session token.
    pub applied_index: u64,
    /// The node that served the write (the leader).
    pub served_by: u64,
}
