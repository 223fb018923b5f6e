//! `raftcache-jepsen`: run the fault-injection suite, or re-check a saved history.
//!
//! Exit status: 0 when every checker passes, 1 when an anomaly is found (or a checker cannot
//! decide), 2 when the harness itself fails. The last line on stdout is the results directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use raftcache_jepsen::checker::{self, Validity};
use raftcache_jepsen::history::{read_jsonl, Workload};
use raftcache_jepsen::nemesis::timeline::{max_forward_skew_ms, NemesisEvent};
use raftcache_jepsen::nemesis::NemesisKind;
use raftcache_jepsen::runner::{check_params, default_results_root, RunOptions};
use raftcache_jepsen::workload::WorkloadOptions;

#[derive(Parser)]
#[command(name = "raftcache-jepsen", about = "Fault-injection suite for raftcache")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a cluster, run workloads under faults, check, write a results directory.
    Run(RunArgs),
    /// Re-run the history checkers on a results directory (or a history.jsonl).
    Check {
        /// Results directory or history file.
        path: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Seconds of workload under faults.
    #[arg(long, default_value_t = 60)]
    time: u64,
    /// Nemeses: comma-separated kill,pause,partition,delay,clock; `all` or `none`.
    #[arg(long, default_value = "all", value_parser = NemesisKind::parse_list)]
    nemesis: std::vec::Vec<NemesisKind>,
    /// Seed of every random choice (random if not given; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Planted server bug (needs the fault-injection build): stale-read, no-fence. Repeatable.
    #[arg(long = "bug")]
    bugs: Vec<String>,
    /// Workloads: comma-separated register,fence,session, or `all`.
    #[arg(long, default_value = "all", value_parser = Workload::parse_list)]
    workload: std::vec::Vec<Workload>,
    /// Number of nodes.
    #[arg(long, default_value_t = 5)]
    nodes: u64,
    /// Number of data groups.
    #[arg(long, default_value_t = 5)]
    groups: u64,
    /// Where results directories go.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Register clients.
    #[arg(long, default_value_t = WorkloadOptions::default().register_clients)]
    clients: usize,
    /// Operations per register key before moving to a fresh key.
    #[arg(long, default_value_t = WorkloadOptions::default().ops_per_key)]
    ops_per_key: u64,
    /// Deadline of one client operation (ms).
    #[arg(long, default_value_t = WorkloadOptions::default().op_timeout_ms)]
    op_timeout_ms: u64,
    /// Largest clock skew (ms).
    #[arg(long, default_value_t = RunOptions::default().max_skew_ms)]
    max_skew_ms: i64,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// More `raftcache serve` flags for every node (repeatable), e.g.
    /// `--serve-arg=--snapshot-every=200` to snapshot, purge and install snapshots under faults.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match cli.command {
        Command::Run(a) => runtime.block_on(run(a)),
        Command::Check { path } => check(path),
    }
}

async fn run(a: RunArgs) -> ExitCode {
    let seed = a.seed.unwrap_or_else(|| rand::random::<u32>() as u64);
    let workload = WorkloadOptions {
        workloads: a.workload,
        register_clients: a.clients,
        ops_per_key: a.ops_per_key,
        op_timeout_ms: a.op_timeout_ms,
        ..WorkloadOptions::default()
    };
    let root = a.results.unwrap_or_else(default_results_root);
    let dir = match raftcache_jepsen::report::results_dir(&root, seed) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("jepsen: cannot create a results directory under {}: {e:#}", root.display());
            return ExitCode::from(2);
        }
    };
    let opts = RunOptions {
        time_s: a.time,
        nemeses: a.nemesis,
        seed,
        bugs: a.bugs,
        nodes: a.nodes,
        groups: a.groups,
        workload,
        results_root: root,
        results_dir: Some(dir.clone()),
        max_skew_ms: a.max_skew_ms,
        progress: !a.quiet,
        extra_args: a.serve_args,
        ..RunOptions::default()
    };
    match raftcache_jepsen::run(opts).await {
        Ok(summary) => {
            print!("{}", summary.verdict.text().trim_end_matches(&format!("results: {}\n", summary.dir.display())));
            println!("{}", summary.dir.display());
            if summary.verdict.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            let msg = format!("the harness failed (seed {seed}): {e:#}");
            let _ = std::fs::write(dir.join("error.txt"), &msg);
            eprintln!("jepsen: {msg}");
            println!("{}", dir.display());
            ExitCode::from(2)
        }
    }
}

fn check(path: PathBuf) -> ExitCode {
    let (dir, history) = if path.is_dir() { (Some(path.clone()), path.join("history.jsonl")) } else { (None, path) };
    let events = match read_jsonl(&history) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(2);
        }
    };
    let run: RunOptions = dir
        .as_ref()
        .and_then(|d| std::fs::read(d.join("run.json")).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let skew = dir
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("nemesis.jsonl")).ok())
        .map(|s| s.lines().filter_map(|l| serde_json::from_str::<NemesisEvent>(l).ok()).collect::<Vec<_>>())
        .map(|ev| max_forward_skew_ms(&ev))
        .unwrap_or(run.max_skew_ms.max(0) as u64);
    let results = checker::check(&events, check_params(&run, skew));
    let mut valid = true;
    for c in &results {
        println!("[{:?}] {}: {}", c.valid, c.name, c.summary);
        for a in &c.anomalies {
            println!("    {}: {}", a.kind, a.message);
            for op in &a.ops {
                println!("        {op}");
            }
        }
        valid &= c.valid == Validity::Valid;
    }
    println!("{}", dir.unwrap_or(history).display());
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
