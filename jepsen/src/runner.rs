//! One run: start the cluster, run the workloads under the nemesis, heal, probe liveness, read
//! every key one last time, check, and write the results directory.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::checker::{self, fence::FenceParams, Anomaly, CheckParams, CheckerResult};
use crate::cluster::{Cluster, ClusterSpec};
use crate::history::{write_jsonl, Consistency, Recorder, Workload};
use crate::nemesis::plan::PlanLimits;
use crate::nemesis::timeline::{self, Phase, Timeline};
use crate::nemesis::{self, NemesisKind, NemesisOptions};
use crate::report::{self, latency, OpCounts, Verdict};
use crate::workload::{self, liveness, Ctx, Proc, Slots, WorkloadOptions};

/// Process number of the final reads.
const FINAL_PROCESS: u64 = 1 << 40;

/// Everything that defines a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunOptions {
    /// Length of the fault phase (s).
    pub time_s: u64,
    /// Enabled nemeses.
    pub nemeses: Vec<NemesisKind>,
    /// Seed of every random choice.
    pub seed: u64,
    /// Planted bugs passed to every node (`--bug`).
    pub bugs: Vec<String>,
    /// Nodes.
    pub nodes: u64,
    /// Data groups.
    pub groups: u64,
    /// Replicas per group.
    pub replicas: u64,
    /// `--fence-retention-ms` of the nodes.
    pub fence_retention_ms: u64,
    /// Workload sizes.
    pub workload: WorkloadOptions,
    /// Where results directories go.
    pub results_root: PathBuf,
    /// Use this (existing) results directory instead of making one under `results_root`.
    #[serde(default)]
    pub results_dir: Option<PathBuf>,
    /// Quiet spell between faults (ms, min..max).
    pub quiet_ms: (u64, u64),
    /// Fault window (ms, min..max).
    pub hold_ms: (u64, u64),
    /// Probability that a window combines two nemeses.
    pub combine: f64,
    /// Largest clock skew (ms).
    pub max_skew_ms: i64,
    /// Largest link delay (ms).
    pub max_delay_ms: u64,
    /// Every group must serve again within this long after the final heal (ms).
    pub liveness_ms: u64,
    /// Draw a progress line on stderr.
    pub progress: bool,
    /// More `serve` flags for every node.
    pub extra_args: Vec<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            time_s: 60,
            nemeses: NemesisKind::ALL.to_vec(),
            seed: 0,
            bugs: Vec::new(),
            nodes: 5,
            groups: 5,
            replicas: 3,
            fence_retention_ms: 600_000,
            workload: WorkloadOptions::default(),
            results_root: default_results_root(),
            results_dir: None,
            quiet_ms: (1_000, 4_000),
            hold_ms: (2_000, 8_000),
            combine: 0.3,
            max_skew_ms: 30_000,
            max_delay_ms: 400,
            liveness_ms: 10_000,
            progress: true,
            extra_args: Vec::new(),
        }
    }
}

/// `jepsen/results` of this workspace.
pub fn default_results_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results")
}

/// What a run produced.
pub struct RunSummary {
    /// The results directory.
    pub dir: PathBuf,
    /// The verdict (also in `verdict.json`).
    pub verdict: Verdict,
}

struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    last_plain: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new(enabled: bool, len: u64) -> Self {
        if !enabled {
            return Self { bar: None, plain: false, last_plain: Default::default() };
        }
        if !std::io::stderr().is_terminal() {
            return Self { bar: None, plain: true, last_plain: Default::default() };
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
        bar.set_style(
            ProgressStyle::with_template("[{elapsed_precise}] {bar:24.cyan/blue} {pos:>4}/{len}s {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Self { bar: Some(bar), plain: false, last_plain: Default::default() }
    }

    /// Shows the state; without a terminal, a plain line every 10 s.
    fn update(&self, pos: u64, msg: String) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
            b.set_message(msg);
        } else if self.plain && pos / 10 != self.last_plain.swap(pos / 10, std::sync::atomic::Ordering::Relaxed) {
            eprintln!("jepsen: {pos}s {msg}");
        }
    }

    fn stage(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_owned());
        } else if self.plain {
            eprintln!("jepsen: {msg}");
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Runs once. An `Err` means the harness itself failed (the cluster did not start, a binary
/// without the fault-injection feature); anomalies are in the verdict.
pub async fn run(opts: RunOptions) -> Result<RunSummary> {
    let dir = match &opts.results_dir {
        Some(d) => d.clone(),
        None => report::results_dir(&opts.results_root, opts.seed)?,
    };
    report::write_json(&dir.join("run.json"), &opts)?;
    if opts.nodes < 3 {
        bail!("the fault suite needs at least 3 nodes");
    }
    let bin = crate::cluster::node_bin()?;
    let needs_fi = !opts.bugs.is_empty() || opts.nemeses.contains(&NemesisKind::Clock);
    if needs_fi && !crate::cluster::supports_fault_injection(&bin) {
        bail!(
            "{} was built without the `fault-injection` feature (needed for --bug and the clock nemesis); \
             build `raftcache-jepsen-node` with `cargo build -p raftcache-jepsen --bins`",
            bin.display()
        );
    }
    if opts.progress {
        eprintln!(
            "jepsen: seed {} · nemesis {} · {} s · results in {}",
            opts.seed,
            names(&opts.nemeses),
            opts.time_s,
            dir.display()
        );
    }
    let spec = ClusterSpec {
        nodes: opts.nodes,
        groups: opts.groups,
        replicas: opts.replicas.min(opts.nodes),
        fence_retention_ms: opts.fence_retention_ms,
        bugs: opts.bugs.clone(),
        extra_args: opts.extra_args.clone(),
    };
    let cluster = Arc::new(
        Cluster::start(&spec, &dir.join("nodes"))
            .await
            .with_context(|| format!("starting the cluster (logs in {})", dir.join("nodes").display()))?,
    );

    let start = Instant::now();
    let rec = Arc::new(Recorder::new(start));
    let timeline = Arc::new(Timeline::new(start));
    let (stop_tx, stop_rx) = watch::channel(false);
    let nodes: Vec<(u64, String)> = cluster.addrs().iter().map(|(k, v)| (*k, v.clone())).collect();
    let ctx =
        Arc::new(Ctx::new(rec.clone(), stop_rx.clone(), nodes.clone(), opts.groups, opts.workload.clone(), opts.seed));
    let workers = spawn_workers(&ctx, &opts.workload, opts.groups);

    let nemesis_opts = NemesisOptions {
        kinds: opts.nemeses.clone(),
        seed: opts.seed,
        quiet: (Duration::from_millis(opts.quiet_ms.0), Duration::from_millis(opts.quiet_ms.1)),
        hold: (Duration::from_millis(opts.hold_ms.0), Duration::from_millis(opts.hold_ms.1)),
        combine: opts.combine,
        limits: PlanLimits { max_skew_ms: opts.max_skew_ms, max_delay_ms: opts.max_delay_ms },
    };
    let nemesis = tokio::spawn(nemesis::run(cluster.clone(), nemesis_opts, timeline.clone(), stop_rx.clone()));

    let progress = Progress::new(opts.progress, opts.time_s);
    let run_for = Duration::from_secs(opts.time_s);
    while start.elapsed() < run_for {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (ok, fail, info) = rec.counts();
        let active = timeline.active();
        let faults = if active.is_empty() { "no fault".to_owned() } else { active.join("; ") };
        progress
            .update(start.elapsed().as_secs().min(opts.time_s), format!("ok {ok} fail {fail} info {info} | {faults}"));
    }

    progress.stage("stopping clients, healing every fault");
    let _ = stop_tx.send(true);
    let faults = nemesis.await.unwrap_or(0);
    let healed_at = Instant::now();
    let grace = Duration::from_millis(opts.workload.op_timeout_ms) + Duration::from_secs(10);
    let mut pending = futures::future::join_all(workers);
    if tokio::time::timeout(grace, &mut pending).await.is_err() {
        timeline.record(u64::MAX, Phase::Note, "harness", &[], "some clients did not stop in time".into(), None);
    }

    progress.stage("probing liveness");
    let endpoints: Vec<String> = nodes.iter().map(|(_, a)| a.clone()).collect();
    let patience = Duration::from_millis(opts.liveness_ms * 3);
    let recovery = liveness::probe(&endpoints, &cluster.data_groups(), healed_at, patience).await;

    progress.stage("final reads");
    final_reads(&ctx).await;
    let end_ns = rec.now();
    progress.stage("comparing replicas");
    let (diverged, lagging) = cluster.compare_replicas(Duration::from_secs(15)).await;
    for crash in cluster.reap_crashes() {
        timeline.record(
            u64::MAX,
            Phase::Note,
            "crash",
            &[crash.node],
            format!("node {} exited on its own ({}); last log lines:\n{}", crash.node, crash.status, crash.log_tail),
            None,
        );
    }
    cluster.shutdown();
    drop(cluster);

    progress.stage("checking");
    let events = rec.events();
    write_jsonl(&dir.join("history.jsonl"), &events)?;
    let nemesis_events = timeline.events();
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("nemesis.jsonl"))?);
        for e in &nemesis_events {
            serde_json::to_writer(&mut f, e)?;
            f.write_all(b"\n")?;
        }
    }
    let params = check_params(&opts, timeline::max_forward_skew_ms(&nemesis_events));
    let ops = match checker::ops::pair(&events) {
        Ok(ops) => ops,
        Err(e) => bail!("the recorded history is malformed (a harness bug): {e}"),
    };
    let mut results = checker::check_ops(&ops, params);
    results.push(liveness_result(&recovery, opts.liveness_ms));
    results.push(crash_result(&nemesis_events));
    results.push(replica_result(diverged, lagging));
    let (valid, result, checkers) = Verdict::judge(results);
    let counts = OpCounts {
        invoked: ops.len() as u64,
        ok: ops.iter().filter(|o| o.status == checker::ops::Status::Ok).count() as u64,
        fail: ops.iter().filter(|o| o.status == checker::ops::Status::Fail).count() as u64,
        info: ops.iter().filter(|o| o.status == checker::ops::Status::Info).count() as u64,
    };
    let verdict = Verdict {
        valid,
        result,
        seed: opts.seed,
        nemeses: opts.nemeses.iter().map(|k| k.name().to_owned()).collect(),
        bugs: opts.bugs.clone(),
        workloads: opts.workload.workloads.iter().map(|w| w.name().to_owned()).collect(),
        time_s: opts.time_s,
        ops: counts,
        faults,
        recovery_ms: recovery.slowest().map(|d| d.as_millis() as u64),
        checkers,
        results_dir: dir.display().to_string(),
    };
    report::write_json(&dir.join("verdict.json"), &verdict)?;
    std::fs::write(dir.join("verdict.txt"), verdict.text())?;
    let title = format!(
        "raftcache · seed {} · nemesis {} · bugs {} · {}",
        opts.seed,
        names(&opts.nemeses),
        if opts.bugs.is_empty() { "none".to_owned() } else { opts.bugs.join(",") },
        verdict.result
    );
    latency::draw(&dir.join("latency.svg"), &title, &ops, &timeline::windows(&nemesis_events), end_ns)?;
    progress.finish();
    Ok(RunSummary { dir, verdict })
}

fn names(kinds: &[NemesisKind]) -> String {
    if kinds.is_empty() {
        "none".to_owned()
    } else {
        kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
    }
}

/// The history checkers' knobs for a run.
pub fn check_params(opts: &RunOptions, max_forward_skew_ms: u64) -> CheckParams {
    CheckParams {
        fence: FenceParams { retention_ms: Some(opts.fence_retention_ms), max_skew_ms: max_forward_skew_ms },
        ..CheckParams::default()
    }
}

fn spawn_workers(ctx: &Arc<Ctx>, w: &WorkloadOptions, groups: u64) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = Vec::new();
    let mut process = 0u64;
    let mut next = || {
        process += 1;
        process - 1
    };
    if w.workloads.contains(&Workload::Register) {
        let slots = Arc::new(Slots::new("r", w.register_keys.max(1), w.ops_per_key, groups));
        for _ in 0..w.register_clients {
            handles.push(tokio::spawn(workload::register::client(ctx.clone(), slots.clone(), next())));
        }
    }
    if w.workloads.contains(&Workload::Fence) {
        let slots = Arc::new(Slots::new("f", w.fence_keys.max(1), w.ops_per_key, groups));
        for _ in 0..w.loaders {
            handles.push(tokio::spawn(workload::fence::loader(ctx.clone(), slots.clone(), next())));
        }
        for _ in 0..w.invalidators {
            handles.push(tokio::spawn(workload::fence::invalidator(ctx.clone(), slots.clone(), next())));
        }
    }
    if w.workloads.contains(&Workload::Session) {
        let slots = Arc::new(Slots::new("s", w.session_keys.max(1), w.ops_per_key, groups));
        for _ in 0..w.session_clients {
            handles.push(tokio::spawn(workload::session::client(ctx.clone(), slots.clone(), next())));
        }
    }
    handles
}

/// One linearizable read of every key used, after everything healed: acknowledged writes must
/// still be there.
async fn final_reads(ctx: &Ctx) {
    let endpoints: Vec<String> = ctx.nodes.iter().map(|(_, a)| a.clone()).collect();
    let Ok(client) = raftcache_client::Client::connect_with(endpoints, ctx.client_options()).await else { return };
    let mut proc = Proc::new(FINAL_PROCESS, 1);
    for (w, key) in ctx.used_keys() {
        workload::read(ctx, &client, &mut proc, w, &key, Consistency::Linearizable).await;
    }
}

fn liveness_result(r: &liveness::Recovery, bound_ms: u64) -> CheckerResult {
    let bound = Duration::from_millis(bound_ms);
    let mut anomalies = Vec::new();
    for (g, d) in &r.groups {
        match d {
            Some(d) if *d <= bound => {}
            Some(d) => anomalies.push(Anomaly::plain(
                "slow-recovery",
                format!("group {g} served again only {} ms after the final heal (bound {bound_ms} ms)", d.as_millis()),
            )),
            None => anomalies.push(Anomaly::plain(
                "no-recovery",
                format!(
                    "group {g} did not serve a write and a linearizable read within {} ms of the final heal",
                    bound_ms * 3
                ),
            )),
        }
    }
    let summary = match r.slowest() {
        Some(d) => format!("every group served within {} ms of the final heal (bound {bound_ms} ms)", d.as_millis()),
        None => "some group never served again".to_owned(),
    };
    CheckerResult::new("liveness", summary, anomalies)
}

fn replica_result(diverged: Vec<String>, lagging: Vec<String>) -> CheckerResult {
    let mut anomalies: Vec<Anomaly> = diverged.into_iter().map(|d| Anomaly::plain("replicas-diverged", d)).collect();
    anomalies.extend(lagging.into_iter().map(|l| {
        Anomaly::plain("replicas-not-converged", format!("15 s after the final reads the replicas still differ: {l}"))
    }));
    CheckerResult::new("replicas", "after the run, the replicas of each group hold identical states".into(), anomalies)
}

fn crash_result(events: &[timeline::NemesisEvent]) -> CheckerResult {
    let anomalies: Vec<Anomaly> = events
        .iter()
        .filter(|e| e.kind == "crash")
        .map(|e| Anomaly::plain("node-crash", e.description.clone()))
        .collect();
    CheckerResult::new("crashes", "nodes that exited without being killed".into(), anomalies)
}
