use std::sync::Arc;

use crate::error::{Error, Result};

/// Whether an append is acknowledged before or after it reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fdatasync of the write-ahead log before acknowledging; survives any crash.
    Fsync,
    /// acknowledge at once; the write-ahead log syncs in the background (every 500 ms). A crash
    /// of a majority within that window loses acknowledged writes.
    Async,
}

/// Knobs of each group's Raft instance.
#[derive(Clone, Debug)]
pub struct RaftTuning {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout.
    pub election_min_ms: u64,
    /// Upper bound of the randomized election timeout.
    pub election_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_every: u64,
    /// How many entries to keep in the log behind a snapshot (for followers that lag a little).
    pub keep_logs_behind_snapshot: u64,
    /// Serve linearizable reads (and read indexes for follower reads) under a leader lease,
    /// without a heartbeat round, while enough followers acknowledged recently (see
    /// [`RaftTuning::read_lease`]). Off: every read index costs a heartbeat round.
    pub lease_reads: bool,
    /// Encode snapshots in a forked child process, holding the state lock only across the fork
    /// (see `crate::forked`). Off: encode in the node's process under the lock, which stops the
    /// group's apply for the whole encode.
    pub fork_snapshots: bool,
    /// How long a leader waits, after a log entry's writers are answered, for their next writes
    /// to share the next entry (see `proposer.rs`); zero proposes at once. Timers tick in whole
    /// milliseconds.
    pub write_linger: std::time::Duration,
}

impl RaftTuning {
    /// How long after the send time of an append acknowledged by the lease quorum the leader may
    /// rely on it: 9/10 of the election timeout's *lower* bound, while a follower refuses votes
    /// for the upper bound after receiving an append. The gap (more than 2× by default) is the
    /// allowance for clocks running at different rates; no wall clock is involved.
    pub fn read_lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.election_min_ms * 9 / 10)
    }
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 50,
            election_min_ms: 150,
            election_max_ms: 300,
            snapshot_every: 10_000,
            keep_logs_behind_snapshot: 1_000,
            lease_reads: true,
            fork_snapshots: true,
            write_linger: std::time::Duration::from_millis(2),
        }
    }
}

/// The validated openraft config for one group.
pub fn raft_config(group: u64, t: &RaftTuning) -> Result<Arc<openraft::Config>> {
    let cfg = openraft::Config {
        cluster_name: format!("raftcache-g{group}"),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_min_ms,
        election_timeout_max: t.election_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(t.snapshot_every),
        max_in_snapshot_log_to_keep: t.keep_logs_behind_snapshot,
        purge_batch_size: 64,
        ..Default::default()
    };
    let cfg = cfg.validate().map_err(|e| Error::Config(e.to_string()))?;
    Ok(Arc::new(cfg))
}
