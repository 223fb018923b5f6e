use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftcache_core::{CacheKey, GroupId, NodeId};
use raftcache_proto::admin::admin_service_client::AdminServiceClient;
use raftcache_proto::admin::{StatusRequest, StatusResponse, TransferLeaderRequest, TriggerSnapshotRequest};
use raftcache_proto::cache::cache_service_client::CacheServiceClient;
use raftcache_proto::cache::pipeline_call::Op;
use raftcache_proto::cache::pipeline_result::Outcome;
use raftcache_proto::cache::{
    self as pb, DeleteRequest, GetRequest, InvalidateRequest, ReadOptions, SetRequest, TopologyRequest, WriteId,
};
use rand::Rng;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::error::{Error, Result};
use crate::options::{ClientOptions, Condition, Consistency, GetResult, SetOptions, WriteResult};
use crate::pipe::Pipe;
use crate::topology::TopologyView;

/// A node answered a call with the outcome of another kind of call.
fn mismatched(call: &str, got: &Outcome) -> Status {
    let got = match got {
        Outcome::Get(_) => "get",
        Outcome::Set(_) => "set",
        Outcome::Delete(_) => "delete",
        Outcome::Invalidate(_) => "invalidate",
        Outcome::Failure(_) => "failure",
    };
    Status::internal(format!("the node answered a {call} call with the result of a {got}"))
}

/// Largest message the client sends or accepts (values are at most 8 MiB by default).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A handle to a raftcache cluster. Cheap to clone; clones share connections, topology and the
/// session tokens, and have the same `client_id`.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    options: ClientOptions,
    client_id: u64,
    seq: AtomicU64,
    topology: RwLock<Option<TopologyView>>,
    channels: Mutex<HashMap<String, Channel>>,
    /// Node address → the pipeline every data call to it goes through.
    pipes: Mutex<HashMap<String, Pipe>>,
    /// Group → highest index this client has seen (its session token).
    sessions: Mutex<HashMap<GroupId, u64>>,
}

/// Where one attempt goes.
enum Target {
    Leader,
    Replica,
}

impl Client {
    /// Connects to a cluster through any of `endpoints` (`host:port`) with default options.
    pub async fn connect<I, S>(endpoints: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::connect_with(endpoints, ClientOptions::default()).await
    }

    /// Connects with `options`. Fails if no endpoint answers within the timeout.
    pub async fn connect_with<I, S>(endpoints: I, options: ClientOptions) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let endpoints: Vec<String> = endpoints.into_iter().map(Into::into).collect();
        if endpoints.is_empty() {
            return Err(Error::Config("no endpoints given".into()));
        }
        for e in &endpoints {
            Endpoint::from_shared(format!("http://{e}"))
                .map_err(|err| Error::Config(format!("endpoint {e:?} is not a valid host:port: {err}")))?;
        }
        let client = Self {
            inner: Arc::new(Inner {
                endpoints,
                options,
                client_id: rand::thread_rng().gen_range(1..u64::MAX),
                seq: AtomicU64::new(0),
                topology: RwLock::new(None),
                channels: Mutex::new(HashMap::new()),
                pipes: Mutex::new(HashMap::new()),
                sessions: Mutex::new(HashMap::new()),
            }),
        };
        client.refresh_topology().await?;
        Ok(client)
    }

    /// This client's id, carried by its writes.
    pub fn client_id(&self) -> u64 {
        self.inner.client_id
    }

    /// The topology as last fetched.
    pub fn topology(&self) -> Option<TopologyView> {
        self.inner.topology.read().expect("topology lock poisoned").clone()
    }

    /// `f` applied to the current topology, without copying it (the hash ring alone has
    /// thousands of points; every call routes through here).
    fn with_view<R>(&self, f: impl FnOnce(&TopologyView) -> R) -> Option<R> {
        self.inner.topology.read().expect("topology lock poisoned").as_ref().map(f)
    }

    /// The group that owns `ns/key` (validates the key).
    pub fn group_of(&self, ns: &str, key: &[u8]) -> Result<GroupId> {
        let key = Self::key(ns, key)?;
        self.with_view(|t| t.group_for(&key)).ok_or_else(|| Error::Unavailable("no topology".into()))
    }

    /// The session token of `group`: the highest index this client wrote or read there.
    pub fn session_token(&self, group: GroupId) -> u64 {
        self.inner.sessions.lock().expect("session lock poisoned").get(&group).copied().unwrap_or(0)
    }

    /// Fetches the topology from the first endpoint (or known node) that answers.
    pub async fn refresh_topology(&self) -> Result<TopologyView> {
        let mut addrs: Vec<String> = self.inner.endpoints.clone();
        if let Some(t) = self.topology() {
            addrs.extend(t.topology.nodes.values().cloned());
        }
        addrs.dedup();
        let mut last = Error::Unavailable("no endpoint answered".into());
        for addr in addrs {
            let mut c = CacheServiceClient::new(self.channel(&addr)?);
            let mut req = tonic::Request::new(TopologyRequest {});
            req.set_timeout(self.inner.options.timeout.min(Duration::from_secs(2)));
            match c.topology(req).await {
                Ok(r) => {
                    let view = TopologyView::from_proto(r.into_inner());
                    *self.inner.topology.write().expect("topology lock poisoned") = Some(view.clone());
                    return Ok(view);
                }
                Err(s) => last = Error::Unavailable(format!("{addr}: {}", s.message())),
            }
        }
        Err(last)
    }

    fn channel(&self, addr: &str) -> Result<Channel> {
        let mut ch = self.inner.channels.lock().expect("channel map lock poisoned");
        if let Some(c) = ch.get(addr) {
            return Ok(c.clone());
        }
        let c = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::Config(format!("address {addr:?}: {e}")))?
            .tcp_nodelay(true)
            .connect_timeout(self.inner.options.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .connect_lazy();
        ch.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// The pipeline to `addr`, opened again if its stream ended.
    fn pipe(&self, addr: &str) -> Result<Pipe> {
        let mut pipes = self.inner.pipes.lock().expect("pipe map lock poisoned");
        if let Some(p) = pipes.get(addr).filter(|p| !p.is_closed()) {
            return Ok(p.clone());
        }
        let p = Pipe::open(self.cache_client(addr)?, addr);
        pipes.insert(addr.to_owned(), p.clone());
        Ok(p)
    }

    fn cache_client(&self, addr: &str) -> Result<CacheServiceClient<Channel>> {
        Ok(CacheServiceClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    fn key(ns: &str, key: &[u8]) -> Result<CacheKey> {
        CacheKey::new(ns, Bytes::copy_from_slice(key)).map_err(|e| match e {
            raftcache_core::Error::InvalidArgument(m) => Error::InvalidArgument(m),
            other => Error::InvalidArgument(other.to_string()),
        })
    }

    fn note_index(&self, group: GroupId, index: u64) {
        let mut s = self.inner.sessions.lock().expect("session lock poisoned");
        let e = s.entry(group).or_insert(0);
        *e = (*e).max(index);
    }

    fn note_leader(&self, group: GroupId, leader: NodeId, addr: &str) {
        let mut t = self.inner.topology.write().expect("topology lock poisoned");
        if let Some(view) = t.as_mut() {
            view.leaders.insert(group, leader);
            if !addr.is_empty() {
                view.topology.nodes.entry(leader).or_insert_with(|| addr.to_owned());
            }
        }
    }

    /// Forgets the leader of `group` (it did not answer).
    fn forget_leader(&self, group: GroupId) {
        if let Some(view) = self.inner.topology.write().expect("topology lock poisoned").as_mut() {
            view.leaders.remove(&group);
        }
    }

    /// Picks the node for one attempt: the group's leader, or a random replica; any endpoint as
    /// the fallback (it forwards).
    fn pick(&self, group: GroupId, target: &Target, attempt: u32) -> String {
        let mut rng = rand::thread_rng();
        let chosen = self.with_view(|t| {
            let replicas = t.replicas(group);
            let node = match target {
                Target::Leader if attempt < 4 => t.leaders.get(&group).copied(),
                Target::Replica if !replicas.is_empty() => Some(replicas[rng.gen_range(0..replicas.len())]),
                _ => None,
            };
            let node = node.or_else(|| {
                let nodes: Vec<_> = t.topology.nodes.keys().copied().collect();
                (!nodes.is_empty()).then(|| nodes[rng.gen_range(0..nodes.len())])
            });
            node.and_then(|n| t.addr(n)).map(str::to_owned)
        });
        chosen.flatten().unwrap_or_else(|| self.inner.endpoints[rng.gen_range(0..self.inner.endpoints.len())].clone())
    }

    /// Runs `op` against the chosen node until it succeeds, fails for good, or the deadline passes.
    async fn with_retries<T, F, Fut>(&self, group: GroupId, target: Target, mut op: F) -> Result<T>
    where
        F: FnMut(Pipe, Duration) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, Status>>,
    {
        let deadline = Instant::now() + self.inner.options.timeout;
        let mut attempt = 0u32;
        let mut hinted: Option<String> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::DeadlineExceeded(format!("no answer for group {group} within the deadline")));
            }
            let addr = hinted.take().unwrap_or_else(|| self.pick(group, &target, attempt));
            let err = match op(self.pipe(&addr)?, remaining.min(self.inner.options.attempt_timeout)).await {
                Ok(v) => return Ok(v),
                Err(status) => status,
            };
            attempt += 1;
            if let Some((leader, leader_addr)) = Error::leader_hint(&err) {
                self.note_leader(group, leader, &leader_addr);
                if !leader_addr.is_empty() && attempt < 8 {
                    hinted = Some(leader_addr);
                    continue;
                }
            }
            let transport_failure = err.metadata().get("x-raftcache-error").is_none();
            let e = Error::from(err);
            if !e.is_retryable() {
                return Err(e);
            }
            if transport_failure {
                // The node did not answer (down, paused, partitioned): try another one at once.
                self.forget_leader(group);
                if attempt < 3 {
                    continue;
                }
            }
            if attempt.is_multiple_of(4) {
                let _ = self.refresh_topology().await;
            }
            // Elections take 150–300 ms: keep the backoff of the same order.
            let cap = Duration::from_millis(5u64 << attempt.min(6)).min(Duration::from_millis(200));
            let sleep = Duration::from_micros(rand::thread_rng().gen_range(0..=cap.as_micros() as u64));
            let remaining = deadline.saturating_duration_since(Instant::now());
            if sleep >= remaining {
                return Err(match e {
                    Error::Unavailable(m) => Error::Unavailable(m),
                    other => other,
                });
            }
            tokio::time::sleep(sleep).await;
        }
    }

    fn write_id(&self) -> Option<WriteId> {
        self.inner.options.idempotent_writes.then(|| WriteId {
            client_id: self.inner.client_id,
            seq: self.inner.seq.fetch_add(1, Ordering::Relaxed) + 1,
        })
    }

    /// Linearizable get.
    pub async fn get(&self, ns: &str, key: &[u8]) -> Result<GetResult> {
        self.get_with(ns, key, Consistency::Linearizable).await
    }

    /// Get at the given consistency level.
    pub async fn get_with(&self, ns: &str, key: &[u8], consistency: Consistency) -> Result<GetResult> {
        let k = Self::key(ns, key)?;
        let group = self.with_view(|t| t.group_for(&k)).unwrap_or(0);
        let (level, min_index, max_staleness_ms, target) = match consistency {
            Consistency::Linearizable => (pb::Consistency::Linearizable, 0, 0, Target::Leader),
            Consistency::FollowerLinearizable => (pb::Consistency::FollowerLinearizable, 0, 0, Target::Replica),
            Consistency::Session { min_index } => {
                let token = if min_index == 0 { self.session_token(group) } else { min_index };
                (pb::Consistency::Session, token, 0, Target::Replica)
            }
            Consistency::Eventual { max_staleness } => {
                (pb::Consistency::Eventual, 0, max_staleness.as_millis().max(1) as u64, Target::Replica)
            }
        };
        let res = self
            .with_retries(group, target, |pipe, remaining| {
                let req = GetRequest {
                    namespace: ns.to_owned(),
                    key: Bytes::copy_from_slice(key),
                    read: Some(ReadOptions { consistency: level as i32, min_index, max_staleness_ms }),
                };
                async move {
                    match pipe.call(Op::Get(req), remaining).await? {
                        Outcome::Get(r) => Ok(r),
                        other => Err(mismatched("get", &other)),
                    }
                }
            })
            .await?;
        let header = res.header.unwrap_or_default();
        self.note_index(header.group, header.applied_index);
        Ok(GetResult {
            value: res.found.then_some(res.value),
            version: res.version,
            expires_at_ms: (res.expires_at_ms != 0).then_some(res.expires_at_ms),
            group: header.group,
            applied_index: header.applied_index,
            served_by: header.served_by,
        })
    }

    /// Unconditional set without TTL.
    pub async fn set(&self, ns: &str, key: &[u8], value: impl Into<Bytes>) -> Result<WriteResult> {
        self.set_with(ns, key, value, SetOptions::default()).await
    }

    /// Set with TTL and condition.
    pub async fn set_with(
        &self,
        ns: &str,
        key: &[u8],
        value: impl Into<Bytes>,
        opts: SetOptions,
    ) -> Result<WriteResult> {
        let k = Self::key(ns, key)?;
        let group = self.with_view(|t| t.group_for(&k)).unwrap_or(0);
        let value = value.into();
        let ttl_ms = match opts.ttl {
            Some(d) if d.is_zero() => return Err(Error::InvalidArgument("ttl must be greater than zero".into())),
            Some(d) => d.as_millis().max(1) as u64,
            None => 0,
        };
        let (if_absent, if_version) = match opts.condition {
            Condition::None => (false, None),
            Condition::IfAbsent => (true, None),
            Condition::IfVersion(v) => (false, Some(v)),
        };
        let id = self.write_id();
        let res = self
            .with_retries(group, Target::Leader, |pipe, remaining| {
                let req = SetRequest {
                    namespace: ns.to_owned(),
                    key: Bytes::copy_from_slice(key),
                    value: value.clone(),
                    ttl_ms,
                    if_absent,
                    if_version,
                    id,
                };
                async move {
                    match pipe.call(Op::Set(req), remaining).await? {
                        Outcome::Set(r) => Ok(r),
                        other => Err(mismatched("set", &other)),
                    }
                }
            })
            .await?;
        let h = res.header.unwrap_or_default();
        self.note_index(h.group, h.applied_index);
        Ok(WriteResult {
            version: res.version,
            existed: true,
            group: h.group,
            applied_index: h.applied_index,
            served_by: h.served_by,
        })
    }

    /// Unconditional delete.
    pub async fn delete(&self, ns: &str, key: &[u8]) -> Result<WriteResult> {
        self.delete_with(ns, key, None).await
    }

    /// Delete, optionally only if the key's version is `if_version`.
    pub async fn delete_with(&self, ns: &str, key: &[u8], if_version: Option<u64>) -> Result<WriteResult> {
        let k = Self::key(ns, key)?;
        let group = self.with_view(|t| t.group_for(&k)).unwrap_or(0);
        let id = self.write_id();
        let res = self
            .with_retries(group, Target::Leader, |pipe, remaining| {
                let req = DeleteRequest { namespace: ns.to_owned(), key: Bytes::copy_from_slice(key), if_version, id };
                async move {
                    match pipe.call(Op::Delete(req), remaining).await? {
                        Outcome::Delete(r) => Ok(r),
                        other => Err(mismatched("delete", &other)),
                    }
                }
            })
            .await?;
        let h = res.header.unwrap_or_default();
        self.note_index(h.group, h.applied_index);
        Ok(WriteResult {
            version: res.version,
            existed: res.existed,
            group: h.group,
            applied_index: h.applied_index,
            served_by: h.served_by,
        })
    }

    /// Invalidates `ns/key`: removes it and fences it, so a conditional write based on an older
    /// version is rejected. Returns the fence as `version`.
    pub async fn invalidate(&self, ns: &str, key: &[u8]) -> Result<WriteResult> {
        let k = Self::key(ns, key)?;
        let group = self.with_view(|t| t.group_for(&k)).unwrap_or(0);
        let id = self.write_id();
        let res = self
            .with_retries(group, Target::Leader, |pipe, remaining| {
                let req = InvalidateRequest { namespace: ns.to_owned(), key: Bytes::copy_from_slice(key), id };
                async move {
                    match pipe.call(Op::Invalidate(req), remaining).await? {
                        Outcome::Invalidate(r) => Ok(r),
                        other => Err(mismatched("invalidate", &other)),
                    }
                }
            })
            .await?;
        let h = res.header.unwrap_or_default();
        self.note_index(h.group, h.applied_index);
        Ok(WriteResult {
            version: res.fence,
            existed: true,
            group: h.group,
            applied_index: h.applied_index,
            served_by: h.served_by,
        })
    }

    fn admin(&self, addr: &str) -> Result<AdminServiceClient<Channel>> {
        Ok(AdminServiceClient::new(self.channel(addr)?))
    }

    /// The status of the node at `addr`.
    pub async fn node_status(&self, addr: &str) -> Result<StatusResponse> {
        let mut req = tonic::Request::new(StatusRequest {});
        req.set_timeout(self.inner.options.timeout.min(Duration::from_secs(2)));
        Ok(self.admin(addr)?.status(req).await?.into_inner())
    }

    /// The status of every node in the topology; unreachable nodes are reported as errors.
    pub async fn cluster_status(&self) -> Vec<(NodeId, String, Result<StatusResponse>)> {
        let topo = match self.topology() {
            Some(t) => t,
            None => match self.refresh_topology().await {
                Ok(t) => t,
                Err(_) => return Vec::new(),
            },
        };
        let futs = topo.topology.nodes.iter().map(|(id, addr)| async move {
            let s = self.node_status(addr).await;
            (*id, addr.clone(), s)
        });
        futures::future::join_all(futs).await
    }

    /// Asks the node at `addr` to snapshot `group` (or all its groups).
    pub async fn trigger_snapshot(&self, addr: &str, group: Option<GroupId>) -> Result<()> {
        let req = TriggerSnapshotRequest { group: group.unwrap_or(0), all: group.is_none() };
        self.admin(addr)?.trigger_snapshot(req).await?;
        Ok(())
    }

    /// Asks node `to` (at `addr`) to campaign for leadership of `group`.
    pub async fn transfer_leader(&self, addr: &str, group: GroupId, to: NodeId) -> Result<()> {
        self.admin(addr)?.transfer_leader(TransferLeaderRequest { group, to }).await?;
        Ok(())
    }
}
