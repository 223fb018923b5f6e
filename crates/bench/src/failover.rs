//! Failover time: SIGKILL a group's leader while writing to it, and time how long writes to that
//! group stop (kill → first acknowledged write), repeated and summarized by the median.

use std::time::{Duration, Instant};

use clap::Args;
use raftcache_client::{ClientOptions, Error};
use raftcache_testkit::{Cluster, ClusterOptions};

use crate::adapter::NS;

/// `raftcache-bench failover`.
#[derive(Clone, Debug, Args)]
pub struct FailoverArgs {
    /// Repetitions.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
}

pub async fn run(a: FailoverArgs) -> anyhow::Result<()> {
    let cluster =
        Cluster::start(ClusterOptions { nodes: a.nodes, replicas: a.nodes.min(3), ..Default::default() }).await?;
    let client =
        cluster.client_with(ClientOptions { timeout: Duration::from_secs(10), ..ClientOptions::default() }).await?;
    let group = 1;
    let key = (0..)
        .map(|i| format!("failover-{i}"))
        .find(|k| client.group_of(NS, k.as_bytes()).ok() == Some(group))
        .expect("some key maps to group 1");
    let mut times = Vec::new();
    for run in 1..=a.runs {
        client.set(NS, key.as_bytes(), "before").await?;
        let leader = cluster.leader_of(group).await?;
        let t0 = Instant::now();
        cluster.kill(leader);
        loop {
            match client.set(NS, key.as_bytes(), format!("run-{run}")).await {
                Ok(_) => break,
                Err(Error::Unavailable(_) | Error::DeadlineExceeded(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let took = t0.elapsed();
        times.push(took);
        eprintln!("run {run}/{}: leader {leader} killed, writes resumed after {} ms", a.runs, took.as_millis());
        cluster.restart(leader).await?;
        cluster.wait_ready(Duration::from_secs(30)).await?;
    }
    times.sort();
    let ms: Vec<u128> = times.iter().map(|t| t.as_millis()).collect();
    println!(
        "failover after SIGKILL of the leader, {} runs: median {} ms, min {} ms, max {} ms (all: {:?})",
        ms.len(),
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1],
        ms
    );
    Ok(())
}
