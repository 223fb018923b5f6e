//! t60: bad input gets a clear error naming the problem and never hurts a node.
//!
//! - oversized key and value, empty key, bad namespace, bad TTL, unknown consistency level:
//!   INVALID_ARGUMENT whose message names the field, through raw gRPC (to leaders and to
//!   forwarding nodes), through the SDK, and through `raftcache ctl` (exit code 2);
//! - a value of exactly the limit (8 MiB) is accepted and read back;
//! - a message larger than any limit is refused with an error, not a crash;
//! - clients that disconnect mid-request — a dropped 8 MiB Set, raw HTTP/2 connections that stop
//!   in the middle of a frame, lie about a gRPC message length, send a frame larger than the
//!   negotiated maximum, or send garbage — leave every node up, serving, and in agreement.

use std::time::Duration;

use bytes::Bytes;
use raftcache_proto::cache::{Consistency as Pb, GetRequest, ReadOptions};
use raftcache_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

const MIB: usize = 1024 * 1024;
const MAX_VALUE: usize = 8 * MIB;
const ONE_YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

async fn raw_get_bytes(addr: &str, ns: &str, key: Bytes, read: ReadOptions) -> Result<(), tonic::Status> {
    let mut req = tonic::Request::new(GetRequest { namespace: ns.into(), key, read: Some(read) });
    req.set_timeout(RAW_TIMEOUT);
    raw(addr).get(req).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn t60_invalid_requests_are_refused_by_name() {
    let c = start_default().await;
    let lin = read_opts(Pb::Linearizable, 0, 0);

    for id in c.ids() {
        let addr = c.addr(id);
        let at = |what: &str| format!("{what} (via node {id})");

        // Keys.
        let long_key = "k".repeat(4097);
        assert_status(
            &at("set with a 4097-byte key"),
            raw_set(&addr, set_req("t60", &long_key, "v")).await,
            Code::InvalidArgument,
            &["key", "4096"],
        );
        assert_status(
            &at("get with a 4097-byte key"),
            raw_get(&addr, "t60", &long_key, lin).await,
            Code::InvalidArgument,
            &["key", "4096"],
        );
        assert_status(
            &at("set with an empty key"),
            raw_set(&addr, set_req("t60", "", "v")).await,
            Code::InvalidArgument,
            &["key"],
        );
        assert_status(
            &at("get with an empty key"),
            raw_get_bytes(&addr, "t60", Bytes::new(), lin).await,
            Code::InvalidArgument,
            &["key"],
        );

        // Namespaces.
        for ns in ["", "has space", "a/b", "ünï", &"n".repeat(129)] {
            assert_status(
                &at(&format!("set in namespace {ns:?}")),
                raw_set(&addr, set_req(ns, "k", "v")).await,
                Code::InvalidArgument,
                &["namespace"],
            );
            assert_status(
                &at(&format!("get in namespace {ns:?}")),
                raw_get(&addr, ns, "k", lin).await,
                Code::InvalidArgument,
                &["namespace"],
            );
        }

        // Values.
        let too_big = set_req("t60", "big", vec![b'x'; MAX_VALUE + 1]);
        assert_status(
            &at("set of an 8 MiB + 1 value"),
            raw_set(&addr, too_big).await,
            Code::InvalidArgument,
            &["value", "limit"],
        );

        // TTLs.
        for ttl_ms in [ONE_YEAR_MS + 1, u64::MAX] {
            let req = raftcache_proto::cache::SetRequest { ttl_ms, ..set_req("t60", "ttl", "v") };
            assert_status(
                &at(&format!("set with ttl_ms {ttl_ms}")),
                raw_set(&addr, req).await,
                Code::InvalidArgument,
                &["ttl"],
            );
        }

        // Consistency levels.
        for level in [4, 42, -1] {
            let read = ReadOptions { consistency: level, min_index: 0, max_staleness_ms: 0 };
            assert_status(
                &at(&format!("get with consistency {level}")),
                raw_get(&addr, "t60", "k", read).await,
                Code::InvalidArgument,
                &["consistency"],
            );
        }
    }

    // Extreme but valid-typed read options do not hurt: refused or served, the node stays up.
    let addr = c.addr(1);
    let _ = raw_get(&addr, "t60", "k", read_opts(Pb::Session, u64::MAX, 0)).await;
    let _ = raw_get(&addr, "t60", "k", read_opts(Pb::Eventual, 0, u64::MAX)).await;

    // Nothing invalid was stored.
    let client = c.client().await.unwrap();
    for k in ["big", "ttl"] {
        assert_eq!(client.get("t60", k.as_bytes()).await.unwrap().value, None, "{k} was stored");
    }

    // The SDK reports the same problems.
    match client.set("bad ns", b"k", "v").await {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("namespace"), "{m}"),
        other => panic!("SDK set in a bad namespace: {other:?}"),
    }
    match client.set("t60", &[b'k'; 4097], "v").await {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("key"), "{m}"),
        other => panic!("SDK set with a 4097-byte key: {other:?}"),
    }
    match client.set("t60", b"big", vec![b'x'; MAX_VALUE + 1]).await {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("value"), "{m}"),
        other => panic!("SDK set of an 8 MiB + 1 value: {other:?}"),
    }
    let year_and_a_day =
        SetOptions { ttl: Some(Duration::from_millis(ONE_YEAR_MS + 86_400_000)), condition: Condition::None };
    match client.set_with("t60", b"ttl", "v", year_and_a_day).await {
        Err(Error::InvalidArgument(m)) => assert!(m.to_lowercase().contains("ttl"), "{m}"),
        other => panic!("SDK set with a TTL over a year: {other:?}"),
    }

    // The CLI: exit 2 for usage and invalid arguments, naming the problem.
    let long_key = "k".repeat(4097);
    let cases: Vec<(Vec<&str>, Option<&str>)> = vec![
        (vec!["set", "bad ns!", "k", "v"], Some("namespace")),
        (vec!["get", "t60", &long_key], Some("key")),
        (vec!["set", "t60", "k", "v", "--ttl", "100000000s"], Some("ttl")),
        (vec!["set", "t60", "k", "v", "--ttl", "soon"], Some("ttl")),
        (vec!["get", "t60", "k", "--consistency", "bogus"], Some("consistency")),
        (vec!["set", "t60", "k", "v", "--if-absent", "--if-version", "3"], None),
        (vec!["set", "t60", "k"], None),
        (vec!["frobnicate"], None),
        (vec![], None),
    ];
    for (args, word) in cases {
        let out = c.ctl(&args).await.unwrap();
        assert_eq!(out.code, 2, "ctl {args:?} should be a usage/invalid-argument error: {out}");
        if let Some(w) = word {
            assert!(out.says(w), "ctl {args:?} should name {w:?}: {out}");
        }
    }
    // Exit 3 when no node can be reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let out = c.ctl_at(&closed, &["get", "t60", "k"]).await.unwrap();
    assert_eq!(out.code, 3, "ctl against a closed port should report unavailable: {out}");

    c.check_alive().unwrap();
    assert_no_panics(&c);
    c.wait_ready(Duration::from_secs(30)).await.unwrap();
}

/// HTTP/2 frame: 24-bit length, type, flags, stream id.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    frame_claiming(payload.len(), kind, flags, stream, payload)
}

/// A frame whose header claims `len` bytes, followed by `payload` (possibly shorter).
fn frame_claiming(len: usize, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const SETTINGS: u8 = 4;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// The connection preface, an empty SETTINGS frame, and the HEADERS of a gRPC Set on stream 1,
/// HPACK-encoded as literals (no Huffman, no table) so no HPACK library is needed.
fn grpc_set_headers() -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/raftcache.v1.CacheService/Set"),
        (":authority", "127.0.0.1"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0x00); // literal header field without indexing, new name
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    out.extend(frame(HEADERS, END_HEADERS, 1, &block));
    out
}

/// A gRPC message prefix claiming `len` bytes, followed by `body`.
fn grpc_message(len: u32, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0u8];
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Sends `bytes` on a fresh connection to `addr`, reads whatever comes back for `linger`, and
/// hangs up.
async fn send_and_hang_up(addr: &str, bytes: &[u8], linger: Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    // The node may close the connection before reading everything; that is fine.
    let _ = s.write_all(bytes).await;
    let mut buf = vec![0u8; 64 * 1024];
    let _ = tokio::time::timeout(linger, async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn t60_disconnects_and_oversized_frames_never_crash_a_node() {
    let c = start_default().await;
    let client = c.client().await.unwrap();
    let lin = read_opts(Pb::Linearizable, 0, 0);

    // A value of exactly the limit is fine, end to end.
    let exact = vec![b'e'; MAX_VALUE];
    let w = retrying(|| raw_set(&c.addr(1), set_req("t60", "exact", exact.clone())))
        .await
        .expect("a value of exactly 8 MiB");
    let r = retrying(|| raw_get(&c.addr(2), "t60", "exact", lin)).await.unwrap();
    assert_eq!((r.value.len(), r.version), (MAX_VALUE, w.version), "the 8 MiB value read back");

    for id in c.ids() {
        let addr = c.addr(id);

        // Messages far over any limit: refused with an error that says so.
        for size in [24 * MIB, 72 * MIB] {
            let r = raw_set(&addr, set_req("t60", "huge", vec![b'h'; size])).await;
            match r {
                Ok(v) => panic!("node {id} accepted a {size}-byte value: {v:?}"),
                Err(s) => {
                    assert!(
                        matches!(s.code(), Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted),
                        "node {id}, {size}-byte message: unexpected {:?}: {}",
                        s.code(),
                        s.message()
                    );
                    let m = s.message().to_lowercase();
                    assert!(
                        m.contains("limit") || m.contains("large"),
                        "node {id}: message does not name the problem: {m}"
                    );
                }
            }
        }

        // Clients that give up mid-request on an 8 MiB set.
        for delay_ms in [1, 5, 20, 50, 150] {
            let mut giving_up = raw(&addr);
            let fut = giving_up.set(set_req("t60", &format!("dropped-{delay_ms}"), vec![b'd'; MAX_VALUE]));
            let _ = tokio::time::timeout(Duration::from_millis(delay_ms), fut).await;
        }

        // Raw connections that misbehave and hang up.
        let head = grpc_set_headers();
        let partial_data = [head.clone(), frame_claiming(16_384, DATA, 0, 1, &[0u8; 100])].concat();
        let lying_prefix = [head.clone(), frame(DATA, 0, 1, &grpc_message(0xFFFF_FFF0, b"0123456789"))].concat();
        let lying_prefix_ended =
            [head.clone(), frame(DATA, END_STREAM, 1, &grpc_message(0xFFFF_FFF0, b"0123456789"))].concat();
        let truncated_message = [head.clone(), frame(DATA, END_STREAM, 1, &grpc_message(1000, &[0xFFu8; 10]))].concat();
        let garbage_message = [head.clone(), frame(DATA, END_STREAM, 1, &grpc_message(64, &[0xFFu8; 64]))].concat();
        let oversized_frame = [head.clone(), frame_claiming(0xFF_FFFF, DATA, 0, 1, &[0u8; 4096])].concat();
        let oversized_headers = {
            let mut v = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
            v.extend(frame(SETTINGS, 0, 0, &[]));
            v.extend(frame_claiming(0xFF_FFFF, HEADERS, END_HEADERS, 1, &[0u8; 4096]));
            v
        };
        let preface_then_half_header = [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], &[0, 0, 4]].concat();
        let not_http2: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for (what, bytes, linger) in [
            ("a DATA frame cut short", partial_data, 100),
            ("a gRPC prefix claiming 4 GiB", lying_prefix, 300),
            ("a gRPC prefix claiming 4 GiB, stream ended", lying_prefix_ended, 1000),
            ("a truncated gRPC message", truncated_message, 1000),
            ("a gRPC message that is not protobuf", garbage_message, 1000),
            ("a 16 MiB DATA frame header", oversized_frame, 300),
            ("a 16 MiB HEADERS frame header", oversized_headers, 300),
            ("half a frame header", preface_then_half_header, 100),
            ("bytes that are not HTTP/2", not_http2, 300),
        ] {
            send_and_hang_up(&addr, &bytes, Duration::from_millis(linger)).await;
            if let Err(e) = c.check_alive() {
                panic!("node {id} died after {what}: {e:#}");
            }
        }

        // Still serving, as an entry point and for its own reads.
        let key = format!("after-{id}");
        let w = retrying(|| raw_set(&addr, set_req("t60", &key, "ok")))
            .await
            .unwrap_or_else(|e| panic!("node {id} after abuse: {e}"));
        let r = retrying(|| raw_get(&addr, "t60", &key, read_opts(Pb::Session, header(&w.header).1, 0))).await.unwrap();
        assert_eq!(text(&r).as_deref(), Some("ok"), "node {id} after abuse");
    }

    c.check_alive().unwrap();
    assert_no_panics(&c);
    c.wait_ready(Duration::from_secs(30)).await.unwrap();
    // Whatever the dropped sets did, the replicas agree on it.
    c.wait_converged(&c.groups(), Duration::from_secs(60)).await.unwrap();
    let r = client.get("t60", b"exact").await.unwrap();
    assert_eq!(r.value.map(|v| v.len()), Some(MAX_VALUE));
}
