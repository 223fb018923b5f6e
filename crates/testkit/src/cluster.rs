use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use raftcache_client::{Client, ClientOptions, GroupStatus, StatusResponse};
use raftcache_proto::admin::admin_service_client::AdminServiceClient;
use raftcache_proto::admin::StatusRequest;
use tempfile::TempDir;
use tonic::transport::Endpoint;

use crate::ctl::{self, CtlOutput};
use crate::node::{stop_child, Node, NodeState};
use crate::options::ClusterOptions;
use crate::ready;

/// How long a node gets to exit after SIGTERM before the kit SIGKILLs it.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// Deadline of one status request.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How many log lines an error or a failed test shows per node.
const TAIL_LINES: usize = 40;

/// A running cluster of `raftcache` processes. Every method takes `&self`, so a cluster can be
/// shared (`Arc<Cluster>`) between a test and the tasks that inject faults.
///
/// Dropping it SIGKILLs every node (see the crate docs).
pub struct Cluster {
    opts: ClusterOptions,
    bin: PathBuf,
    /// `None` once the dir was kept on purpose.
    dir: Option<TempDir>,
    root: PathBuf,
    initial_cluster: String,
    /// Node id → node. The lock is held only for short, non-async work.
    nodes: BTreeMap<u64, Mutex<Node>>,
}

impl Cluster {
    /// Spawns `opts.nodes` nodes and waits until every group has an agreed leader:
    /// [`prepare`](Self::prepare) then [`launch`](Self::launch).
    ///
    /// On timeout the error names the groups without a leader and shows each node's log tail.
    pub async fn start(opts: ClusterOptions) -> Result<Cluster> {
        let cluster = Self::prepare(opts)?;
        cluster.launch().await?;
        Ok(cluster)
    }

    /// Picks the ports and makes the dirs, but starts nothing: addresses are known
    /// ([`addr`](Self::addr)) and per-node flags can be set ([`set_node_args`](Self::set_node_args))
    /// before the first start — e.g. `--peer-addr` through proxies that need the addresses.
    pub fn prepare(opts: ClusterOptions) -> Result<Cluster> {
        if opts.nodes == 0 || opts.replicas == 0 || opts.replicas > opts.nodes || opts.groups == 0 {
            bail!("bad cluster options: {} nodes, {} replicas, {} groups", opts.nodes, opts.replicas, opts.groups);
        }
        let bin = match &opts.bin {
            Some(b) if b.is_file() => b.clone(),
            Some(b) => bail!("ClusterOptions::bin {} is not a file", b.display()),
            None => crate::binary::raftcache_bin()?,
        };
        let dir = tempfile::Builder::new().prefix("raftcache-test-").tempdir()?;
        let root = dir.path().to_path_buf();
        let ports = free_ports(opts.nodes as usize)?;
        let nodes: BTreeMap<u64, Mutex<Node>> = (1..=opts.nodes)
            .zip(ports)
            .map(|(id, port)| (id, Mutex::new(Node::new(id, format!("127.0.0.1:{port}"), &root))))
            .collect();
        let initial_cluster = nodes
            .iter()
            .map(|(id, n)| format!("{id}={}", n.lock().expect("node lock").addr))
            .collect::<Vec<_>>()
            .join(",");
        Ok(Cluster { opts, bin, dir: Some(dir), root, initial_cluster, nodes })
    }

    /// Starts every node that is not running and waits (up to `start_timeout`) until every
    /// group has an agreed leader.
    pub async fn launch(&self) -> Result<()> {
        for id in self.ids() {
            if self.state(id) == NodeState::Down {
                self.start_node(id)?;
            }
        }
        self.wait_ready(self.opts.start_timeout).await.context("the cluster did not become ready")?;
        Ok(())
    }

    /// More `serve` flags for node `id` alone, used from its next start on (after
    /// [`ClusterOptions::extra_args`]).
    pub fn set_node_args(&self, id: u64, args: Vec<String>) {
        self.node(id).extra_args = args;
    }

    /// The options the cluster was started with.
    pub fn options(&self) -> &ClusterOptions {
        &self.opts
    }

    /// The binary the nodes run.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The temp dir holding every node's data dir and log.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// The metadata group and every data group.
    pub fn groups(&self) -> Vec<u64> {
        (0..=self.opts.groups).collect()
    }

    /// The data groups `1..=groups`.
    pub fn data_groups(&self) -> Vec<u64> {
        (1..=self.opts.groups).collect()
    }

    fn node(&self, id: u64) -> MutexGuard<'_, Node> {
        self.nodes
            .get(&id)
            .unwrap_or_else(|| panic!("no node {id} in this cluster (ids {:?})", self.ids()))
            .lock()
            .expect("node lock poisoned")
    }

    /// `host:port` of node `id`. Panics on an unknown id.
    pub fn addr(&self, id: u64) -> String {
        self.node(id).addr.clone()
    }

    /// Every node's `host:port`, by id (stopped nodes included).
    pub fn endpoints(&self) -> Vec<String> {
        self.ids().into_iter().map(|id| self.addr(id)).collect()
    }

    /// [`endpoints`](Self::endpoints) joined with commas, as `ctl --endpoints` takes them.
    pub fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    /// The data dir of node `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.node(id).proc.data_dir().to_path_buf()
    }

    /// The log file of node `id` (stdout and stderr of every start, appended).
    pub fn log_path(&self, id: u64) -> PathBuf {
        self.node(id).proc.log_path().to_path_buf()
    }

    /// The whole log of node `id`.
    pub fn log(&self, id: u64) -> String {
        std::fs::read(self.log_path(id)).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    /// The last `lines` lines of every node's log, labelled.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for id in self.ids() {
            let n = self.node(id);
            out.push_str(&format!("----- node {id} ({}) log tail: {} -----\n", n.addr, n.proc.log_path().display()));
            out.push_str(&n.proc.log_tail(lines));
            out.push('\n');
        }
        out
    }

    /// What the kit believes node `id` is doing.
    pub fn state(&self, id: u64) -> NodeState {
        self.node(id).proc.state()
    }

    /// Ids of the nodes that are running and not paused.
    pub fn live(&self) -> Vec<u64> {
        self.ids().into_iter().filter(|id| self.state(*id) == NodeState::Running).collect()
    }

    /// The pid of node `id`'s process, if it has one.
    pub fn pid(&self, id: u64) -> Option<u32> {
        self.node(id).proc.pid()
    }

    /// Fails if a node the kit started (and did not kill or stop) has exited — it crashed.
    pub fn check_alive(&self) -> Result<()> {
        let mut dead = Vec::new();
        for id in self.ids() {
            let mut n = self.node(id);
            if let Some(status) = n.proc.exited() {
                dead.push(format!("node {id} exited on its own: {}\n{}", explain(status), n.proc.log_tail(TAIL_LINES)));
            }
        }
        if dead.is_empty() {
            Ok(())
        } else {
            Err(anyhow!("{}", dead.join("\n")))
        }
    }

    fn serve_args(&self, id: u64, addr: &str, data_dir: &Path, node_args: &[String]) -> Vec<String> {
        let o = &self.opts;
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            addr.into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--initial-cluster".into(),
            self.initial_cluster.clone(),
            "--groups".into(),
            o.groups.to_string(),
            "--replicas".into(),
            o.replicas.to_string(),
            "--durability".into(),
            o.durability.as_arg().into(),
        ];
        let optional = [
            ("--snapshot-every", o.snapshot_every),
            ("--keep-logs", o.keep_logs),
            ("--fence-retention-ms", o.fence_retention_ms),
        ];
        for (flag, value) in optional {
            if let Some(v) = value {
                args.push(flag.into());
                args.push(v.to_string());
            }
        }
        args.extend(o.extra_args.iter().cloned());
        args.extend(node_args.iter().cloned());
        args
    }

    /// Spawns node `id` (same port, same data dir as before). Does not wait for it.
    pub fn start_node(&self, id: u64) -> Result<()> {
        let mut n = self.node(id);
        let args = self.serve_args(id, &n.addr, n.proc.data_dir(), &n.extra_args);
        n.proc.spawn(&self.bin, &args, None)
    }

    /// SIGKILLs node `id` and reaps it. A no-op if it is not running.
    pub fn kill(&self, id: u64) {
        self.node(id).proc.kill();
    }

    /// SIGTERMs node `id` and waits for it to exit (SIGKILL after 20 s, reported as an error).
    /// Returns its exit status; a clean shutdown is `status.success()`.
    pub async fn stop(&self, id: u64) -> Result<ExitStatus> {
        // Take the process out so no lock is held across the wait.
        let (child, paused) = {
            let mut n = self.node(id);
            (n.proc.child.take(), std::mem::take(&mut n.proc.paused))
        };
        let child = child.with_context(|| format!("node {id} is not running"))?;
        stop_child(id, child, paused, STOP_GRACE).await
    }

    /// SIGSTOPs node `id`: it stays up but stops answering, like a long GC pause or a partition.
    pub fn pause(&self, id: u64) -> Result<()> {
        self.node(id).proc.pause()
    }

    /// SIGCONTs a paused node.
    pub fn resume(&self, id: u64) -> Result<()> {
        self.node(id).proc.resume()
    }

    /// Stops node `id` if it runs (SIGTERM), starts it again with the same port and data dir,
    /// and waits until it answers a status request.
    pub async fn restart(&self, id: u64) -> Result<()> {
        if self.node(id).proc.child.is_some() {
            self.stop(id).await?;
        }
        self.start_node(id)?;
        self.wait_node_up(id, Duration::from_secs(30)).await
    }

    /// Waits until node `id` answers a status request.
    pub async fn wait_node_up(&self, id: u64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let err = match self.status(id).await {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if let Some(status) = self.node(id).proc.exited() {
                bail!("node {id} exited while starting: {status}\n{}", self.node(id).proc.log_tail(TAIL_LINES));
            }
            if Instant::now() >= deadline {
                bail!(
                    "node {id} did not answer within {timeout:?}: {err:#}\n{}",
                    self.node(id).proc.log_tail(TAIL_LINES)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The status of node `id`, asked directly (no forwarding).
    pub async fn status(&self, id: u64) -> Result<StatusResponse> {
        status_at(&self.addr(id)).await.with_context(|| format!("status of node {id}"))
    }

    /// The statuses of all live nodes; nodes that do not answer are left out.
    pub async fn live_statuses(&self) -> Vec<(u64, StatusResponse)> {
        let futs = self.live().into_iter().map(|id| async move { (id, self.status(id).await) });
        let all = futures::future::join_all(futs).await;
        all.into_iter().filter_map(|(id, s)| s.ok().map(|s| (id, s))).collect()
    }

    /// Every live replica's status of `group`.
    pub async fn group_statuses(&self, group: u64) -> Vec<(u64, GroupStatus)> {
        ready::by_group(&self.live_statuses().await).remove(&group).unwrap_or_default()
    }

    /// One check of readiness: every live node answers and every group has an agreed leader
    /// among the live nodes. Returns group → leader.
    pub async fn check_ready(&self) -> Result<BTreeMap<u64, u64>, String> {
        let live = self.live();
        let statuses = self.live_statuses().await;
        if statuses.len() < live.len() {
            let answered: Vec<u64> = statuses.iter().map(|(id, _)| *id).collect();
            return Err(format!("live nodes {live:?}, but only {answered:?} answer status"));
        }
        ready::all_led(&self.groups(), &statuses)
    }

    /// Waits until [`check_ready`](Self::check_ready) passes; the error says what was still
    /// missing and shows the log tails.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<BTreeMap<u64, u64>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            let why = match self.check_ready().await {
                Ok(leaders) => return Ok(leaders),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                bail!("not every group has a leader after {timeout:?}: {why}\n{}", self.log_tails(TAIL_LINES));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The agreed leader of `group` among live nodes, waiting up to 30 s for one.
    pub async fn leader_of(&self, group: u64) -> Result<u64> {
        self.leader_of_within(group, Duration::from_secs(30)).await
    }

    /// The agreed leader of `group` among live nodes, waiting up to `timeout`.
    pub async fn leader_of_within(&self, group: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let why = match ready::agreed_leader(group, &self.group_statuses(group).await) {
                Ok(l) => return Ok(l),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                bail!("no agreed leader for group {group} within {timeout:?}: {why}\n{}", self.log_tails(TAIL_LINES));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the live replicas of each of `groups` have applied the same index and hold
    /// the same digest (quiesce writes first).
    pub async fn wait_converged(&self, groups: &[u64], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let statuses = ready::by_group(&self.live_statuses().await);
            let empty = Vec::new();
            let why = groups.iter().find_map(|g| ready::converged(*g, statuses.get(g).unwrap_or(&empty)).err());
            let Some(why) = why else { return Ok(()) };
            if Instant::now() >= deadline {
                bail!("replicas did not converge within {timeout:?}: {why}\n{}", self.log_tails(TAIL_LINES));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client of the whole cluster (all endpoints), default options.
    pub async fn client(&self) -> Result<Client> {
        self.client_with(ClientOptions::default()).await
    }

    /// A client of the whole cluster with `options`.
    pub async fn client_with(&self, options: ClientOptions) -> Result<Client> {
        Ok(Client::connect_with(self.endpoints(), options).await?)
    }

    /// A client that knows only node `id` as its endpoint.
    pub async fn client_of(&self, id: u64) -> Result<Client> {
        Ok(Client::connect([self.addr(id)]).await?)
    }

    /// Runs `raftcache ctl --endpoints <all nodes> args…` (60 s limit).
    pub async fn ctl(&self, args: &[&str]) -> Result<CtlOutput> {
        self.ctl_at(&self.endpoints_csv(), args).await
    }

    /// Runs `raftcache ctl --endpoints <endpoints> args…` (60 s limit).
    pub async fn ctl_at(&self, endpoints: &str, args: &[&str]) -> Result<CtlOutput> {
        let mut all: Vec<String> = vec!["ctl".into(), "--endpoints".into(), endpoints.into()];
        all.extend(args.iter().map(|a| a.to_string()));
        ctl::run(&self.bin, &all, Duration::from_secs(60)).await
    }

    /// Runs the binary with exactly `args` (60 s limit).
    pub async fn run_bin(&self, args: &[&str]) -> Result<CtlOutput> {
        let all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        ctl::run(&self.bin, &all, Duration::from_secs(60)).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nodes that ended before the kit killed them: crashed, or signalled by someone else.
        let mut ended = Vec::new();
        for (id, n) in self.nodes.iter_mut() {
            let n = n.get_mut().unwrap_or_else(|e| e.into_inner());
            if let Some(status) = n.proc.exited() {
                ended.push(format!("node {id} had exited before the end of the test: {}", explain(status)));
            }
            n.proc.kill();
        }
        if !std::thread::panicking() {
            return;
        }
        eprintln!("\n===== raftcache testkit: the test failed; node log tails =====\n{}", self.log_tails(TAIL_LINES));
        for e in &ended {
            eprintln!("===== raftcache testkit: {e}");
        }
        let keep = self.opts.keep_dir_on_failure || std::env::var_os("RAFTCACHE_KEEP_TEST_DIRS").is_some();
        if keep {
            if let Some(dir) = self.dir.take() {
                eprintln!("===== raftcache testkit: kept data and full logs in {} =====", dir.keep().display());
            }
        } else {
            eprintln!("(set RAFTCACHE_KEEP_TEST_DIRS=1 to keep data dirs and full logs)");
        }
    }
}

/// An exit status with what it suggests: the kit itself only ever SIGKILLs a node it does not
/// stop, so a clean exit means someone else sent SIGTERM or SIGINT.
fn explain(status: ExitStatus) -> String {
    if status.success() {
        format!("{status} (a clean shutdown: something other than the kit sent SIGTERM/SIGINT)")
    } else {
        status.to_string()
    }
}

/// The status of the node at `addr`, asked directly.
pub async fn status_at(addr: &str) -> Result<StatusResponse> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(STATUS_TIMEOUT)
        .connect()
        .await?;
    let mut req = tonic::Request::new(StatusRequest {});
    req.set_timeout(STATUS_TIMEOUT);
    Ok(AdminServiceClient::new(channel).status(req).await?.into_inner())
}

/// `n` distinct ports that were free a moment ago.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    // Hold all listeners until every port is picked so the OS cannot hand out one twice.
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}
