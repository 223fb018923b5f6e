//! `raftcache-bench`: one load generator for raftcache and its peers (etcd, Redis).
//!
//! - `load` drives a running system with one workload and prints ops/s and latency percentiles
//!   (HDR histograms), with a live progress line; `--json FILE` appends the record, and
//!   `--timeline FILE.csv` writes throughput and latency per 100 ms, with an SVG plot beside it.
//! - `suite` runs the same workloads against each running system and writes `summary.json`
//!   (one record per measurement), `summary.md` (ratio tables) and `summary.svg`;
//!   scripts/bench.sh starts the systems and calls it.
//! - `report DIR` makes summary.md and summary.svg again from DIR/summary.json.
//! - `failover` starts its own 3-node cluster and measures, N times, how long writes to a group
//!   stop after its leader is killed with SIGKILL.
//! - `scale` starts clusters of each shape (nodes × groups) in turn and measures writes and
//!   linearizable reads against each.
//! - `memory` loads N keys into a cluster and reports RSS per key per node, beside an empty
//!   Redis's `used_memory` per key for the same keys.
//! - `smoke` starts a 1-node cluster and runs a short load against it (CI keeps this working).
//!
//! The etcd adapter is behind the `etcd` cargo feature (etcd-client's build needs `protoc`).

mod adapter;
mod failover;
mod load;
mod memory;
mod record;
mod report;
mod scale;
mod smoke;
mod suite;
mod timeline;
mod workload;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "raftcache-bench", about = "Load generator for raftcache and its peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one workload against a running system.
    Load(load::LoadArgs),
    /// Run the same workloads against each running system and write the report.
    Suite(suite::SuiteArgs),
    /// Make summary.md and summary.svg again from DIR/summary.json.
    Report {
        /// A results dir holding summary.json.
        dir: PathBuf,
    },
    /// Measure failover time after SIGKILL of a group leader.
    Failover(failover::FailoverArgs),
    /// Throughput against the number of nodes and groups (starts its own clusters).
    Scale(scale::ScaleArgs),
    /// Memory per key in a loaded cluster, beside Redis's (starts its own cluster).
    Memory(memory::MemoryArgs),
    /// Start a 1-node cluster and run a short load of every kind against it.
    Smoke(smoke::SmokeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load(a) => load::run(a).await,
        Command::Suite(a) => suite::run(a).await,
        Command::Report { dir } => report::run(&dir),
        Command::Failover(a) => failover::run(a).await,
        Command::Scale(a) => scale::run(a).await,
        Command::Memory(a) => memory::run(a).await,
        Command::Smoke(a) => smoke::run(a).await,
    }
}
