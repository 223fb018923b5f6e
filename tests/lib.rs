//! Shared helpers of the integration tests (`t10_basic.rs` …): starting clusters, raw gRPC
//! requests to one chosen node (the SDK routes for itself; these tests often must not), bulk
//! writes, and polling.
//!
//! Every test starts its own cluster of real `raftcache` processes through
//! [`raftcache_testkit`]; build the binary first (`cargo build -p raftcache-server --bin
//! raftcache`, which `scripts/test.sh` does).

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use raftcache_proto::cache::cache_service_client::CacheServiceClient;
use raftcache_proto::cache::{Consistency as PbConsistency, GetRequest, GetResponse, ReadOptions, SetRequest, WriteId};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

pub use raftcache_client::{Client, ClientOptions, Condition, Consistency, Error, GetResult, SetOptions, WriteResult};
pub use raftcache_testkit::{Cluster, ClusterOptions, CtlOutput, Durability, GroupStatus, StatusResponse};

/// Deadline of one raw request.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a cluster, panicking with the kit's explanation (log tails included) if it fails.
pub async fn start(opts: ClusterOptions) -> Cluster {
    match Cluster::start(opts).await {
        Ok(c) => c,
        Err(e) => panic!("cluster did not start: {e:#}"),
    }
}

/// Starts the default cluster: 3 nodes, 16 data groups, 3 replicas.
pub async fn start_default() -> Cluster {
    start(ClusterOptions::default()).await
}

/// A raw gRPC client of exactly the node at `addr` (no routing, no retries), accepting and
/// sending messages of any size.
pub fn raw(addr: &str) -> CacheServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid address")
        .connect_timeout(Duration::from_secs(10))
        .connect_lazy();
    CacheServiceClient::new(channel).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX)
}

/// Read options for a raw get. A node that replicates the key's group serves every level but
/// LINEARIZABLE itself; LINEARIZABLE goes to the leader.
pub fn read_opts(level: PbConsistency, min_index: u64, max_staleness_ms: u64) -> ReadOptions {
    ReadOptions { consistency: level as i32, min_index, max_staleness_ms }
}

/// A raw get sent to the node at `addr`. (The future owns copies of its arguments.)
pub fn raw_get(
    addr: &str,
    ns: &str,
    key: &str,
    read: ReadOptions,
) -> impl Future<Output = Result<GetResponse, Status>> + Send + 'static {
    let mut client = raw(addr);
    let mut req = tonic::Request::new(GetRequest {
        namespace: ns.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        read: Some(read),
    });
    req.set_timeout(RAW_TIMEOUT);
    async move { with_deadline(client.get(req)).await.map(|r| r.into_inner()) }
}

/// A plain set request (no TTL, no condition, no write id).
pub fn set_req(ns: &str, key: &str, value: impl Into<Bytes>) -> SetRequest {
    SetRequest {
        namespace: ns.into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: value.into(),
        ttl_ms: 0,
        if_absent: false,
        if_version: None,
        id: None,
    }
}

/// `set_req` carrying the write id `(client_id, seq)`.
pub fn set_req_with_id(ns: &str, key: &str, value: impl Into<Bytes>, client_id: u64, seq: u64) -> SetRequest {
    SetRequest { id: Some(WriteId { client_id, seq }), ..set_req(ns, key, value) }
}

/// A raw set sent to the node at `addr`. (The future owns copies of its arguments.)
pub fn raw_set(
    addr: &str,
    req: SetRequest,
) -> impl Future<Output = Result<raftcache_proto::cache::SetResponse, Status>> + Send + 'static {
    let mut client = raw(addr);
    let mut req = tonic::Request::new(req);
    req.set_timeout(RAW_TIMEOUT);
    async move { with_deadline(client.set(req)).await.map(|r| r.into_inner()) }
}

/// Bounds a raw call on the client side too, in case the server ignores `grpc-timeout`.
async fn with_deadline<T>(fut: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    match tokio::time::timeout(RAW_TIMEOUT + Duration::from_secs(5), fut).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded("no answer (client-side deadline)")),
    }
}

/// Runs a raw call again while it fails with UNAVAILABLE (no leader yet, an election in flight),
/// for up to 20 s: raw calls have no retries of their own, and a busy machine sees elections.
pub async fn retrying<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call().await {
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r,
        }
    }
}

/// Asserts that `served_by` led `group` around the time of a read: it is the leader known before
/// the read (`before`) or the one that leads now. Leadership may move on a busy machine; what
/// must never happen is a linearizable read served by a node that was not leading.
pub async fn assert_served_by_leader(c: &Cluster, group: u64, before: u64, served_by: u64, what: &str) {
    if served_by == before {
        return;
    }
    let now = c.leader_of(group).await.unwrap();
    assert_eq!(
        served_by, now,
        "{what}: served by node {served_by}, but group {group} was led by {before} and now by {now}"
    );
}

/// The value of a raw get as text (`None` when not found).
pub fn text(r: &GetResponse) -> Option<String> {
    r.found.then(|| String::from_utf8_lossy(&r.value).into_owned())
}

/// The `(group, applied_index, served_by)` of a response header.
pub fn header(h: &Option<raftcache_proto::cache::ResponseHeader>) -> (u64, u64, u64) {
    let h = h.unwrap_or_default();
    (h.group, h.applied_index, h.served_by)
}

/// Asserts `status` is `code` and its message mentions every one of `words` (case-insensitive).
pub fn assert_status(what: &str, r: Result<impl std::fmt::Debug, Status>, code: Code, words: &[&str]) {
    match r {
        Ok(v) => panic!("{what}: expected {code:?}, got success {v:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: wrong code; message {:?}", s.message());
            let msg = s.message().to_lowercase();
            for w in words {
                assert!(msg.contains(&w.to_lowercase()), "{what}: message {:?} does not mention {w:?}", s.message());
            }
        }
    }
}

/// `n` keys named `{prefix}{i}` that the ring puts into `group`.
pub fn keys_in_group(client: &Client, ns: &str, group: u64, prefix: &str, n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0.. {
        let k = format!("{prefix}{i}");
        if client.group_of(ns, k.as_bytes()).expect("valid key") == group {
            out.push(k);
            if out.len() == n {
                break;
            }
        }
        assert!(i < 1_000_000, "no keys for group {group}");
    }
    out
}

/// Sets every `(key, value)` through one client with up to `concurrency` requests in flight
/// (so one `client_id` has many writes in flight at once); returns each key's result in input
/// order.
pub async fn set_many(
    client: &Client,
    ns: &str,
    kvs: Vec<(String, String)>,
    concurrency: usize,
) -> Vec<(String, String, Result<WriteResult, Error>)> {
    stream::iter(kvs)
        .map(|(k, v)| {
            let client = client.clone();
            let ns = ns.to_owned();
            async move {
                let r = client.set(&ns, k.as_bytes(), v.clone()).await;
                (k, v, r)
            }
        })
        .buffered(concurrency)
        .collect()
        .await
}

/// Sets every `(key, value)` through `writers` independent clients (own `client_id` each), each
/// writing one key at a time, as separate application processes would; panics on the first
/// failure and returns the results in input order.
pub async fn write_all(c: &Cluster, ns: &str, kvs: Vec<(String, String)>, writers: usize) -> Vec<WriteResult> {
    let mut clients = Vec::with_capacity(writers);
    // A generous deadline: bulk loads on a busy 2-core machine may wait seconds for a commit,
    // and these tests are about what is stored, not how fast.
    let options = ClientOptions { timeout: Duration::from_secs(30), ..ClientOptions::default() };
    for _ in 0..writers {
        clients.push(c.client_with(options.clone()).await.expect("client connects"));
    }
    let n = kvs.len();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, client)| {
            let mine: Vec<(usize, String, String)> = kvs
                .iter()
                .enumerate()
                .filter(|(i, _)| i % writers == w)
                .map(|(i, (k, v))| (i, k.clone(), v.clone()))
                .collect();
            let ns = ns.to_owned();
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(mine.len());
                for (i, k, v) in mine {
                    match client.set(&ns, k.as_bytes(), v).await {
                        Ok(r) => out.push((i, r)),
                        Err(e) => return Err(format!("set {ns}/{k} failed: {e}")),
                    }
                }
                Ok(out)
            })
        })
        .collect();
    let mut results: Vec<Option<WriteResult>> = vec![None; n];
    let mut first_error = None;
    for t in tasks {
        match t.await.expect("writer task") {
            Ok(done) => done.into_iter().for_each(|(i, r)| results[i] = Some(r)),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        // Say whether a node is gone, which explains connection errors.
        let alive = match c.check_alive() {
            Ok(()) => "every node is still running".to_owned(),
            Err(dead) => format!("{dead:#}"),
        };
        panic!("{e}\n({alive})");
    }
    results.into_iter().map(|r| r.expect("every key written")).collect()
}

/// Reads every key linearizably (up to `concurrency` at once) and checks value and version.
pub async fn assert_all_readable(client: &Client, ns: &str, expected: &[(String, String, u64)], concurrency: usize) {
    let failures: Vec<String> = stream::iter(expected.iter().cloned())
        .map(|(k, v, version)| {
            let client = client.clone();
            let ns = ns.to_owned();
            async move {
                match client.get(&ns, k.as_bytes()).await {
                    Ok(r) if r.value.as_deref() == Some(v.as_bytes()) && r.version == version => None,
                    Ok(r) => Some(format!(
                        "{k}: expected {v:?}@{version}, got {:?}@{} (group {}, served by {})",
                        r.value.map(|b| String::from_utf8_lossy(&b).into_owned()),
                        r.version,
                        r.group,
                        r.served_by
                    )),
                    Err(e) => Some(format!("{k}: read failed: {e}")),
                }
            }
        })
        .buffer_unordered(concurrency)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {} acknowledged writes are not readable as written; first ones:\n{}",
        failures.len(),
        expected.len(),
        failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Polls `check` every 100 ms until it returns `Ok`, or fails with its last error after
/// `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let err = match check().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            bail!("{what}: still failing after {timeout:?}: {err:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fails if any node's log shows a panic (a node may survive a panicking task, but a panic is
/// still a bug).
pub fn assert_no_panics(cluster: &Cluster) {
    for id in cluster.ids() {
        let log = cluster.log(id);
        if let Some(pos) = log.find("panicked") {
            let start = log[..pos].rfind('\n').map_or(0, |p| p + 1);
            let excerpt: String = log[start..].lines().take(15).collect::<Vec<_>>().join("\n");
            panic!("node {id} logged a panic ({}):\n{excerpt}", cluster.log_path(id).display());
        }
    }
}
