//! t60: the suite can fail. Each planted server bug (fault-injection build, `--bug`) must be
//! reported as an anomaly by the checker it breaks, within a short run.

mod common;

use raftcache_jepsen::checker::Validity;
use raftcache_jepsen::history::Workload;
use raftcache_jepsen::nemesis::NemesisKind;

/// Linearizable reads skip ReadIndex and read the local replica: direct reads to followers and
/// to a leader cut off by a partition return stale values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t60_stale_read_is_caught() {
    let s = common::short_run(&[NemesisKind::Partition], &["stale-read"], &[Workload::Register]).await;
    let caught = common::validity(&s, "linearizability") == Validity::Invalid;
    common::done(&s, caught);
    assert!(caught, "--bug stale-read went unnoticed; evidence in {}:\n{}", s.dir.display(), s.verdict.text());
}

/// Invalidations leave no fence: a read after an invalidation reports the absent key at
/// version 0, and a loader conditioning on an older version slips past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t61_no_fence_is_caught() {
    let s = common::short_run(&[NemesisKind::Pause], &["no-fence"], &[Workload::Fence]).await;
    let caught = common::validity(&s, "fence") == Validity::Invalid;
    common::done(&s, caught);
    assert!(caught, "--bug no-fence went unnoticed; evidence in {}:\n{}", s.dir.display(), s.verdict.text());
}
