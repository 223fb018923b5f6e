use std::path::PathBuf;
use std::time::Duration;

/// How each node acknowledges appends (`--durability`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// fsync before acknowledging (the node's default).
    #[default]
    Fsync,
    /// Acknowledge before the disk has it.
    Async,
}

impl Durability {
    /// The flag value.
    pub fn as_arg(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Async => "async",
        }
    }
}

/// How to start a [`Cluster`](crate::Cluster).
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Number of nodes, with ids `1..=nodes`.
    pub nodes: u64,
    /// Number of data groups (`--groups`).
    pub groups: u64,
    /// Replicas per group (`--replicas`); at most `nodes`.
    pub replicas: u64,
    /// `--durability`.
    pub durability: Durability,
    /// `--snapshot-every N`; the node's default when `None`.
    pub snapshot_every: Option<u64>,
    /// `--keep-logs N` (entries kept behind a snapshot); the node's default when `None`.
    pub keep_logs: Option<u64>,
    /// `--fence-retention-ms N`; the node's default when `None`.
    pub fence_retention_ms: Option<u64>,
    /// More `serve` arguments for every node, appended as given (per node:
    /// [`Cluster::set_node_args`](crate::Cluster::set_node_args)).
    pub extra_args: Vec<String>,
    /// The binary to run; found as the crate docs say when `None`.
    pub bin: Option<PathBuf>,
    /// Keep the temp dir (data and logs) when the cluster is dropped during a panic.
    pub keep_dir_on_failure: bool,
    /// How long [`Cluster::start`](crate::Cluster::start) waits for every group to have a leader.
    pub start_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            groups: 16,
            replicas: 3,
            durability: Durability::Fsync,
            snapshot_every: None,
            keep_logs: None,
            fence_retention_ms: None,
            extra_args: Vec::new(),
            bin: None,
            keep_dir_on_failure: false,
            start_timeout: Duration::from_secs(90),
        }
    }
}
