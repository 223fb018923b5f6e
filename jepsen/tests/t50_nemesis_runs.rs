//! t50: a short randomized run per nemesis against the correct build; every checker must pass.
//!
//! Needs `target/debug/raftcache` built with the fault-injection feature
//! (`cargo build --workspace --bins`). `JEPSEN_SEED` repeats a run, `JEPSEN_CI_SECS` lengthens
//! it, `JEPSEN_KEEP=1` keeps the results directory of passing runs too.

mod common;

use raftcache_jepsen::history::Workload;
use raftcache_jepsen::nemesis::NemesisKind;

async fn must_pass(nemesis: NemesisKind) {
    must_pass_with(nemesis, &[]).await;
}

async fn must_pass_with(nemesis: NemesisKind, serve_args: &[&str]) {
    let s = common::short_run_with(&[nemesis], &[], &Workload::ALL, serve_args).await;
    common::done(&s, s.verdict.valid);
    assert!(
        s.verdict.valid,
        "{} run found anomalies; evidence in {}:\n{}",
        nemesis.name(),
        s.dir.display(),
        s.verdict.text()
    );
    assert!(s.verdict.ops.ok > 100, "too few operations succeeded to mean anything: {:?}", s.verdict.ops);
    assert!(s.verdict.faults > 0, "no fault was injected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t50_kill() {
    // Small write-ahead log segments and frequent snapshots, so that kills land while segments
    // roll over and purged ones are deleted (how seed 6006 found a replay bug).
    must_pass_with(NemesisKind::Kill, &["--wal-segment-mb=1", "--snapshot-every=200", "--keep-logs=20"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t51_pause() {
    must_pass(NemesisKind::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t52_partition() {
    must_pass(NemesisKind::Partition).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t53_delay() {
    must_pass(NemesisKind::Delay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t54_clock() {
    must_pass(NemesisKind::Clock).await;
}
