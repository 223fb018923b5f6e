//! t50: durability and catch-up.
//!
//! - SIGKILL every node, restart them all: every acknowledged write (sets, overwrites, deletes,
//!   invalidation fences) is there. A SIGTERMed node exits cleanly and comes back the same way.
//! - A node down during 10k writes, while the others snapshot and purge their logs behind the
//!   snapshots, catches up by snapshot when it returns, then holds the same digest as the other
//!   replicas and serves the data itself.

use std::collections::BTreeMap;
use std::time::Duration;

use raftcache_proto::cache::Consistency as Pb;
use raftcache_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn t50_kill_all_and_restart_keeps_acknowledged_data() {
    // Fences must outlive the test's slowest run; the default retention is 60 s of leader time.
    let c = start(ClusterOptions { fence_retention_ms: Some(600_000), ..Default::default() }).await;
    let client = c.client().await.unwrap();

    let kvs: Vec<(String, String)> = (0..400).map(|i| (format!("k{i}"), format!("v{i}"))).collect();
    let mut results = write_all(&c, "t50", kvs.clone(), 32).await;
    // Overwrite some, delete some, invalidate some.
    let over: Vec<(String, String)> = (0..400).step_by(7).map(|i| (format!("k{i}"), format!("v{i}-again"))).collect();
    for (w, (k, _)) in write_all(&c, "t50", over.clone(), 32).await.into_iter().zip(&over) {
        let i: usize = k[1..].parse().unwrap();
        results[i] = w;
    }
    let mut expected: BTreeMap<String, Option<(String, u64)>> = BTreeMap::new();
    for (i, (k, v)) in kvs.iter().enumerate() {
        let v = if i % 7 == 0 { format!("{v}-again") } else { v.clone() };
        expected.insert(k.clone(), Some((v, results[i].version)));
    }
    for i in (3..400).step_by(11) {
        let k = format!("k{i}");
        client.delete("t50", k.as_bytes()).await.unwrap();
        expected.insert(k, None);
    }
    let mut fences = BTreeMap::new();
    for i in (5..400).step_by(13) {
        let k = format!("k{i}");
        let old = expected[&k].as_ref().map(|(_, v)| *v).unwrap_or(0);
        let fence = client.invalidate("t50", k.as_bytes()).await.unwrap().version;
        fences.insert(k.clone(), (old, fence));
        expected.insert(k, None);
    }

    for id in c.ids() {
        c.kill(id);
    }
    for id in c.ids() {
        c.start_node(id).unwrap();
    }
    c.wait_ready(Duration::from_secs(90)).await.unwrap();

    let client = c.client().await.unwrap();
    let present: Vec<(String, String, u64)> =
        expected.iter().filter_map(|(k, v)| v.as_ref().map(|(v, ver)| (k.clone(), v.clone(), *ver))).collect();
    assert_all_readable(&client, "t50", &present, 32).await;
    for (k, v) in &expected {
        if v.is_none() {
            let r = client.get("t50", k.as_bytes()).await.unwrap();
            assert_eq!(r.value, None, "{k} was deleted or invalidated before the crash but is back");
        }
    }
    // Fences survive the crash: a write based on the pre-fence version is still refused.
    for (k, (old, fence)) in &fences {
        let r = client
            .set_with("t50", k.as_bytes(), "stale", SetOptions { ttl: None, condition: Condition::IfVersion(*old) })
            .await;
        match r {
            Err(Error::Fenced { fence: f }) => assert_eq!(f, *fence, "{k}"),
            other => panic!("{k}: set based on pre-fence version {old} after restart: expected Fenced, got {other:?}"),
        }
    }
    c.wait_converged(&c.groups(), Duration::from_secs(60)).await.unwrap();

    // SIGTERM is a clean shutdown, and the node comes back with its data.
    let status = c.stop(2).await.unwrap();
    assert!(status.success(), "node 2 did not exit cleanly on SIGTERM: {status}");
    c.restart(2).await.unwrap();
    c.wait_ready(Duration::from_secs(60)).await.unwrap();
    c.wait_converged(&c.groups(), Duration::from_secs(60)).await.unwrap();
    let sample: Vec<(String, String, u64)> = present.iter().take(50).cloned().collect();
    assert_all_readable(&client, "t50", &sample, 16).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn t50_lagging_node_catches_up_by_snapshot() {
    let c = start(ClusterOptions { snapshot_every: Some(100), keep_logs: Some(10), ..Default::default() }).await;
    let lagging = 3;

    let before: BTreeMap<u64, GroupStatus> =
        c.status(lagging).await.unwrap().groups.into_iter().map(|g| (g.group, g)).collect();
    c.kill(lagging);

    let kvs: Vec<(String, String)> =
        (0..10_000).map(|i| (format!("k{i}"), format!("value-{i}-{}", "x".repeat(64)))).collect();
    let results = write_all(&c, "t50", kvs.clone(), 64).await;

    // The others snapshotted and purged their logs past what the lagging node has, so a log
    // replay cannot bring it up to date.
    let live_statuses = c.live_statuses().await;
    for g in c.data_groups() {
        let had = before[&g].last_log_index;
        for (id, s) in &live_statuses {
            let gs = s.groups.iter().find(|x| x.group == g).unwrap();
            assert!(gs.snapshot_index > 0, "group {g} on node {id} never snapshotted (snapshot every 100): {gs:?}");
            assert!(
                gs.purged_index > had,
                "group {g} on node {id} purged only up to {} but the lagging node has up to {had}: {gs:?}",
                gs.purged_index
            );
        }
    }

    c.start_node(lagging).unwrap();
    c.wait_ready(Duration::from_secs(90)).await.unwrap();
    c.wait_converged(&c.groups(), Duration::from_secs(120)).await.unwrap();

    let after: BTreeMap<u64, GroupStatus> =
        c.status(lagging).await.unwrap().groups.into_iter().map(|g| (g.group, g)).collect();
    for g in c.data_groups() {
        let gs = &after[&g];
        assert!(
            gs.snapshot_index > before[&g].last_log_index,
            "group {g}: the returned node's snapshot index {} is not past what it had ({})",
            gs.snapshot_index,
            before[&g].last_log_index
        );
    }

    // It serves the data itself.
    for (i, (k, v)) in kvs.iter().enumerate().step_by(50) {
        let token = results[i].applied_index;
        let r = retrying(|| raw_get(&c.addr(lagging), "t50", k, read_opts(Pb::Session, token, 0))).await.unwrap();
        assert_eq!(text(&r).as_deref(), Some(v.as_str()), "{k} at the returned node");
        assert_eq!(r.version, results[i].version, "{k} version at the returned node");
        assert_eq!(header(&r.header).2, lagging, "{k}: a local session read at node {lagging} was served elsewhere");
    }
    c.check_alive().unwrap();
}
