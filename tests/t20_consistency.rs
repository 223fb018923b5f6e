//! t20: each consistency level does what DESIGN §6 promises.
//!
//! - LINEARIZABLE: served by the group's leader, always sees the last acknowledged write,
//!   whichever node the request enters through.
//! - FOLLOWER_LINEARIZABLE: served by the follower asked, and it too sees the last acknowledged
//!   write immediately after it was acknowledged (no sleeping in between).
//! - SESSION{min_index}: every node serves a read with the write's index and sees the write;
//!   a token from the future is never answered from older state.
//! - EVENTUAL{max_staleness}: any replica serves from local state while it hears from a leader;
//!   cut off from the leader for longer than the bound, it refuses with UNAVAILABLE.

use std::time::Duration;

use raftcache_proto::cache::Consistency as Pb;
use raftcache_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn t20_linearizable_and_follower_linearizable() {
    let c = start_default().await;
    let client = c.client().await.unwrap();
    let group = client.group_of("t20", b"lin").unwrap();

    for i in 0..20 {
        let value = format!("v{i}");
        let w = client.set("t20", b"lin", value.clone()).await.unwrap();
        let leader = c.leader_of(group).await.unwrap();

        let r = client.get("t20", b"lin").await.unwrap();
        assert_eq!(r.value.as_deref(), Some(value.as_bytes()), "round {i}: SDK linearizable read");
        assert_eq!(r.version, w.version, "round {i}: SDK linearizable read version");
        assert_served_by_leader(&c, group, leader, r.served_by, &format!("round {i}: SDK linearizable read")).await;

        // Through every node as the entry point: the read goes to the leader.
        for id in c.ids() {
            let r = retrying(|| raw_get(&c.addr(id), "t20", "lin", read_opts(Pb::Linearizable, 0, 0))).await.unwrap();
            assert_eq!(text(&r).as_deref(), Some(value.as_str()), "round {i}: linearizable via node {id}");
            assert_eq!(r.version, w.version, "round {i}: version of linearizable via node {id}");
            let what = format!("round {i}: linearizable read via node {id}");
            assert_served_by_leader(&c, group, leader, header(&r.header).2, &what).await;
        }

        // A follower asked for a strict read serves it itself and sees the write at once.
        for f in c.ids().into_iter().filter(|n| *n != leader) {
            let r = retrying(|| raw_get(&c.addr(f), "t20", "lin", read_opts(Pb::FollowerLinearizable, 0, 0)))
                .await
                .unwrap();
            let (_, applied, served_by) = header(&r.header);
            assert_eq!(text(&r).as_deref(), Some(value.as_str()), "round {i}: follower-linearizable read at node {f}");
            assert_eq!(r.version, w.version, "round {i}: follower-linearizable version at node {f}");
            assert_eq!(
                served_by, f,
                "round {i}: follower-linearizable read sent to node {f} was served by {served_by}"
            );
            assert!(applied >= w.version, "round {i}: node {f} served at applied index {applied} < {}", w.version);
        }

        let r = client.get_with("t20", b"lin", Consistency::FollowerLinearizable).await.unwrap();
        assert_eq!(r.value.as_deref(), Some(value.as_bytes()), "round {i}: SDK follower-linearizable read");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn t20_session_reads_from_every_node() {
    let c = start_default().await;
    let client = c.client().await.unwrap();

    for i in 0..10 {
        let key = format!("sess-{i}");
        let value = format!("s{i}");
        let w = client.set("t20", key.as_bytes(), value.clone()).await.unwrap();
        assert!(w.applied_index >= w.version, "write's session token {} < its version {}", w.applied_index, w.version);

        // Straight after the write, no waiting: each node serves it itself, with the write.
        for id in c.ids() {
            let r = retrying(|| raw_get(&c.addr(id), "t20", &key, read_opts(Pb::Session, w.applied_index, 0)))
                .await
                .unwrap_or_else(|e| panic!("session read of {key} at node {id}: {e}"));
            let (group, applied, served_by) = header(&r.header);
            assert_eq!(text(&r).as_deref(), Some(value.as_str()), "session read of {key} at node {id}");
            assert_eq!(r.version, w.version, "session read version of {key} at node {id}");
            assert_eq!(group, w.group);
            assert!(applied >= w.applied_index, "node {id} served {key} at {applied} < token {}", w.applied_index);
            assert_eq!(served_by, id, "a local session read at node {id} was served by {served_by}");
        }

        // The SDK's own token gives read-your-writes, too.
        let r = client.get_with("t20", key.as_bytes(), Consistency::Session { min_index: 0 }).await.unwrap();
        assert_eq!(r.value.as_deref(), Some(value.as_bytes()), "SDK session read of {key}");
        assert!(r.applied_index >= w.applied_index);
    }

    // A token no replica has reached is never answered (from older state).
    let w = client.set("t20", b"future", "f").await.unwrap();
    for id in c.ids() {
        let r = raw_get(&c.addr(id), "t20", "future", read_opts(Pb::Session, w.applied_index + 1_000_000, 0)).await;
        assert!(r.is_err(), "node {id} answered a session read for an index it cannot have applied: {r:?}");
    }
    c.check_alive().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn t20_eventual_bounded_staleness() {
    let c = start_default().await;
    let client = c.client().await.unwrap();
    let group = client.group_of("t20", b"ev").unwrap();
    let leader = c.leader_of(group).await.unwrap();
    let follower = c.ids().into_iter().find(|n| *n != leader).unwrap();
    let others: Vec<u64> = c.ids().into_iter().filter(|n| *n != follower).collect();
    client.set("t20", b"ev", "e1").await.unwrap();
    let f_addr = c.addr(follower);

    // Healthy: every replica serves an eventual read itself and soon has the value.
    for id in c.ids() {
        let addr = c.addr(id);
        eventually(Duration::from_secs(10), &format!("eventual read at node {id}"), || {
            let addr = addr.clone();
            async move {
                let r = raw_get(&addr, "t20", "ev", read_opts(Pb::Eventual, 0, 5_000)).await?;
                let served_by = header(&r.header).2;
                anyhow::ensure!(served_by == id, "served by {served_by}, not {id}");
                anyhow::ensure!(text(&r).as_deref() == Some("e1"), "value {:?}", text(&r));
                Ok(())
            }
        })
        .await
        .unwrap();
    }

    // Cut the follower off: pause the leader and the other replica.
    for n in &others {
        c.pause(*n).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let refused = raw_get(&f_addr, "t20", "ev", read_opts(Pb::Eventual, 0, 500)).await;
    // Within a looser bound the same replica may still serve its local state.
    let loose = raw_get(&f_addr, "t20", "ev", read_opts(Pb::Eventual, 0, 60_000)).await;
    for n in &others {
        c.resume(*n).unwrap();
    }
    assert_status(
        &format!("eventual read (max 500 ms) at node {follower}, cut off from the leader for 1.5 s"),
        refused,
        Code::Unavailable,
        &[],
    );
    let loose = loose.unwrap_or_else(|e| {
        panic!("eventual read (max 60 s) at node {follower}, heard from a leader 1.5 s ago, refused: {e}")
    });
    assert_eq!(text(&loose).as_deref(), Some("e1"), "local state served within the bound");
    assert_eq!(header(&loose.header).2, follower);

    // Reconnected: served again.
    c.wait_ready(Duration::from_secs(60)).await.unwrap();
    eventually(Duration::from_secs(15), "eventual read after the others resumed", || {
        let f_addr = f_addr.clone();
        async move {
            let r = raw_get(&f_addr, "t20", "ev", read_opts(Pb::Eventual, 0, 500)).await?;
            anyhow::ensure!(text(&r).as_deref() == Some("e1"), "value {:?}", text(&r));
            Ok(())
        }
    })
    .await
    .unwrap();

    // The SDK passes the bound through and gets the value.
    let r =
        client.get_with("t20", b"ev", Consistency::Eventual { max_staleness: Duration::from_secs(5) }).await.unwrap();
    assert_eq!(r.value.as_deref(), Some(&b"e1"[..]));
    c.check_alive().unwrap();
}
