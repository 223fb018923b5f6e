//! t90: reproducers of anomalies the fault suite (`jepsen/`) found, one test each.
//!
//! - Whole-cluster crash and restart (fault-suite seed 4118019530): a restarted leader resumed
//!   its old term without a new blank entry, and its read index lagged writes acknowledged
//!   before the crash, so LINEARIZABLE reads right after the restart could return older values.
//! - A follower resumed after a pause (seeds 1001, 1002): it counted the first heartbeat as
//!   freshness while still applying its backlog, so EVENTUAL reads with a staleness bound
//!   returned values older than the bound allows.
//! - A follower that missed several values near the 8 MiB limit (t60, flaky): openraft batches
//!   appends by entry count only, so every catch-up AppendEntries exceeded the 64 MiB message
//!   limit and failed; the follower never caught up and its elections stalled the group.
//! - A value that takes longer to ship than a heartbeat interval (t60, flaky on a slow machine):
//!   openraft 0.9 gives every AppendEntries 50 ms and then sends the same entries again, so an
//!   8 MiB append over a slower link never completed, and each copy queued on the peer stream
//!   delayed every group's heartbeats until they all lost their leaders.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use raftcache_proto::cache::Consistency as Pb;
use raftcache_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;

fn small_cluster() -> ClusterOptions {
    ClusterOptions { groups: 2, ..ClusterOptions::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn t90_linearizable_reads_right_after_a_whole_cluster_crash_see_every_acknowledged_write() {
    let c = start(small_cluster()).await;
    let client = c.client().await.unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();

    for round in 0..3 {
        // Several versions of every key, the last one acknowledged just before the crash.
        let mut expected = Vec::new();
        for v in 0..3 {
            let kvs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("r{round}-v{v}-{k}"))).collect();
            for (k, val, r) in set_many(&client, "t90", kvs, 16).await {
                let w = r.unwrap_or_else(|e| panic!("round {round}: set {k}: {e}"));
                if v == 2 {
                    expected.push((k, val, w.version));
                }
            }
        }
        for id in c.ids() {
            c.kill(id);
        }
        for id in c.ids() {
            c.start_node(id).unwrap();
        }
        for id in c.ids() {
            c.wait_node_up(id, Duration::from_secs(30)).await.unwrap();
        }
        // Read at once, every key concurrently, while leadership is being re-established.
        let patient = ClientOptions { timeout: Duration::from_secs(30), ..ClientOptions::default() };
        let fresh = c.client_with(patient).await.unwrap();
        assert_all_readable(&fresh, "t90", &expected, expected.len()).await;
        c.wait_ready(Duration::from_secs(30)).await.unwrap();
    }
    assert_no_panics(&c);
}

#[tokio::test(flavor = "multi_thread")]
async fn t90_eventual_reads_of_a_resumed_follower_respect_the_staleness_bound() {
    const BOUND_MS: u64 = 300;
    let c = start(small_cluster()).await;
    let client = c.client().await.unwrap();
    let group = client.group_of("t90", b"probe").unwrap();
    let keys = keys_in_group(&client, "t90", group, "ev", 200);
    let leader = c.leader_of(group).await.unwrap();
    let follower = c.ids().into_iter().find(|n| *n != leader).unwrap();
    let f_addr = c.addr(follower);

    for round in 0..3 {
        c.pause(follower).unwrap();
        // A backlog for the paused follower: every key gets a new value.
        let kvs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("r{round}-{k}"))).collect();
        let mut versions = std::collections::HashMap::new();
        for (k, _, r) in set_many(&client, "t90", kvs, 32).await {
            versions.insert(k.clone(), r.unwrap_or_else(|e| panic!("round {round}: set {k}: {e}")).version);
        }
        let acked_at = Instant::now();
        // Let the bound pass: from here on, a served read must show every write above.
        tokio::time::sleep(Duration::from_millis(BOUND_MS + 50)).await;
        c.resume(follower).unwrap();

        // Hammer the follower while it catches up; every answer it gives must be fresh enough.
        let deadline = Instant::now() + Duration::from_secs(3);
        let (mut served, mut refused) = (0, 0);
        while Instant::now() < deadline {
            let answers: Vec<_> = stream::iter(keys.iter().cloned())
                .map(|k| {
                    let addr = f_addr.clone();
                    async move { (k.clone(), raw_get(&addr, "t90", &k, read_opts(Pb::Eventual, 0, BOUND_MS)).await) }
                })
                .buffer_unordered(32)
                .collect()
                .await;
            for (k, r) in answers {
                match r {
                    Ok(r) => {
                        served += 1;
                        let want = versions[&k];
                        assert!(
                            r.version >= want,
                            "round {round}: EVENTUAL read of {k} at node {follower} (bound {BOUND_MS} ms) returned \
                             version {} but version {want} was acknowledged {} ms before the read",
                            r.version,
                            acked_at.elapsed().as_millis()
                        );
                    }
                    Err(s) if s.code() == Code::Unavailable => refused += 1,
                    Err(s) => panic!("round {round}: EVENTUAL read of {k} at node {follower}: {s}"),
                }
            }
        }
        assert!(served > 0, "round {round}: the resumed follower never served an EVENTUAL read ({refused} refused)");
    }
    assert_no_panics(&c);
}

#[tokio::test(flavor = "multi_thread")]
async fn t90_a_follower_behind_by_many_large_values_catches_up() {
    const VALUE: usize = 8 * 1024 * 1024;
    let c = start(small_cluster()).await;
    let client =
        c.client_with(ClientOptions { timeout: Duration::from_secs(60), ..ClientOptions::default() }).await.unwrap();
    let group = client.group_of("t90", b"probe").unwrap();
    let keys = keys_in_group(&client, "t90", group, "big", 10);
    let leader = c.leader_of(group).await.unwrap();
    let follower = c.ids().into_iter().find(|n| *n != leader).unwrap();

    c.pause(follower).unwrap();
    // 80 MiB of log the follower has not seen: more than one Raft message may carry.
    for (i, k) in keys.iter().enumerate() {
        client.set("t90", k.as_bytes(), vec![i as u8; VALUE]).await.unwrap_or_else(|e| panic!("set {k}: {e}"));
    }
    c.resume(follower).unwrap();
    c.wait_converged(&[group], Duration::from_secs(60)).await.unwrap();
    let r = raw_get(&c.addr(follower), "t90", &keys[9], read_opts(Pb::Eventual, 0, 60_000)).await.unwrap();
    assert_eq!(
        (r.value.len(), r.value[0], header(&r.header).2),
        (VALUE, 9, follower),
        "the caught-up follower serves the last value"
    );
    assert_no_panics(&c);
}

/// Bytes per second a throttled link carries: an 8 MiB append takes ~130 ms to cross it, longer
/// than openraft's 50 ms per append, shorter than an election timeout (150-300 ms).
const LINK_RATE: u64 = 64 * 1024 * 1024;

/// Copies `from` to `to` at no more than [`LINK_RATE`].
async fn throttled_copy(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let start = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        sent += n as u64;
        tokio::time::sleep_until(start + Duration::from_micros(sent * 1_000_000 / LINK_RATE)).await;
    }
}

/// A proxy in front of `target` that carries both directions at [`LINK_RATE`]; its address.
async fn throttled_link(target: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the link");
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(&target).await else { return };
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                let ((ir, iw), (or, ow)) = (inbound.into_split(), outbound.into_split());
                tokio::join!(throttled_copy(ir, ow), throttled_copy(or, iw));
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread")]
async fn t90_a_value_slower_to_ship_than_a_heartbeat_interval_still_replicates() {
    const VALUE: usize = 8 * 1024 * 1024;
    let c = Cluster::prepare(small_cluster()).expect("prepare the cluster");
    for from in c.ids() {
        let mut peers = Vec::new();
        for to in c.ids().into_iter().filter(|to| *to != from) {
            peers.push(format!("{to}={}", throttled_link(c.addr(to)).await));
        }
        c.set_node_args(from, vec!["--peer-addr".into(), peers.join(",")]);
    }
    c.launch().await.unwrap_or_else(|e| panic!("cluster did not start: {e:#}\n{}", c.log_tails(20)));
    let client =
        c.client_with(ClientOptions { timeout: Duration::from_secs(60), ..ClientOptions::default() }).await.unwrap();

    for i in 0..3u8 {
        client.set("t90", b"large", vec![i; VALUE]).await.unwrap_or_else(|e| panic!("set {i} of t90/large: {e}"));
    }
    // Every replica stores it: before, the followers never did, and the groups kept electing.
    c.wait_converged(&c.data_groups(), Duration::from_secs(60)).await.unwrap();
    c.wait_ready(Duration::from_secs(30)).await.unwrap();
    for id in c.ids() {
        let r = raw_get(&c.addr(id), "t90", "large", read_opts(Pb::Eventual, 0, 60_000)).await.unwrap();
        assert_eq!((r.value.len(), r.value[0]), (VALUE, 2), "node {id} serves the last value");
    }
    assert_no_panics(&c);
}
