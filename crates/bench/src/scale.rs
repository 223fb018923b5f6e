//! `raftcache-bench scale`: throughput against the cluster's shape. For every (nodes, groups)
//! pair it starts a fresh cluster (testkit, replication factor min(3, nodes), fsync), runs the
//! same write and linearizable-read loads against it, stops it, and writes `scale.json` (one
//! record per measurement, tagged with nodes, groups and worker threads) and `scale.md`.
//!
//! The nodes share this machine's cores the way `scripts/cluster.sh` and `scripts/bench.sh`
//! share them: each runs cores / nodes worker threads (at least one) unless told otherwise, so
//! a shape's numbers compare with the local cluster's and the benchmark's.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context};
use clap::Args;
use raftcache_testkit::{Cluster, ClusterOptions};
use serde::Serialize;

use crate::adapter::{Level, System};
use crate::load::{self, Spec};
use crate::record::Record;
use crate::workload::{KeyDist, Mix};

/// `raftcache-bench scale`.
#[derive(Clone, Debug, Args)]
pub struct ScaleArgs {
    /// Node counts to try.
    #[arg(long, value_delimiter = ',', default_value = "3,5")]
    pub nodes: Vec<u64>,
    /// Data-group counts to try with each node count.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    pub groups: Vec<u64>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Measured time of each load.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before each load.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Distinct keys (written once before the read load).
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Worker threads per node (`serve --worker-threads`); by default this machine's cores
    /// divided among the shape's nodes, at least one.
    #[arg(long)]
    pub worker_threads: Option<u64>,
    /// More `raftcache serve` flags for every node (repeatable), e.g.
    /// `--serve-arg=--write-linger-ms=1`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
    /// Write scale.json and scale.md here.
    #[arg(long, default_value = "bench/results/scale")]
    pub out: PathBuf,
}

/// One measurement of one cluster shape.
#[derive(Debug, Serialize)]
struct ScaleRecord {
    nodes: u64,
    groups: u64,
    replicas: u64,
    worker_threads: u64,
    #[serde(flatten)]
    record: Record,
}

/// `raftcache-bench scale`.
pub async fn run(a: ScaleArgs) -> anyhow::Result<()> {
    check(&a)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let spec = |workload| Spec {
        system: System::Raftcache,
        workload,
        keys: KeyDist::Uniform,
        key_space: a.key_space,
        value_bytes: a.value_bytes,
        clients: a.clients,
        level: Some(Level::Linearizable),
        duration: a.duration,
        warmup: a.warmup,
    };
    let (write, read) = (spec(Mix::Write), spec(Mix::Read));
    write.validate()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let shapes: Vec<(u64, u64)> = a.nodes.iter().flat_map(|&n| a.groups.iter().map(move |&g| (n, g))).collect();
    let mut records = Vec::new();
    for (i, &(nodes, groups)) in shapes.iter().enumerate() {
        let replicas = nodes.min(3);
        let worker_threads = a.worker_threads.unwrap_or_else(|| shared_cores(cores, nodes));
        eprintln!(
            "[{}/{}] {nodes} nodes, {groups} groups, {replicas} replicas, {worker_threads} worker threads each: starting",
            i + 1,
            shapes.len()
        );
        let mut extra_args = vec!["--worker-threads".to_string(), worker_threads.to_string()];
        extra_args.extend(a.serve_args.iter().cloned());
        let cluster =
            Cluster::start(ClusterOptions { nodes, groups, replicas, extra_args, ..Default::default() }).await?;
        let endpoints = cluster.endpoints();
        for s in [&write, &read] {
            let adapters = load::connect(s, &endpoints).await?;
            if s.workload == Mix::Read {
                load::preload(&adapters, s.key_space, s.value_bytes, s.clients).await?;
            }
            let out = load::measure(s, &adapters).await?;
            load::report_outcome(&out);
            records.push(ScaleRecord { nodes, groups, replicas, worker_threads, record: out.record });
        }
        drop(cluster);
    }
    let json = serde_json::to_string_pretty(&serde_json::json!({ "runs": records }))?;
    std::fs::write(a.out.join("scale.json"), json)?;
    let md = table(&records);
    std::fs::write(a.out.join("scale.md"), &md)?;
    println!("{md}");
    println!("{}", a.out.display());
    Ok(())
}

/// Rejects flags that name no shape or that clash.
fn check(a: &ScaleArgs) -> anyhow::Result<()> {
    ensure!(!a.nodes.is_empty() && !a.groups.is_empty(), "--nodes and --groups need at least one value each");
    ensure!(a.nodes.iter().all(|&n| n > 0), "--nodes values must be at least 1");
    ensure!(a.groups.iter().all(|&g| g > 0), "--groups values must be at least 1");
    ensure!(a.worker_threads != Some(0), "--worker-threads must be at least 1");
    ensure!(
        !a.serve_args.iter().any(|s| s.starts_with("--worker-threads")),
        "--serve-arg cannot set --worker-threads (each node already gets it); use scale's own --worker-threads"
    );
    Ok(())
}

/// Worker threads for each of `nodes` nodes sharing `cores` cores: an equal share, at least one.
fn shared_cores(cores: u64, nodes: u64) -> u64 {
    (cores / nodes.max(1)).max(1)
}

/// One row per cluster shape: writes and linearizable reads side by side.
fn table(records: &[ScaleRecord]) -> String {
    let mut md = String::from(
        "| nodes | groups | writes/s | write p99 ms | lin. reads/s | read p99 ms |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut shapes: Vec<(u64, u64)> = records.iter().map(|r| (r.nodes, r.groups)).collect();
    shapes.dedup();
    for (n, g) in shapes {
        let find = |w: &str| records.iter().find(|r| r.nodes == n && r.groups == g && r.record.workload == w);
        let cell = |r: Option<&ScaleRecord>| match r {
            Some(r) => (format!("{:.0}", r.record.ops_per_sec), format!("{:.1}", r.record.p99_us as f64 / 1000.0)),
            None => ("–".into(), "–".into()),
        };
        let ((w, wp), (r, rp)) = (cell(find("write")), cell(find("read")));
        let _ = writeln!(md, "| {n} | {g} | {w} | {wp} | {r} | {rp} |");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_record;

    fn rec(nodes: u64, groups: u64, workload: &str, ops: f64, p99_us: u64) -> ScaleRecord {
        let consistency = if workload == "read" { "linearizable" } else { "n/a" };
        ScaleRecord {
            nodes,
            groups,
            replicas: nodes.min(3),
            worker_threads: 1,
            record: test_record("raftcache", workload, consistency, 64, ops, p99_us),
        }
    }

    #[test]
    fn one_row_per_shape_with_writes_and_reads_side_by_side() {
        let records = vec![
            rec(3, 1, "write", 2970.4, 41_000),
            rec(3, 1, "read", 7000.0, 12_500),
            rec(5, 16, "write", 1500.0, 90_000),
        ];
        let md = table(&records);
        let rows: Vec<&str> = md.lines().skip(2).collect();
        assert_eq!(rows, ["| 3 | 1 | 2970 | 41.0 | 7000 | 12.5 |", "| 5 | 16 | 1500 | 90.0 | – | – |"], "{md}");
    }

    #[test]
    fn serve_args_cannot_set_the_worker_threads_that_scale_sets_itself() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: ScaleArgs,
        }
        let args = |extra: &[&str]| Cli::parse_from([&["scale"][..], extra].concat()).a;
        assert!(check(&args(&["--serve-arg=--write-linger-ms=1"])).is_ok());
        let err = check(&args(&["--serve-arg=--worker-threads=2"])).unwrap_err().to_string();
        assert!(err.contains("--serve-arg cannot set --worker-threads"), "{err}");
        assert!(check(&args(&["--worker-threads", "0"])).is_err());
        assert!(check(&args(&["--groups", "0"])).is_err());
    }

    #[test]
    fn nodes_get_an_equal_share_of_the_cores_and_at_least_one_thread() {
        assert_eq!(shared_cores(2, 3), 1);
        assert_eq!(shared_cores(2, 5), 1);
        assert_eq!(shared_cores(8, 3), 2);
        assert_eq!(shared_cores(16, 5), 3);
        assert_eq!(shared_cores(4, 1), 4);
    }
}
