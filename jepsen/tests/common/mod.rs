//! Shared by the run tests: short runs, one at a time, evidence kept on failure.

use tokio::sync::Mutex;

use raftcache_jepsen::checker::Validity;
use raftcache_jepsen::history::Workload;
use raftcache_jepsen::nemesis::NemesisKind;
use raftcache_jepsen::{run, RunOptions, RunSummary};

/// Runs share two cores with nothing else: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Seconds of a CI run (`JEPSEN_CI_SECS` overrides).
fn secs() -> u64 {
    std::env::var("JEPSEN_CI_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15)
}

/// The seed: `JEPSEN_SEED` if set, else random (printed, so a failure can be repeated).
fn seed() -> u64 {
    std::env::var("JEPSEN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::random::<u32>() as u64)
}

/// A short run of `nemeses` with `bugs` and `workloads`.
#[allow(dead_code)] // each test file compiles this module; t50 uses only `short_run_with`
pub async fn short_run(nemeses: &[NemesisKind], bugs: &[&str], workloads: &[Workload]) -> RunSummary {
    short_run_with(nemeses, bugs, workloads, &[]).await
}

/// [`short_run`] with more `serve` flags for every node.
pub async fn short_run_with(
    nemeses: &[NemesisKind],
    bugs: &[&str],
    workloads: &[Workload],
    serve_args: &[&str],
) -> RunSummary {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut opts = RunOptions {
        time_s: secs(),
        nemeses: nemeses.to_vec(),
        seed: seed(),
        bugs: bugs.iter().map(|b| b.to_string()).collect(),
        quiet_ms: (500, 2_000),
        hold_ms: (1_500, 4_000),
        progress: false,
        extra_args: serve_args.iter().map(|a| a.to_string()).collect(),
        ..RunOptions::default()
    };
    opts.workload.workloads = workloads.to_vec();
    eprintln!(
        "jepsen CI run: nemesis {:?}, bugs {:?}, workloads {:?}, serve args {:?}, seed {} (repeat with JEPSEN_SEED={})",
        nemeses, bugs, workloads, serve_args, opts.seed, opts.seed
    );
    let summary = run(opts).await.expect("the harness itself failed");
    eprintln!("{}", summary.verdict.text());
    summary
}

/// Removes a run's directory when it showed what the test expected; keeps it otherwise.
pub fn done(summary: &RunSummary, as_expected: bool) {
    if as_expected && std::env::var_os("JEPSEN_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&summary.dir);
    } else {
        eprintln!("evidence kept in {}", summary.dir.display());
    }
}

/// The validity of checker `name`.
#[allow(dead_code)]
pub fn validity(summary: &RunSummary, name: &str) -> Validity {
    summary.verdict.checkers.iter().find(|c| c.name == name).map(|c| c.valid).expect("checker ran")
}
