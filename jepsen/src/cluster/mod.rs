//! The cluster under test: real `raftcache` processes on loopback, every node-to-node link
//! through the harness's own proxy ([`proxy`]).
//!
//! Each node gets its own `--peer-addr` list, naming the proxies of its outgoing links, and its
//! log lives in the results directory, so the cluster is laid out here; the process handling is
//! the testkit's ([`NodeProcess`], with `jepsen` log markers). The nodes run [`node_bin`]. Node logs go straight
//! into the run's results directory; data lives in a temp dir that is removed with the cluster.
//!
//! Dropping a [`Cluster`] SIGKILLs every node.

pub mod proxy;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use raftcache_client::StatusResponse;
use raftcache_proto::admin::admin_service_client::AdminServiceClient;
use raftcache_proto::admin::{InjectFaultRequest, StatusRequest};
use tempfile::TempDir;
use tonic::transport::Endpoint;

use proxy::Net;
use raftcache_testkit::NodeProcess;
pub use raftcache_testkit::NodeState;

/// How to start the cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Nodes, ids `1..=nodes`.
    pub nodes: u64,
    /// Data groups.
    pub groups: u64,
    /// Replicas per group.
    pub replicas: u64,
    /// `--fence-retention-ms`.
    pub fence_retention_ms: u64,
    /// Planted bugs (`--bug NAME` each).
    pub bugs: Vec<String>,
    /// More `serve` flags for every node.
    pub extra_args: Vec<String>,
}

/// A node process that exited without the harness killing it.
#[derive(Clone, Debug)]
pub struct Crash {
    /// The node.
    pub node: u64,
    /// Its exit status.
    pub status: String,
    /// The last lines of its log.
    pub log_tail: String,
}

/// A running cluster.
pub struct Cluster {
    bin: PathBuf,
    _data: TempDir,
    addrs: BTreeMap<u64, String>,
    /// The proxies of every directed node-to-node link.
    pub net: Net,
    nodes: BTreeMap<u64, Mutex<NodeProcess>>,
    /// Each node's `serve` arguments, the same at every start.
    args: BTreeMap<u64, Vec<String>>,
    groups: u64,
}

const NODE_BIN: &str = "raftcache-jepsen-node";

/// The node binary: `RAFTCACHE_JEPSEN_NODE` if set; else `raftcache-jepsen-node` (this crate's
/// build of the server with the fault-injection feature) next to the running executable or in
/// `target/{debug,release}` of an ancestor directory; else the testkit's `raftcache`
/// ([`raftcache_testkit::raftcache_bin`]).
pub fn node_bin() -> Result<PathBuf> {
    match raftcache_testkit::find_bin(NODE_BIN, "RAFTCACHE_JEPSEN_NODE")? {
        Some(p) => Ok(p),
        None => raftcache_testkit::raftcache_bin(),
    }
}

/// Whether `bin` was built with the `fault-injection` feature (it then knows `--bug`).
pub fn supports_fault_injection(bin: &Path) -> bool {
    std::process::Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--bug"))
        .unwrap_or(false)
}

impl Cluster {
    /// Starts proxies and nodes (logs in `log_dir/n<id>.log`) and waits until every group has
    /// a leader.
    pub async fn start(spec: &ClusterSpec, log_dir: &Path) -> Result<Cluster> {
        let bin = node_bin()?;
        let data = tempfile::Builder::new().prefix("raftcache-jepsen-").tempdir()?;
        std::fs::create_dir_all(log_dir)?;
        // Hold the nodes' ports until the proxies have bound theirs, so none can take one.
        let held = hold_free_ports(spec.nodes as usize)?;
        let addrs: BTreeMap<u64, String> = (1..=spec.nodes)
            .zip(&held)
            .map(|(id, l)| Ok((id, format!("127.0.0.1:{}", l.local_addr()?.port()))))
            .collect::<Result<_>>()?;
        let net = Net::start(&addrs).await?;
        drop(held);
        let initial = addrs.iter().map(|(id, a)| format!("{id}={a}")).collect::<Vec<_>>().join(",");
        let mut nodes = BTreeMap::new();
        let mut node_args = BTreeMap::new();
        for (&id, addr) in &addrs {
            let data_dir = data.path().join(format!("n{id}"));
            let mut args: Vec<String> = [
                "serve",
                "--id",
                &id.to_string(),
                "--listen",
                addr,
                "--data-dir",
                &data_dir.display().to_string(),
                "--initial-cluster",
                &initial,
                "--groups",
                &spec.groups.to_string(),
                "--replicas",
                &spec.replicas.to_string(),
                "--fence-retention-ms",
                &spec.fence_retention_ms.to_string(),
                "--peer-addr",
                &net.peer_addr_arg(id),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            for b in &spec.bugs {
                args.push("--bug".into());
                args.push(b.clone());
            }
            args.extend(spec.extra_args.iter().cloned());
            // The node binary's own log filter applies unless the caller sets RUST_LOG.
            let proc = NodeProcess::new(id, data_dir, log_dir.join(format!("n{id}.log")))
                .with_log_marker("jepsen")
                .with_default_rust_log(None);
            nodes.insert(id, Mutex::new(proc));
            node_args.insert(id, args);
        }
        let cluster = Cluster { bin, _data: data, addrs, net, nodes, args: node_args, groups: spec.groups };
        for id in cluster.ids() {
            cluster.spawn(id, "(initial)")?;
        }
        cluster.wait_ready(Duration::from_secs(90)).await.context("the cluster did not become ready")?;
        Ok(cluster)
    }

    fn node(&self, id: u64) -> MutexGuard<'_, NodeProcess> {
        self.nodes[&id].lock().expect("node lock poisoned")
    }

    fn spawn(&self, id: u64, note: &str) -> Result<()> {
        self.node(id).spawn(&self.bin, &self.args[&id], Some(note))
    }

    /// The binary the nodes run.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Node ids.
    pub fn ids(&self) -> Vec<u64> {
        self.addrs.keys().copied().collect()
    }

    /// Data groups `1..=groups`.
    pub fn data_groups(&self) -> Vec<u64> {
        (1..=self.groups).collect()
    }

    /// The client address of node `id`.
    pub fn addr(&self, id: u64) -> String {
        self.addrs[&id].clone()
    }

    /// Every node's client address, by id.
    pub fn addrs(&self) -> &BTreeMap<u64, String> {
        &self.addrs
    }

    /// What the harness believes node `id` is doing. A node that crashed counts as running until [`reap_crashes`](Self::reap_crashes) notices,
    /// so that no crash goes unreported behind a restart.
    pub fn state(&self, id: u64) -> NodeState {
        self.node(id).believed_state()
    }

    /// Nodes in `state`.
    pub fn in_state(&self, state: NodeState) -> Vec<u64> {
        self.ids().into_iter().filter(|id| self.state(*id) == state).collect()
    }

    /// Writes a marker line into node `id`'s log.
    pub fn mark(&self, id: u64, line: &str) {
        self.node(id).mark(line);
    }

    /// SIGKILLs node `id`; false if it was not running.
    pub fn kill(&self, id: u64) -> bool {
        self.node(id).kill()
    }

    /// Starts node `id` again (same port, same data). Does not wait for it.
    pub fn restart(&self, id: u64) -> Result<()> {
        self.spawn(id, "(restart)")
    }

    /// SIGSTOPs node `id`.
    pub fn pause(&self, id: u64) -> Result<()> {
        self.node(id).pause()
    }

    /// SIGCONTs node `id`.
    pub fn resume(&self, id: u64) -> Result<()> {
        self.node(id).resume()
    }

    /// Nodes that exited on their own since the last call.
    pub fn reap_crashes(&self) -> Vec<Crash> {
        let mut out = Vec::new();
        for id in self.ids() {
            let mut n = self.node(id);
            if let Some(status) = n.reap_exit() {
                out.push(Crash { node: id, status: status.to_string(), log_tail: n.log_tail(30) });
            }
        }
        out
    }

    /// SIGKILLs every node.
    pub fn shutdown(&self) {
        for id in self.ids() {
            self.node(id).kill();
        }
    }

    /// Status of node `id`, asked directly.
    pub async fn status(&self, id: u64) -> Result<StatusResponse> {
        let mut c = admin(&self.addr(id)).await?;
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(Duration::from_secs(2));
        Ok(c.status(req).await?.into_inner())
    }

    /// Statuses of the running nodes that answer.
    pub async fn statuses(&self) -> Vec<(u64, StatusResponse)> {
        let live = self.in_state(NodeState::Running);
        let all = futures::future::join_all(live.iter().map(|id| self.status(*id))).await;
        live.into_iter().zip(all).filter_map(|(id, s)| s.ok().map(|s| (id, s))).collect()
    }

    /// Group → its leader, as the running nodes report (the highest-term self-declared leader).
    pub async fn leaders(&self) -> BTreeMap<u64, u64> {
        let mut best: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for (id, s) in self.statuses().await {
            for g in s.groups.iter().filter(|g| g.role == "leader") {
                let e = best.entry(g.group).or_insert((g.term, id));
                if g.term > e.0 {
                    *e = (g.term, id);
                }
            }
        }
        best.into_iter().map(|(g, (_, n))| (g, n)).collect()
    }

    /// Waits until every group (metadata and data) has a leader that every running replica of
    /// it names.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.reap_crashes().into_iter().next() {
                bail!("node {} exited while starting ({}):\n{}", c.node, c.status, c.log_tail);
            }
            let why = match self.check_ready().await {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                bail!("not ready after {timeout:?}: {why}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn check_ready(&self) -> Result<(), String> {
        let running = self.in_state(NodeState::Running);
        let statuses = self.statuses().await;
        if statuses.len() < running.len() {
            return Err(format!("{} of {} running nodes answer status", statuses.len(), running.len()));
        }
        for group in 0..=self.groups {
            let replicas: Vec<_> = statuses
                .iter()
                .flat_map(|(id, s)| s.groups.iter().filter(|g| g.group == group).map(move |g| (id, g)))
                .collect();
            let Some((leader, _)) = replicas.iter().filter(|(_, g)| g.role == "leader").max_by_key(|(_, g)| g.term)
            else {
                return Err(format!("group {group} has no leader"));
            };
            if let Some((id, g)) = replicas.iter().find(|(_, g)| g.leader != **leader) {
                return Err(format!("group {group}: node {id} names leader {} but node {leader} leads", g.leader));
            }
        }
        Ok(())
    }

    /// Waits until the replicas of every group report the same applied index, then compares
    /// their state digests. Returns the groups whose replicas hold different states at the same
    /// index (a safety violation), and those that did not reach the same index in `timeout`.
    pub async fn compare_replicas(&self, timeout: Duration) -> (Vec<String>, Vec<String>) {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses = self.statuses().await;
            let mut by_group: BTreeMap<u64, Vec<(u64, u64, u64)>> = BTreeMap::new();
            for (id, s) in &statuses {
                for g in &s.groups {
                    by_group.entry(g.group).or_default().push((*id, g.applied_index, g.digest));
                }
            }
            let mut diverged = Vec::new();
            let mut lagging = Vec::new();
            for (group, replicas) in &by_group {
                let first = replicas[0];
                let show = || {
                    replicas
                        .iter()
                        .map(|(n, a, d)| format!("n{n}: applied {a} digest {d:016x}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                if replicas.iter().any(|r| r.1 != first.1) {
                    lagging.push(format!("group {group}: {}", show()));
                } else if replicas.iter().any(|r| r.2 != first.2) {
                    diverged.push(format!("group {group}: same applied index, different states: {}", show()));
                }
            }
            let everyone = statuses.len() == self.ids().len();
            if !diverged.is_empty() || (lagging.is_empty() && everyone) || Instant::now() >= deadline {
                if !everyone {
                    lagging.push(format!("only {} of {} nodes answered status", statuses.len(), self.ids().len()));
                }
                return (diverged, lagging);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Shifts node `id`'s clock by `skew_ms` (absolute, not cumulative; 0 undoes it).
    pub async fn set_clock_skew(&self, id: u64, skew_ms: i64) -> Result<()> {
        let mut c = admin(&self.addr(id)).await?;
        let mut req = tonic::Request::new(InjectFaultRequest { clock_skew_ms: skew_ms });
        req.set_timeout(Duration::from_secs(2));
        c.inject_fault(req).await.with_context(|| format!("InjectFault on node {id}"))?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn admin(addr: &str) -> Result<AdminServiceClient<tonic::transport::Channel>> {
    let ch = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(2))
        .connect()
        .await?;
    Ok(AdminServiceClient::new(ch))
}

/// `n` listeners on distinct free loopback ports; drop them just before the nodes bind.
fn hold_free_ports(n: usize) -> Result<Vec<TcpListener>> {
    Ok((0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?)
}
