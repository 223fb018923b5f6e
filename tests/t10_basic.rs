//! t10: a 3-node cluster forms, forwards, and spreads keys.
//!
//! - a set through node 1 is read linearizably through node 3 with the same version (both
//!   nodes forward when they do not lead the key's group);
//! - every group, the metadata group included, has one leader all replicas agree on;
//! - 1,000 keys land on at least 14 of the 16 groups, and the client's ring agrees with the
//!   nodes' about where each key lives;
//! - `raftcache ctl` prints what its contract says and exits with its documented codes.

use std::collections::BTreeMap;

use raftcache_proto::cache::Consistency as Pb;
use raftcache_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn t10_set_through_node1_read_through_node3() {
    let c = start_default().await;
    // Every group (0 = metadata, 1..=16 data) has a leader, and every node hosts every group
    // (3 replicas on 3 nodes) and names the same leader for it. Checked on one snapshot of all
    // statuses; retried because an election may be in flight between two status calls.
    eventually(std::time::Duration::from_secs(30), "all nodes agree on a leader for every group", || {
        let c = &c;
        async move {
            let leaders = c.check_ready().await.map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                leaders.keys().copied().collect::<Vec<_>>() == c.groups(),
                "groups with a leader: {leaders:?}"
            );
            for id in c.ids() {
                let s = c.status(id).await?;
                anyhow::ensure!(s.node_id == id, "node {id} reports id {}", s.node_id);
                let groups: BTreeMap<u64, u64> = s.groups.iter().map(|g| (g.group, g.leader)).collect();
                anyhow::ensure!(
                    groups.keys().copied().collect::<Vec<_>>() == c.groups(),
                    "groups hosted by node {id}: {groups:?}"
                );
                for (g, leader) in &groups {
                    anyhow::ensure!(
                        *leader == leaders[g],
                        "node {id} names leader {leader} for group {g}, not {}",
                        leaders[g]
                    );
                }
            }
            Ok(())
        }
    })
    .await
    .unwrap();

    let (n1, n3) = (c.addr(1), c.addr(3));
    let mut forwarded_by_both = 0;
    for i in 0..48 {
        let key = format!("key-{i}");
        let value = format!("value-{i}");
        let set = retrying(|| raw_set(&n1, set_req("t10", &key, value.clone())))
            .await
            .unwrap_or_else(|e| panic!("set {key} via node 1: {e}"));
        let (group, set_applied, _) = header(&set.header);
        assert!(set.version > 0, "version of {key} is 0");
        assert!(set_applied >= set.version, "{key}: applied index {set_applied} < version {}", set.version);

        let before = c.leader_of(group).await.unwrap();
        let got = retrying(|| raw_get(&n3, "t10", &key, read_opts(Pb::Linearizable, 0, 0)))
            .await
            .unwrap_or_else(|e| panic!("get {key} via node 3: {e}"));
        assert_eq!(text(&got).as_deref(), Some(value.as_str()), "{key} read through node 3");
        assert_eq!(got.version, set.version, "{key}: version read through node 3");
        let (read_group, _, served_by) = header(&got.header);
        assert_eq!(read_group, group, "{key}: group of the read and of the write differ");
        assert_served_by_leader(&c, group, before, served_by, &format!("linearizable read of {key}")).await;
        if served_by == 2 {
            forwarded_by_both += 1;
        }
    }
    // 48 keys over 16 groups with leaders spread over 3 nodes: some groups are led by node 2.
    assert!(forwarded_by_both > 0, "no read was served by node 2, so forwarding by both ends was not exercised");
    c.check_alive().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn t10_thousand_keys_spread_over_groups() {
    let c = start_default().await;
    let client = c.client().await.unwrap();
    let kvs: Vec<(String, String)> = (0..1000).map(|i| (format!("spread-{i}"), format!("v{i}"))).collect();
    let results = write_all(&c, "t10", kvs.clone(), 32).await;

    let mut per_group: BTreeMap<u64, u64> = BTreeMap::new();
    for ((k, _), r) in kvs.iter().zip(&results) {
        let routed = client.group_of("t10", k.as_bytes()).unwrap();
        assert_eq!(r.group, routed, "{k}: the node put it in group {} but the client's ring says {routed}", r.group);
        assert!((1..=16).contains(&r.group), "{k} landed in group {}", r.group);
        *per_group.entry(r.group).or_default() += 1;
    }
    assert!(per_group.len() >= 14, "1000 keys landed on only {} of 16 groups: {per_group:?}", per_group.len());

    // Every replica's key counts add up to what was written, group by group.
    c.wait_converged(&c.groups(), std::time::Duration::from_secs(60)).await.unwrap();
    for id in c.ids() {
        let s = c.status(id).await.unwrap();
        for g in c.data_groups() {
            let gs = s.groups.iter().find(|x| x.group == g).unwrap();
            assert_eq!(gs.keys, per_group.get(&g).copied().unwrap_or(0), "keys in group {g} on node {id}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn t10_ctl_commands_and_exit_codes() {
    let c = start_default().await;

    let ready = c.ctl(&["wait-ready", "--timeout", "60s"]).await.unwrap();
    assert_eq!(ready.code, 0, "wait-ready: {ready}");

    let set = c.ctl(&["set", "t10", "greeting", "hello"]).await.unwrap();
    assert_eq!(set.code, 0, "set: {set}");
    let version: u64 = set.out().parse().unwrap_or_else(|_| panic!("set must print the version: {set}"));
    assert!(version > 0);

    let get = c.ctl(&["get", "t10", "greeting"]).await.unwrap();
    assert_eq!((get.code, get.out()), (0, "hello"), "get: {get}");

    let json = c.ctl(&["get", "t10", "greeting", "--json"]).await.unwrap();
    assert_eq!(json.code, 0, "get --json: {json}");
    let j = json.json().unwrap();
    assert_eq!(j["value"], "hello", "{j}");
    assert_eq!(j["version"].as_u64(), Some(version), "{j}");
    let client = c.client().await.unwrap();
    assert_eq!(j["group"].as_u64(), Some(client.group_of("t10", b"greeting").unwrap()), "{j}");
    assert!(j["applied_index"].as_u64().is_some_and(|a| a >= version), "{j}");
    assert!(j["served_by"].as_u64().is_some_and(|n| (1..=3).contains(&n)), "{j}");

    let version_s = version.to_string();
    for extra in [
        &["--consistency", "linearizable"][..],
        &["--consistency", "follower"],
        &["--consistency", "session", "--min-index", &version_s],
        &["--consistency", "eventual", "--max-staleness-ms", "5000"],
    ] {
        let mut args = vec!["get", "t10", "greeting"];
        args.extend_from_slice(extra);
        // An eventual read may lag the write a little; the others may not.
        let out = eventually(std::time::Duration::from_secs(10), "ctl get", || {
            let args = args.clone();
            let c = &c;
            async move {
                let o = c.ctl(&args).await?;
                if (o.code, o.out()) == (0, "hello") {
                    Ok(o)
                } else {
                    anyhow::bail!("{o}")
                }
            }
        })
        .await;
        out.unwrap_or_else(|e| panic!("ctl {args:?}: {e:#}"));
    }

    let missing = c.ctl(&["get", "t10", "no-such-key"]).await.unwrap();
    assert_eq!(missing.code, 1, "get of a missing key: {missing}");
    assert!(missing.says("not found"), "message should say not found: {missing}");

    let absent = c.ctl(&["set", "t10", "once", "1", "--if-absent"]).await.unwrap();
    assert_eq!(absent.code, 0, "first --if-absent: {absent}");
    let again = c.ctl(&["set", "t10", "once", "2", "--if-absent"]).await.unwrap();
    assert_eq!(again.code, 1, "second --if-absent: {again}");
    assert!(again.says("condition"), "message should say the condition failed: {again}");

    let ttl = c.ctl(&["set", "t10", "short", "x", "--ttl", "30s"]).await.unwrap();
    assert_eq!(ttl.code, 0, "set --ttl: {ttl}");
    let with_ttl = client.get("t10", b"short").await.unwrap();
    assert!(with_ttl.expires_at_ms.is_some(), "a --ttl 30s set has no expiry: {with_ttl:?}");

    let del = c.ctl(&["del", "t10", "greeting"]).await.unwrap();
    assert_eq!(del.code, 0, "del: {del}");
    let del_version: u64 = del.out().parse().unwrap_or_else(|_| panic!("del must print a version: {del}"));
    assert!(del_version > version, "del version {del_version} <= set version {version}");
    let gone = c.ctl(&["get", "t10", "greeting"]).await.unwrap();
    assert_eq!(gone.code, 1, "get after del: {gone}");

    let inv = c.ctl(&["invalidate", "t10", "once"]).await.unwrap();
    assert_eq!(inv.code, 0, "invalidate: {inv}");
    let fence: u64 = inv.out().parse().unwrap_or_else(|_| panic!("invalidate must print the fence: {inv}"));
    assert!(fence > 0);

    let status = c.ctl(&["status"]).await.unwrap();
    assert_eq!(status.code, 0, "status: {status}");
    assert!(!status.out().is_empty(), "status printed nothing");
    let status_json = c.ctl(&["status", "--json"]).await.unwrap();
    assert_eq!(status_json.code, 0, "status --json: {status_json}");
    status_json.json().unwrap();

    // Through a single endpoint, too: node 2 forwards what it does not lead.
    let one = c.ctl_at(&c.addr(2), &["get", "t10", "short"]).await.unwrap();
    assert_eq!((one.code, one.out()), (0, "x"), "get through node 2 only: {one}");
}
