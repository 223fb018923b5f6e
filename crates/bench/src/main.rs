//! `raftcache-bench`: one load generator for raftcache and its peers.
//!
//! - `load` drives a running system with a workload and prints ops/s and latency percentiles
//!   (HDR histograms), with a live progress line; `--json FILE` appends a record.
//! - `failover` starts its own 3-node cluster and measures, N times, how long writes to a group
//!   stop after its leader is killed with SIGKILL.
//! - `smoke` starts a 1-node cluster and runs a short load against it (CI keeps this working).

mod adapter;
mod failover;
mod load;
mod report;
mod workload;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "raftcache-bench", about = "Load generator for raftcache and its peers")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workload against a running system.
    Load(load::LoadArgs),
    /// Measure failover time after SIGKILL of a group leader.
    Failover(failover::FailoverArgs),
    /// Start a 1-node cluster and run a short load against it.
    Smoke(load::SmokeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load(a) => load::run(a).await.map(|_| ()),
        Command::Failover(a) => failover::run(a).await,
        Command::Smoke(a) => load::smoke(a).await,
    }
}
