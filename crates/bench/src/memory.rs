//! `raftcache-bench memory`: what a key costs in memory. Starts a cluster (every node holds
//! every group when nodes ≤ 3), writes N keys of B-byte values, waits until every replica has
//! applied them, lets snapshots and log purges settle, and reports each node's RSS growth per
//! key. With `--redis HOST:PORT` (an empty Redis), the same keys and values go to Redis and its
//! `used_memory` growth per key is reported beside it, with the ratio. Writes `memory.json`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use clap::Args;
use raftcache_testkit::{Cluster, ClusterOptions, Durability};
use serde::Serialize;

use crate::adapter::{redis_client, Adapter, Level, System};
use crate::load;

/// `raftcache-bench memory`.
#[derive(Clone, Debug, Args)]
pub struct MemoryArgs {
    /// Keys to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,
    /// Nodes (replication factor min(3, nodes)).
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Data groups.
    #[arg(long, default_value_t = 16)]
    pub groups: u64,
    /// Writers during the load.
    #[arg(long, default_value_t = 256)]
    pub clients: usize,
    /// Run the nodes with fsync (their default). Without it they run `--durability async`:
    /// the same data in memory, and a load several times faster.
    #[arg(long)]
    pub fsync: bool,
    /// How long to let snapshots and log purges run after the load before measuring.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// More `raftcache serve` flags for every node (repeatable), e.g. `--serve-arg=--disk-cache-mb=64`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
    /// An empty Redis (host:port) to load the same keys into for comparison.
    #[arg(long)]
    pub redis: Option<String>,
    /// Write memory.json here.
    #[arg(long, default_value = "bench/results/memory")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct NodeMemory {
    node: u64,
    rss_before_bytes: u64,
    rss_after_bytes: u64,
    bytes_per_key: f64,
}

#[derive(Debug, Serialize)]
struct RedisMemory {
    used_memory_before: u64,
    used_memory_after: u64,
    bytes_per_key: f64,
}

#[derive(Debug, Serialize)]
struct MemoryReport {
    keys: u64,
    value_bytes: usize,
    nodes: u64,
    groups: u64,
    replicas: u64,
    durability: &'static str,
    serve_args: Vec<String>,
    raftcache: Vec<NodeMemory>,
    /// The largest per-node cost.
    raftcache_bytes_per_key: f64,
    redis: Option<RedisMemory>,
    /// raftcache_bytes_per_key / redis bytes_per_key.
    ratio_to_redis: Option<f64>,
}

/// Resident set size of process `pid`, from /proc.
fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?;
    Ok(kb * 1024)
}

fn node_rss(cluster: &Cluster) -> anyhow::Result<Vec<(u64, u64)>> {
    cluster
        .ids()
        .into_iter()
        .map(|id| {
            let pid = cluster.pid(id).with_context(|| format!("node {id} is not running"))?;
            Ok((id, rss_bytes(pid)?))
        })
        .collect()
}

/// `used_memory` from `INFO memory`.
async fn redis_used_memory(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("INFO memory has no used_memory")
}

async fn measure_redis(a: &MemoryArgs, addr: &str) -> anyhow::Result<RedisMemory> {
    let mut conn = redis_client(addr)?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to redis at {addr}"))?;
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut conn).await?;
    if size != 0 {
        bail!("the redis at {addr} holds {size} keys; give an empty one (this measures the growth from the load)");
    }
    let before = redis_used_memory(&mut conn).await?;
    let endpoints = vec![addr.to_string()];
    let mut adapters = Vec::new();
    for _ in 0..System::Redis.connections_for(a.clients.min(64)) {
        adapters.push(Adapter::connect(System::Redis, &endpoints, None).await?);
    }
    load::preload(&adapters, a.keys, a.value_bytes, adapters.len()).await?;
    let after = redis_used_memory(&mut conn).await?;
    Ok(RedisMemory {
        used_memory_before: before,
        used_memory_after: after,
        bytes_per_key: after.saturating_sub(before) as f64 / a.keys as f64,
    })
}

/// `raftcache-bench memory`.
pub async fn run(a: MemoryArgs) -> anyhow::Result<()> {
    ensure!(a.keys > 0, "--keys must be at least 1");
    ensure!(
        a.value_bytes > 0 && a.value_bytes <= load::MAX_VALUE_BYTES,
        "--value-bytes must be 1..={}",
        load::MAX_VALUE_BYTES
    );
    ensure!(a.clients > 0, "--clients must be at least 1");
    let durability = if a.fsync { Durability::Fsync } else { Durability::Async };
    let replicas = a.nodes.min(3);
    let opts = ClusterOptions {
        nodes: a.nodes,
        groups: a.groups,
        replicas,
        durability,
        extra_args: a.serve_args.clone(),
        ..Default::default()
    };
    let cluster = Cluster::start(opts).await?;
    let before = node_rss(&cluster)?;
    let endpoints = cluster.endpoints();
    let mut adapters = Vec::new();
    for _ in 0..System::Raftcache.connections_for(a.clients) {
        adapters.push(Adapter::connect(System::Raftcache, &endpoints, Some(Level::Linearizable)).await?);
    }
    load::preload(&adapters, a.keys, a.value_bytes, a.clients).await?;
    drop(adapters);
    eprintln!("waiting for every replica to apply the load, then {:?} to settle…", a.settle);
    cluster.wait_converged(&cluster.data_groups(), Duration::from_secs(120)).await?;
    tokio::time::sleep(a.settle).await;
    let after = node_rss(&cluster)?;
    // Groups are placed round-robin, so each node holds about replicas / nodes of the keys.
    let keys_per_node = a.keys as f64 * replicas as f64 / a.nodes as f64;
    let nodes: Vec<NodeMemory> = before
        .iter()
        .zip(&after)
        .map(|(&(node, b), &(_, r))| NodeMemory {
            node,
            rss_before_bytes: b,
            rss_after_bytes: r,
            bytes_per_key: r.saturating_sub(b) as f64 / keys_per_node,
        })
        .collect();
    drop(cluster);
    let worst = nodes.iter().map(|n| n.bytes_per_key).fold(0.0, f64::max);
    let redis = match &a.redis {
        Some(addr) => Some(measure_redis(&a, addr).await?),
        None => None,
    };
    let ratio = redis.as_ref().map(|r| worst / r.bytes_per_key.max(1.0));
    let report = MemoryReport {
        keys: a.keys,
        value_bytes: a.value_bytes,
        nodes: a.nodes,
        groups: a.groups,
        replicas,
        durability: durability.as_arg(),
        serve_args: a.serve_args.clone(),
        raftcache: nodes,
        raftcache_bytes_per_key: worst,
        redis,
        ratio_to_redis: ratio,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    std::fs::write(a.out.join("memory.json"), serde_json::to_string_pretty(&report)?)?;
    for n in &report.raftcache {
        println!(
            "raftcache node {}: RSS {:.1} MiB → {:.1} MiB, {:.0} bytes/key",
            n.node,
            n.rss_before_bytes as f64 / 1048576.0,
            n.rss_after_bytes as f64 / 1048576.0,
            n.bytes_per_key
        );
    }
    if let Some(r) = &report.redis {
        println!(
            "redis: used_memory {:.1} MiB → {:.1} MiB, {:.0} bytes/key; raftcache/redis = {:.2}×",
            r.used_memory_before as f64 / 1048576.0,
            r.used_memory_after as f64 / 1048576.0,
            r.bytes_per_key,
            ratio.unwrap_or(f64::NAN)
        );
    }
    println!("{}", a.out.display());
    Ok(())
}
