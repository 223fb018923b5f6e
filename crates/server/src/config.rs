//! `raftcache serve` flags. With no flags a node is a whole single-node cluster on
//! 127.0.0.1:7379 with data in `./raftcache-data`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use raftcache_core::NodeId;

/// Durability of the Raft log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// fsync every append batch before acknowledging (default).
    Fsync,
    /// Acknowledge before the disk; a crash of a majority can lose recent acknowledged writes.
    Async,
}

/// Flags of `raftcache serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long, default_value_t = 1)]
    pub id: NodeId,
    /// Address to listen on, for clients and peers alike.
    #[arg(long, default_value = "127.0.0.1:7379")]
    pub listen: String,
    /// Where the node keeps its data.
    #[arg(long, default_value = "./raftcache-data")]
    pub data_dir: PathBuf,
    /// The founding members, `id=host:port,...`. Ignored when the data dir already holds a
    /// cluster. Defaults to this node alone.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// Number of data groups, fixed at bootstrap [default: one per founding member, so each node
    /// leads one group]. Every group costs its own Raft rounds, and writes proposed together
    /// share a log entry only within a group: more groups than nodes spread leaders no further
    /// and cut write throughput (README, Performance: Scale).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub groups: Option<u64>,
    /// Replicas per data group (capped at the number of nodes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=7))]
    pub replicas: u64,
    /// fsync (default) or async.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Fsync)]
    pub durability: DurabilityArg,
    /// Build a snapshot of a group after this many log entries.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot for slightly lagging followers.
    #[arg(long, default_value_t = 1_000)]
    pub keep_logs: u64,
    /// How long an invalidation fence is kept (ms of leader time). Fixed at bootstrap.
    #[arg(long, default_value_t = raftcache_core::limits::DEFAULT_FENCE_RETENTION_MS)]
    pub fence_retention_ms: u64,
    /// Largest value accepted, in bytes.
    #[arg(long, default_value_t = raftcache_core::limits::DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: usize,
    /// Memory for the newest Raft log entries of all groups, in MiB (counted as their size on
    /// disk). Replication and apply read the tail right after it is appended; older entries
    /// (catching up a lagging follower) are read back from the write-ahead log. Every MiB here
    /// is a MiB less for values: at 32 MiB a node held ~40 bytes more per key at 1M keys.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub disk_cache_mb: u64,
    /// Size of a write-ahead log segment, in MiB. A segment is deleted once every group has
    /// snapshotted past all the entries it holds, so smaller segments return disk space sooner;
    /// each new segment restates every group's vote and purge point.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub wal_segment_mb: u64,
    /// Let write-ahead log segments grow as they fill instead of writing each next segment's
    /// file full of zeros ahead of time (a sync after a write that grows a file also writes its
    /// inode).
    #[arg(long)]
    pub no_wal_preallocate: bool,
    /// Encode snapshots in the node's own process, holding the group's state lock, instead of in
    /// a forked child that sees a copy-on-write image of the state. The group stops applying for
    /// the whole encode (140–850 ms for states of 6–17 MB under write load on 2 cores); for
    /// systems where forking a large process is unwanted (strict memory overcommit).
    #[arg(long)]
    pub snapshot_in_process: bool,
    /// Raft heartbeat interval (ms).
    #[arg(long, default_value_t = 50)]
    pub heartbeat_ms: u64,
    /// Raft election timeout lower bound (ms); the upper bound is twice this.
    #[arg(long, default_value_t = 150)]
    pub election_timeout_ms: u64,
    /// Confirm every linearizable read with a heartbeat round (ReadIndex) instead of serving it
    /// under the leader's lease. The lease relies on the nodes' monotonic clocks running at
    /// roughly the same rate (a 2× allowance by default), never on wall-clock time.
    #[arg(long)]
    pub no_lease_reads: bool,
    /// How long (ms) a group leader waits, after a log entry's writes are answered, for those
    /// writers' next writes, so that they share the next entry instead of splitting between two:
    /// fewer, fuller entries cost less CPU per write. Only a leader that had an entry in flight
    /// waits, and only for as many writes as that entry carried (fewer if fewer came back last
    /// time); 0 proposes at once.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub write_linger_ms: u64,
    /// Threads that run the node's tasks (default: one per core, or `TOKIO_WORKER_THREADS`). Nodes
    /// that share a machine do better sharing its cores than each taking them all: on 2 cores,
    /// three nodes with one thread each wrote 5% and read 9–33% more per second than with two
    /// each, at less CPU per operation (`scripts/cluster.sh` and `scripts/bench.sh` divide the
    /// cores among the nodes they start).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub worker_threads: Option<u64>,
    /// Dial peer ID at HOST:PORT instead of its advertised address (e.g. through a proxy);
    /// `ID=HOST:PORT`, repeatable or comma-separated.
    #[arg(long = "peer-addr", value_delimiter = ',')]
    pub peer_addrs: Vec<String>,
    /// Test-only planted bugs, to prove the fault suite catches them: stale-read (linearizable
    /// reads skip ReadIndex and read the local replica), no-fence (invalidations leave no fence).
    #[cfg(feature = "fault-injection")]
    #[arg(long = "bug", value_enum)]
    pub bugs: Vec<crate::router::Bug>,
}

/// Parses `1=127.0.0.1:7001,2=127.0.0.1:7002`.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<NodeId, String>, String> {
    let mut nodes = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("--initial-cluster entry {part:?} is not of the form id=host:port"))?;
        let id: NodeId =
            id.trim().parse().map_err(|_| format!("--initial-cluster entry {part:?}: {id:?} is not a node id"))?;
        if id == 0 {
            return Err(format!("--initial-cluster entry {part:?}: node ids start at 1"));
        }
        let addr = addr.trim();
        if addr.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none() {
            return Err(format!("--initial-cluster entry {part:?}: {addr:?} is not host:port"));
        }
        if nodes.insert(id, addr.to_owned()).is_some() {
            return Err(format!("--initial-cluster names node {id} twice"));
        }
    }
    if nodes.is_empty() {
        return Err("--initial-cluster is empty".into());
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_and_rejects() {
        let n = parse_initial_cluster("1=127.0.0.1:7001, 2=127.0.0.1:7002").unwrap();
        assert_eq!(n.len(), 2);
        assert_eq!(n[&2], "127.0.0.1:7002");
        assert!(parse_initial_cluster("1=127.0.0.1").unwrap_err().contains("host:port"));
        assert!(parse_initial_cluster("x=127.0.0.1:1").unwrap_err().contains("node id"));
        assert!(parse_initial_cluster("1=a:1,1=b:2").unwrap_err().contains("twice"));
        assert!(parse_initial_cluster("0=a:1").unwrap_err().contains("start at 1"));
        assert!(parse_initial_cluster("").is_err());
    }

    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(flags: &[&str]) -> Result<ServeArgs, String> {
        use clap::Parser;
        Serve::try_parse_from(["serve"].iter().chain(flags)).map(|s| s.args).map_err(|e| e.to_string())
    }

    #[test]
    fn worker_threads_default_to_the_runtimes_choice_and_refuse_zero() {
        assert_eq!(parse(&[]).unwrap().worker_threads, None);
        assert_eq!(parse(&["--worker-threads", "1"]).unwrap().worker_threads, Some(1));
        let e = parse(&["--worker-threads", "0"]).unwrap_err();
        assert!(e.contains("--worker-threads") && e.contains("0 is not in 1..=1024"), "{e}");
        let e = parse(&["--worker-threads", "two"]).unwrap_err();
        assert!(e.contains("--worker-threads") && e.contains("invalid digit"), "{e}");
    }
}
