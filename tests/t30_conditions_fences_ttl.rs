//! t30: conditional writes, invalidation fences and TTL.
//!
//! - `if_absent` and `if_version` succeed exactly when their condition holds and report the
//!   current version when it does not;
//! - an invalidation fences the key: a conditional set based on a version from before the fence
//!   (including "absent", version 0) is refused as FENCED; one based on the fence succeeds;
//! - TTL expiry is agreed by all replicas: once the leader says a key expired, no replica that
//!   has caught up with that read serves it, and after the leader's sweep every replica holds the
//!   same keys and digest;
//! - an expired key does not come back after a leader change (kill -9 or transfer).

use std::time::Duration;

use raftcache_proto::cache::Consistency as Pb;
use raftcache_tests::*;

fn opts(ttl: Option<Duration>, condition: Condition) -> SetOptions {
    SetOptions { ttl, condition }
}

#[tokio::test(flavor = "multi_thread")]
async fn t30_conditions_and_fences() {
    let c = start_default().await;
    let client = c.client().await.unwrap();

    // if_absent
    let a = client.set_with("t30", b"absent", "a", opts(None, Condition::IfAbsent)).await.unwrap();
    match client.set_with("t30", b"absent", "b", opts(None, Condition::IfAbsent)).await {
        Err(Error::ConditionFailed { current_version }) => assert_eq!(current_version, a.version),
        other => panic!("second if_absent set: expected ConditionFailed, got {other:?}"),
    }
    let r = client.get("t30", b"absent").await.unwrap();
    assert_eq!((r.value.as_deref(), r.version), (Some(&b"a"[..]), a.version), "if_absent must not overwrite");
    client.delete("t30", b"absent").await.unwrap();
    client.set_with("t30", b"absent", "c", opts(None, Condition::IfAbsent)).await.expect("if_absent after delete");

    // if_version
    let v1 = client.set("t30", b"cas", "x1").await.unwrap().version;
    let v2 = client.set_with("t30", b"cas", "x2", opts(None, Condition::IfVersion(v1))).await.unwrap().version;
    assert!(v2 > v1, "versions must increase: {v1} then {v2}");
    match client.set_with("t30", b"cas", "x3", opts(None, Condition::IfVersion(v1))).await {
        Err(Error::ConditionFailed { current_version }) => assert_eq!(current_version, v2),
        other => panic!("if_version with a stale version: expected ConditionFailed, got {other:?}"),
    }
    match client.delete_with("t30", b"cas", Some(v1)).await {
        Err(Error::ConditionFailed { current_version }) => assert_eq!(current_version, v2),
        other => panic!("delete with a stale if_version: expected ConditionFailed, got {other:?}"),
    }
    let r = client.get("t30", b"cas").await.unwrap();
    assert_eq!((r.value.as_deref(), r.version), (Some(&b"x2"[..]), v2));

    // Invalidation fences a present key.
    let vo = client.set("t30", b"fenced", "old").await.unwrap().version;
    assert_eq!(client.get("t30", b"fenced").await.unwrap().version, vo);
    let fence = client.invalidate("t30", b"fenced").await.unwrap().version;
    assert!(fence > vo, "fence {fence} must be newer than the value it removes ({vo})");
    let r = client.get("t30", b"fenced").await.unwrap();
    assert_eq!(r.value, None, "an invalidated key must be gone");
    assert_eq!(r.version, fence, "a read of an invalidated key returns the fence as its version");
    match client.set_with("t30", b"fenced", "stale", opts(None, Condition::IfVersion(vo))).await {
        Err(Error::Fenced { fence: f }) => assert_eq!(f, fence),
        other => panic!("set based on the pre-fence version {vo}: expected Fenced, got {other:?}"),
    }
    assert_eq!(client.get("t30", b"fenced").await.unwrap().value, None, "a fenced write must not land");

    // The slow loader: it saw the key absent (version 0), the key was invalidated meanwhile.
    let seen = client.get("t30", b"loader").await.unwrap();
    assert_eq!((seen.value.as_deref(), seen.version), (None, 0));
    let fence2 = client.invalidate("t30", b"loader").await.unwrap().version;
    match client.set_with("t30", b"loader", "stale", opts(None, Condition::IfVersion(seen.version))).await {
        Err(Error::Fenced { fence: f }) => assert_eq!(f, fence2),
        other => panic!("fill based on a read from before the invalidation: expected Fenced, got {other:?}"),
    }

    // A fill based on the fence itself is fresh and lands.
    let fresh = client.set_with("t30", b"fenced", "fresh", opts(None, Condition::IfVersion(fence))).await.unwrap();
    assert!(fresh.version > fence);
    let r = client.get("t30", b"fenced").await.unwrap();
    assert_eq!((r.value.as_deref(), r.version), (Some(&b"fresh"[..]), fresh.version));

    // The CLI reports a fenced write with exit code 1 and says so.
    let fence3 = client.invalidate("t30", b"fenced").await.unwrap().version;
    let out = c.ctl(&["set", "t30", "fenced", "cli", "--if-version", &fresh.version.to_string()]).await.unwrap();
    assert_eq!(out.code, 1, "ctl set with a pre-fence version: {out}");
    assert!(out.says("fenced"), "the message should say the write was fenced: {out}");
    let out = c.ctl(&["set", "t30", "cas", "cli", "--if-version", &v1.to_string()]).await.unwrap();
    assert_eq!(out.code, 1, "ctl set with a stale version: {out}");
    assert!(out.says("condition"), "the message should say the condition failed: {out}");
    assert!(fence3 > fresh.version);

    // Replicas agree on all of it.
    c.wait_converged(&c.data_groups(), Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn t30_ttl_expiry_agreed_by_all_replicas() {
    let c = start_default().await;
    let client = c.client().await.unwrap();
    let short: Vec<String> = (0..12).map(|i| format!("short-{i}")).collect();
    let lasting: Vec<String> =
        (0..4).map(|i| format!("long-{i}")).chain((0..4).map(|i| format!("plain-{i}"))).collect();

    for k in &short {
        client
            .set_with("t30", k.as_bytes(), "s", opts(Some(Duration::from_millis(1500)), Condition::None))
            .await
            .unwrap();
    }
    for k in &lasting {
        let ttl = k.starts_with("long").then(|| Duration::from_secs(3600));
        client.set_with("t30", k.as_bytes(), "l", opts(ttl, Condition::None)).await.unwrap();
    }
    let r = client.get("t30", b"long-0").await.unwrap();
    assert!(r.expires_at_ms.is_some(), "a key set with a TTL reports no expiry: {r:?}");
    assert_eq!(client.get("t30", b"plain-0").await.unwrap().expires_at_ms, None);

    // The leader expires the short keys.
    for k in &short {
        let gone = eventually(Duration::from_secs(30), &format!("{k} expires"), || {
            let client = client.clone();
            let k = k.clone();
            async move {
                let r = client.get("t30", k.as_bytes()).await?;
                anyhow::ensure!(r.value.is_none(), "still live: {r:?}");
                Ok(r)
            }
        })
        .await
        .unwrap();

        // Every replica that caught up with that read agrees at once.
        for id in c.ids() {
            let r = retrying(|| raw_get(&c.addr(id), "t30", k, read_opts(Pb::Session, gone.applied_index, 0)))
                .await
                .unwrap();
            assert_eq!(
                text(&r),
                None,
                "node {id} serves {k} after the leader expired it (token {})",
                gone.applied_index
            );
        }
    }

    // The sweep reaches every replica: same keys, same digests, only the lasting keys left.
    eventually(Duration::from_secs(60), "expired keys swept on every replica", || {
        let c = &c;
        async move {
            for id in c.ids() {
                let s = c.status(id).await?;
                let keys: u64 = s.groups.iter().filter(|g| g.group != 0).map(|g| g.keys).sum();
                anyhow::ensure!(keys == 8, "node {id} holds {keys} keys, expected 8");
            }
            Ok(())
        }
    })
    .await
    .unwrap();
    c.wait_converged(&c.data_groups(), Duration::from_secs(30)).await.unwrap();

    for k in &lasting {
        for id in c.ids() {
            let r =
                retrying(|| raw_get(&c.addr(id), "t30", k, read_opts(Pb::FollowerLinearizable, 0, 0))).await.unwrap();
            assert_eq!(text(&r).as_deref(), Some("l"), "{k} at node {id}");
        }
    }
    for k in &short {
        for id in c.ids() {
            let r = retrying(|| raw_get(&c.addr(id), "t30", k, read_opts(Pb::Eventual, 0, 5_000))).await.unwrap();
            assert_eq!(text(&r), None, "{k} at node {id} after the sweep");
        }
    }
}

/// Reads `key` at every live node, strictly and locally, and fails if any serves a value.
async fn assert_gone_everywhere(c: &Cluster, key: &str, token: u64, when: &str) {
    for id in c.live() {
        let addr = c.addr(id);
        for (level, min_index) in [(Pb::Linearizable, 0), (Pb::FollowerLinearizable, 0), (Pb::Session, token)] {
            let r = retrying(|| raw_get(&addr, "t30", key, read_opts(level, min_index, 0)))
                .await
                .unwrap_or_else(|e| panic!("{when}: {level:?} read of {key} at node {id}: {e}"));
            assert_eq!(text(&r), None, "{when}: {key} came back in a {level:?} read at node {id}: {r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn t30_no_resurrection_after_leader_change() {
    let c = start_default().await;
    let client = c.client().await.unwrap();
    let group = client.group_of("t30", b"phoenix").unwrap();

    // Expires right around a crash of the leader.
    let old_leader = c.leader_of(group).await.unwrap();
    client.set_with("t30", b"phoenix", "p", opts(Some(Duration::from_secs(2)), Condition::None)).await.unwrap();
    c.kill(old_leader);
    let new_leader = c.leader_of(group).await.unwrap();
    assert_ne!(new_leader, old_leader);
    let gone = eventually(Duration::from_secs(30), "phoenix expires under the new leader", || {
        let client = client.clone();
        async move {
            let r = client.get("t30", b"phoenix").await?;
            anyhow::ensure!(r.value.is_none(), "still live: {r:?}");
            Ok(r)
        }
    })
    .await
    .unwrap();
    // For a while after, on every live replica and level: still gone.
    for _ in 0..10 {
        assert_gone_everywhere(&c, "phoenix", gone.applied_index, "after kill -9 of the leader").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The old leader comes back (replaying its log) and must not serve it either.
    c.restart(old_leader).await.unwrap();
    c.wait_ready(Duration::from_secs(60)).await.unwrap();
    let token = client.get("t30", b"phoenix").await.unwrap().applied_index;
    assert_gone_everywhere(&c, "phoenix", token, "after the old leader restarted").await;

    // Expired and swept, then leadership moves by transfer: still gone.
    client.set_with("t30", b"phoenix", "p2", opts(Some(Duration::from_secs(1)), Condition::None)).await.unwrap();
    eventually(Duration::from_secs(30), "phoenix expires and is swept everywhere", || {
        let c = &c;
        async move {
            for (id, g) in c.group_statuses(group).await {
                anyhow::ensure!(g.keys == 0, "node {id} still holds {} keys in group {group}", g.keys);
            }
            Ok(())
        }
    })
    .await
    .unwrap();
    let leader = c.leader_of(group).await.unwrap();
    let target = c.ids().into_iter().find(|n| *n != leader).unwrap();
    client.transfer_leader(&c.addr(target), group, target).await.unwrap();
    eventually(Duration::from_secs(30), "leadership moves by transfer", || {
        let c = &c;
        async move {
            let l = c.leader_of(group).await?;
            anyhow::ensure!(l == target, "leader is {l}, not {target}");
            Ok(())
        }
    })
    .await
    .unwrap();
    let token = client.get("t30", b"phoenix").await.unwrap().applied_index;
    assert_gone_everywhere(&c, "phoenix", token, "after a leader transfer").await;
    c.wait_converged(&[group], Duration::from_secs(30)).await.unwrap();
}
