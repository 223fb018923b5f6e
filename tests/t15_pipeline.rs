//! t15: `CacheService.Pipeline`, the stream the SDK sends every call over.
//!
//! - each call of a pipeline is answered like its unary RPC: same values, and a failure carries
//!   the unary status's code, message and `x-raftcache-*` metadata (what clients act on);
//! - a bad call (no operation, empty key) fails alone; the stream goes on serving;
//! - hundreds of calls in one message each get their own result (ids are kept apart);
//! - a message over the node's size limit ends that stream with an error, not the node.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftcache_proto::cache::pipeline_call::Op;
use raftcache_proto::cache::pipeline_result::Outcome;
use raftcache_proto::cache::{
    Consistency as Pb, DeleteRequest, GetRequest, InvalidateRequest, PipelineCall, PipelineRequest, PipelineResponse,
    SetRequest,
};
use raftcache_tests::*;
use tokio::sync::mpsc;
use tonic::{Code, Status, Streaming};

/// A pipeline opened by hand to one node.
struct RawPipe {
    tx: mpsc::Sender<PipelineRequest>,
    inbound: Streaming<PipelineResponse>,
}

impl RawPipe {
    async fn open(addr: &str) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let inbound = raw(addr)
            .pipeline(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("open a pipeline")
            .into_inner();
        Self { tx, inbound }
    }

    /// Sends `calls` in one message and returns every call's outcome by id. Calls that fail
    /// with UNAVAILABLE (an election or a missed heartbeat round on a busy machine) are sent
    /// again for up to 20 s, as the SDK would.
    async fn round(&mut self, calls: Vec<PipelineCall>) -> HashMap<u64, Outcome> {
        let mut by_id: HashMap<u64, PipelineCall> = calls.iter().map(|c| (c.id, c.clone())).collect();
        let mut got = HashMap::new();
        let give_up = Instant::now() + Duration::from_secs(20);
        let mut calls = calls;
        loop {
            let want = calls.len();
            self.tx.send(PipelineRequest { calls }).await.expect("send the calls");
            let mut answered = 0;
            let deadline = Instant::now() + RAW_TIMEOUT;
            while answered < want {
                let msg = tokio::time::timeout_at(deadline.into(), self.inbound.message())
                    .await
                    .unwrap_or_else(|_| panic!("only {answered} of {want} results within {RAW_TIMEOUT:?}"))
                    .expect("the stream stays up")
                    .expect("the stream does not end");
                for r in msg.results {
                    let outcome = r.outcome.unwrap_or_else(|| panic!("result {} carries no outcome", r.id));
                    assert!(by_id.contains_key(&r.id), "result {} answers no call in flight", r.id);
                    answered += 1;
                    got.insert(r.id, outcome);
                }
            }
            let again: Vec<PipelineCall> = got
                .iter()
                .filter(|(_, o)| matches!(o, Outcome::Failure(f) if f.code == Code::Unavailable as i32))
                .map(|(id, _)| by_id[id].clone())
                .collect();
            by_id.retain(|id, _| again.iter().any(|c| c.id == *id));
            if again.is_empty() || Instant::now() > give_up {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            calls = again;
        }
    }
}

fn call(id: u64, op: Op) -> PipelineCall {
    PipelineCall { id, timeout_ms: RAW_TIMEOUT.as_millis() as u64, op: Some(op) }
}

fn get(ns: &str, key: &str) -> Op {
    Op::Get(GetRequest {
        namespace: ns.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        read: Some(read_opts(Pb::Linearizable, 0, 0)),
    })
}

fn failure_of(what: &str, o: &Outcome) -> Status {
    match o {
        Outcome::Failure(f) => {
            let mut s = Status::new(Code::from(f.code), f.message.clone());
            for (k, v) in &f.metadata {
                s.metadata_mut().insert(
                    k.parse::<tonic::metadata::AsciiMetadataKey>().expect("ascii key"),
                    v.parse().expect("ascii value"),
                );
            }
            s
        }
        other => panic!("{what}: expected a failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn t15_pipeline_calls_answer_like_unary_calls() {
    let c = start_default().await;
    let addr = c.addr(1);
    let v = retrying(|| raw_set(&addr, set_req("t15", "a", "1"))).await.expect("unary set").version;
    // An election right after start could fail the first calls with UNAVAILABLE; by now the
    // group answered a write.
    let mut pipe = RawPipe::open(&addr).await;

    let stale_set = SetRequest { if_version: Some(v + 1000), ..set_req("t15", "a", "2") };
    let unary_refusal = raw_set(&addr, stale_set.clone()).await.expect_err("a stale conditional set is refused");
    let got = pipe
        .round(vec![
            call(1, get("t15", "a")),
            call(2, Op::Set(stale_set)),
            PipelineCall { id: 3, timeout_ms: 1000, op: None },
            call(4, Op::Set(set_req("t15", "", "v"))),
            call(5, Op::Invalidate(InvalidateRequest { namespace: "t15".into(), key: "b".into(), id: None })),
        ])
        .await;
    match &got[&1] {
        Outcome::Get(r) => {
            assert!(r.found, "get of t15/a found nothing");
            assert_eq!((&r.value[..], r.version), (&b"1"[..], v), "get of t15/a");
        }
        other => panic!("get of t15/a: {other:?}"),
    }
    let piped_refusal = failure_of("stale conditional set", &got[&2]);
    assert_eq!(piped_refusal.code(), unary_refusal.code(), "stale set: code");
    assert_eq!(piped_refusal.message(), unary_refusal.message(), "stale set: message");
    for key in ["x-raftcache-error", "x-raftcache-version"] {
        assert!(unary_refusal.metadata().get(key).is_some(), "the unary refusal carries {key}");
        assert_eq!(piped_refusal.metadata().get(key), unary_refusal.metadata().get(key), "stale set: metadata {key}");
    }
    assert_status(
        "a call with no operation",
        Err::<(), _>(failure_of("no op", &got[&3])),
        Code::InvalidArgument,
        &["operation"],
    );
    assert_status(
        "a set with an empty key",
        Err::<(), _>(failure_of("empty key", &got[&4])),
        Code::InvalidArgument,
        &["key"],
    );
    let fence = match &got[&5] {
        Outcome::Invalidate(r) => r.fence,
        other => panic!("invalidate t15/b: {other:?}"),
    };
    assert!(fence > 0, "invalidate of t15/b returned no fence");

    // The same stream, after those failures: 300 writes in one message, then 300 reads and a
    // delete in the next; every call gets its own result.
    let n = 300u64;
    let writes = (0..n).map(|i| call(100 + i, Op::Set(set_req("t15", &format!("k{i}"), format!("v{i}"))))).collect();
    let written = pipe.round(writes).await;
    for i in 0..n {
        assert!(matches!(written[&(100 + i)], Outcome::Set(_)), "set of k{i}: {:?}", written[&(100 + i)]);
    }
    let mut reads: Vec<_> = (0..n).map(|i| call(1000 + i, get("t15", &format!("k{i}")))).collect();
    reads.push(call(
        9,
        Op::Delete(DeleteRequest { namespace: "t15".into(), key: "a".into(), if_version: None, id: None }),
    ));
    let read = pipe.round(reads).await;
    for i in 0..n {
        match &read[&(1000 + i)] {
            Outcome::Get(r) => assert_eq!(&r.value[..], format!("v{i}").as_bytes(), "read of k{i}"),
            other => panic!("read of k{i}: {other:?}"),
        }
    }
    assert!(matches!(&read[&9], Outcome::Delete(d) if d.existed), "delete of t15/a: {:?}", read[&9]);
    assert_no_panics(&c);
}

#[tokio::test(flavor = "multi_thread")]
async fn t15_an_oversized_pipeline_message_ends_only_its_stream() {
    let c = start_default().await;
    let addr = c.addr(2);
    let mut pipe = RawPipe::open(&addr).await;
    // Each value is under the 8 MiB limit; together they are over the message limit.
    let big = Bytes::from(vec![b'x'; 5 * 1024 * 1024]);
    let calls = (0..2).map(|i| call(i, Op::Set(set_req("t15", &format!("big{i}"), big.clone())))).collect();
    pipe.tx.send(PipelineRequest { calls }).await.expect("send");
    let end = tokio::time::timeout(RAW_TIMEOUT, pipe.inbound.message()).await.expect("the node answers");
    match end {
        Err(s) => assert!(
            s.message().to_lowercase().contains("message"),
            "the stream ends with a status naming the message: {s:?}"
        ),
        Ok(other) => panic!("an oversized message must end the stream with an error, got {other:?}"),
    }
    // The node still serves, over a new pipeline.
    let mut again = RawPipe::open(&addr).await;
    let got = again.round(vec![call(1, Op::Set(set_req("t15", "after", "ok")))]).await;
    assert!(matches!(got[&1], Outcome::Set(_)), "set after the oversized message: {:?}", got[&1]);
    c.wait_converged(&c.data_groups(), Duration::from_secs(30)).await.expect("replicas agree");
    assert_no_panics(&c);
}

/// The version and group of an acknowledged set.
fn set_outcome(what: &str, o: &Outcome) -> (u64, u64) {
    match o {
        Outcome::Set(r) => (r.version, r.header.as_ref().map_or(0, |h| h.group)),
        other => panic!("{what}: {other:?}"),
    }
}

/// Writes that reach a leader together go into one log entry (see `crates/raft/src/proposer.rs`):
/// writes of different keys may share a version, writes of one key never do, and a retried
/// batch is answered from each write's own de-duplication record.
#[tokio::test(flavor = "multi_thread")]
async fn t15_concurrent_writes_share_entries_but_a_key_never_repeats_a_version() {
    let c = start_default().await;
    let addr = c.addr(1);
    retrying(|| raw_set(&addr, set_req("t15b", "warm", "up"))).await.expect("unary set");
    let mut pipe = RawPipe::open(&addr).await;

    // 300 writes of distinct keys with ids, in one message, then the same message again.
    let n = 300u64;
    let client_id = 0x7157_0001;
    let writes: Vec<_> = (0..n)
        .map(|i| call(i, Op::Set(set_req_with_id("t15b", &format!("k{i}"), format!("v{i}"), client_id, i + 1))))
        .collect();
    let first = pipe.round(writes.clone()).await;
    let versions: Vec<(u64, u64)> = (0..n).map(|i| set_outcome(&format!("set of k{i}"), &first[&i])).collect();
    let distinct: std::collections::HashSet<_> = versions.iter().collect();
    assert!(
        distinct.len() < n as usize,
        "{n} concurrent writes got {} distinct (group, version) pairs: none were proposed together",
        distinct.len()
    );
    let again = pipe.round(writes).await;
    for i in 0..n {
        assert_eq!(
            set_outcome(&format!("retry of k{i}"), &again[&i]),
            versions[i as usize],
            "the retry of k{i} was applied again instead of answered from its record"
        );
    }

    // 40 writes of one key in one message: each gets a version of its own, and the key ends
    // with the value of the highest.
    let m = 40u64;
    let same: Vec<_> = (0..m).map(|i| call(1000 + i, Op::Set(set_req("t15b", "same", format!("s{i}"))))).collect();
    let got = pipe.round(same).await;
    let mut seen = std::collections::HashMap::new();
    for i in 0..m {
        let (version, _) = set_outcome(&format!("set {i} of t15b/same"), &got[&(1000 + i)]);
        if let Some(other) = seen.insert(version, i) {
            panic!("writes {other} and {i} of t15b/same both got version {version}");
        }
    }
    let (&top, &winner) = seen.iter().max().expect("forty versions");
    let read = pipe.round(vec![call(2000, get("t15b", "same"))]).await;
    match &read[&2000] {
        Outcome::Get(r) => {
            assert_eq!((&r.value[..], r.version), (format!("s{winner}").as_bytes(), top), "read of t15b/same")
        }
        other => panic!("read of t15b/same: {other:?}"),
    }
    c.wait_converged(&c.data_groups(), Duration::from_secs(30)).await.expect("replicas agree");
    assert_no_panics(&c);
}
