//! t40: failover.
//!
//! - kill -9 the leader of a group while clients write continuously: writes to that group (and
//!   to every other group the node led) resume under a new leader, and every acknowledged write
//!   is readable afterwards with the version it was acknowledged with;
//! - a write retried with the same `(client_id, seq)` across the leader change applies once: the
//!   retry returns the original version and does not overwrite a later write;
//! - a leader paused past its read lease, replaced, and resumed with linearizable reads already
//!   queued for it never answers them from its old state.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use raftcache_proto::cache::Consistency as Pb;
use raftcache_tests::*;

/// One acknowledged write: key, value, version, group, when it was acknowledged.
type Ack = (String, String, u64, u64, Instant);

#[tokio::test(flavor = "multi_thread")]
async fn t40_kill_leader_under_continuous_writes() {
    let c = start_default().await;
    let client = c.client().await.unwrap();
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));

    // Sixteen independent clients (own client_id each), each writing one key at a time.
    let mut writer_clients = Vec::new();
    for _ in 0..16 {
        writer_clients.push(c.client().await.unwrap());
    }
    let writers: Vec<_> = writer_clients
        .into_iter()
        .enumerate()
        .map(|(w, client)| {
            let (acks, failures, stop) = (acks.clone(), failures.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}-{i}");
                    let value = format!("value-{w}-{i}");
                    match client.set("t40", key.as_bytes(), value.clone()).await {
                        Ok(r) => acks.lock().unwrap().push((key, value, r.version, r.group, Instant::now())),
                        // Indeterminate (timeout, unavailable) or refused: not acknowledged, so not
                        // checked. Definite errors other than these would be a bug.
                        Err(e) => failures.lock().unwrap().push(format!("{key}: {e}")),
                    }
                    i += 1;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = c.leader_of(1).await.unwrap();
    let led: BTreeSet<u64> = c
        .wait_ready(Duration::from_secs(60))
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, l)| *l == victim)
        .map(|(g, _)| g)
        .collect();
    let before = acks.lock().unwrap().len();
    assert!(before > 0, "no write was acknowledged before the failure");
    c.kill(victim);
    let killed_at = Instant::now();
    eprintln!("killed node {victim}, leader of groups {led:?}, after {before} acknowledged writes");

    // Writes resume: every data group the victim led acknowledges writes made after the kill.
    let data_led: BTreeSet<u64> = led.iter().copied().filter(|g| *g != 0).collect();
    let resumed = eventually(Duration::from_secs(60), "writes resume in the groups the killed node led", || {
        let acks = acks.clone();
        let data_led = data_led.clone();
        async move {
            let acks = acks.lock().unwrap();
            let after: BTreeSet<u64> =
                acks.iter().filter(|a| a.4 > killed_at + Duration::from_millis(200)).map(|a| a.3).collect();
            let missing: Vec<u64> = data_led.difference(&after).copied().collect();
            anyhow::ensure!(missing.is_empty(), "no write acknowledged after the kill in groups {missing:?}");
            Ok(acks.len())
        }
    })
    .await;
    // Let writes run a moment longer under the new leaders, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let resumed = resumed.unwrap();
    let acks = acks.lock().unwrap().clone();
    let failures = failures.lock().unwrap().clone();
    eprintln!("{} writes acknowledged ({resumed} when all groups had resumed), {} failed", acks.len(), failures.len());

    // Each error must be of the kind a failover may cause, never a refusal.
    for f in &failures {
        assert!(
            f.contains("unavailable") || f.contains("deadline"),
            "a write failed with an error a failover does not explain: {f}"
        );
    }

    // Every acknowledged write is there, as acknowledged.
    let expected: Vec<(String, String, u64)> = acks.iter().map(|a| (a.0.clone(), a.1.clone(), a.2)).collect();
    assert_all_readable(&client, "t40", &expected, 32).await;

    // The killed node comes back and catches up to the same state.
    c.restart(victim).await.unwrap();
    c.wait_ready(Duration::from_secs(60)).await.unwrap();
    c.wait_converged(&c.groups(), Duration::from_secs(90)).await.unwrap();
    c.check_alive().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn t40_retried_write_applies_once_across_leader_change() {
    let c = start_default().await;
    let client = c.client().await.unwrap();
    let group = client.group_of("t40", b"once").unwrap();
    let leader = c.leader_of(group).await.unwrap();
    let client_id = 0x7e57_0000_0000_0001u64;

    let first =
        retrying(|| raw_set(&c.addr(leader), set_req_with_id("t40", "once", "first", client_id, 1))).await.unwrap();
    let (_, first_applied, _) = header(&first.header);

    c.kill(leader);
    let new_leader = c.leader_of(group).await.unwrap();
    assert_ne!(new_leader, leader);

    // The client "did not hear" the answer and retries, through whichever node answers.
    let retry = || async {
        eventually(Duration::from_secs(30), "the retried write is answered", || async {
            let mut last = None;
            for id in c.live() {
                match raw_set(&c.addr(id), set_req_with_id("t40", "once", "first", client_id, 1)).await {
                    Ok(r) => return Ok(r),
                    Err(e) => last = Some(format!("node {id}: {e}")),
                }
            }
            anyhow::bail!("{}", last.unwrap_or_default())
        })
        .await
        .unwrap()
    };
    let again = retry().await;
    assert_eq!(again.version, first.version, "the retry was applied a second time (new version)");
    let r = client.get("t40", b"once").await.unwrap();
    assert_eq!((r.value.as_deref(), r.version), (Some(&b"first"[..]), first.version));
    assert!(r.applied_index >= first_applied);

    // A later write by the same client, then a late duplicate of the first: no overwrite.
    let second = retrying(|| raw_set(&c.addr(new_leader), set_req_with_id("t40", "once", "second", client_id, 2)))
        .await
        .unwrap();
    assert!(second.version > first.version);
    let late = retry().await;
    assert_eq!(late.version, first.version, "a late duplicate must return the original result");
    let r = client.get("t40", b"once").await.unwrap();
    assert_eq!((r.value.as_deref(), r.version), (Some(&b"second"[..]), second.version), "a late duplicate overwrote");

    // The old leader returns; the replicas agree.
    c.restart(leader).await.unwrap();
    c.wait_ready(Duration::from_secs(60)).await.unwrap();
    c.wait_converged(&[group], Duration::from_secs(60)).await.unwrap();
    let r = client.get("t40", b"once").await.unwrap();
    assert_eq!((r.value.as_deref(), r.version), (Some(&b"second"[..]), second.version));
}

#[tokio::test(flavor = "multi_thread")]
async fn t40_distinct_writes_of_one_client_apply_in_any_order() {
    // One client, several writes in flight: they may reach a group out of sequence order (the
    // SDK numbers writes across all groups and sends them concurrently). Each distinct
    // (client_id, seq) is a new write and must apply; only a repeat of a seq is a duplicate.
    let c = start_default().await;
    let client = c.client().await.unwrap();
    let group = client.group_of("t40", b"ooo-a").unwrap();
    let keys = keys_in_group(&client, "t40", group, "ooo-", 3);
    let leader = c.leader_of(group).await.unwrap();
    let addr = c.addr(leader);
    let client_id = 0x7e57_0000_0000_0002u64;

    let later = retrying(|| raw_set(&addr, set_req_with_id("t40", &keys[0], "seq-10", client_id, 10))).await.unwrap();
    let earlier = retrying(|| raw_set(&addr, set_req_with_id("t40", &keys[1], "seq-3", client_id, 3))).await;
    let earlier = earlier.unwrap_or_else(|e| {
        panic!("seq 3 of client {client_id:#x}, sent after its seq 10 reached group {group}, was refused: {e:?}")
    });
    assert_ne!(earlier.version, later.version, "seq 3 was answered with the result of seq 10");
    let r = client.get("t40", keys[1].as_bytes()).await.unwrap();
    assert_eq!(r.value.as_deref(), Some(&b"seq-3"[..]));

    // And through the SDK: many concurrent writes from one client all apply.
    let kvs: Vec<(String, String)> = (0..400).map(|i| (format!("conc-{i}"), format!("v{i}"))).collect();
    let results = set_many(&client, "t40", kvs, 64).await;
    let failed: Vec<String> =
        results.iter().filter_map(|(k, _, r)| r.as_ref().err().map(|e| format!("{k}: {e}"))).collect();
    assert!(
        failed.is_empty(),
        "{} of 400 concurrent writes of one client failed; first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn t40_a_resumed_old_leader_does_not_serve_reads_from_an_expired_lease() {
    let c = start(ClusterOptions { groups: 2, ..ClusterOptions::default() }).await;
    let client = c.client().await.unwrap();
    let group = client.group_of("t40", b"probe").unwrap();
    let keys = keys_in_group(&client, "t40", group, "lease", 64);

    for round in 0..3 {
        let old = c.leader_of_within(group, Duration::from_secs(30)).await.unwrap();
        let kvs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("r{round}-old-{k}"))).collect();
        for (k, _, r) in set_many(&client, "t40", kvs, 16).await {
            r.unwrap_or_else(|e| panic!("round {round}: set {k}: {e}"));
        }
        c.pause(old).unwrap();
        // Another node takes over (the paused one is not asked) and overwrites every key.
        let new = c.leader_of_within(group, Duration::from_secs(30)).await.unwrap();
        assert_ne!(new, old, "round {round}: the paused node cannot still lead");
        let via_new = c.client_of(new).await.unwrap();
        let kvs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("r{round}-new-{k}"))).collect();
        let mut versions = std::collections::HashMap::new();
        for (k, _, r) in set_many(&via_new, "t40", kvs, 16).await {
            versions.insert(k.clone(), r.unwrap_or_else(|e| panic!("round {round}: set {k}: {e}")).version);
        }
        // Linearizable reads reach the paused node's socket before it runs again, so it handles
        // them while it may still believe it leads: only its lease check stands in the way.
        let reads: Vec<_> = keys
            .iter()
            .map(|k| {
                let read = raw_get(&c.addr(old), "t40", k, read_opts(Pb::Linearizable, 0, 0));
                let k = k.clone();
                tokio::spawn(async move { (k, read.await) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.resume(old).unwrap();
        let mut served = 0;
        let mut refusals = std::collections::BTreeSet::new();
        for (k, r) in join_all(reads).await.into_iter().map(|r| r.unwrap()) {
            match r {
                Ok(r) => {
                    served += 1;
                    assert!(
                        r.version >= versions[&k],
                        "round {round}: linearizable read of {k} at resumed node {old} returned version {} ({:?}), \
                         but version {} was acknowledged by node {new} before the read was sent",
                        r.version,
                        String::from_utf8_lossy(&r.value),
                        versions[&k]
                    );
                }
                Err(s) if matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
                    refusals.insert(format!("{:?}: {}", s.code(), s.message()));
                }
                Err(s) => panic!("round {round}: read of {k} at node {old}: {s}"),
            }
        }
        assert!(served > 0, "round {round}: the resumed node answered none of the reads; refused with {refusals:#?}");
        c.wait_ready(Duration::from_secs(30)).await.unwrap();
    }
    assert_no_panics(&c);
}
