//! Routing: which group owns a key, whether this node can serve a request for it, and
//! forwarding to the node that can.
//!
//! Any node accepts any request. A write or a linearizable read goes to the group's leader: if
//! that is this node it is served here, otherwise it is forwarded once (marked with
//! `x-raftcache-forwarded`), and a node that receives a forwarded request it cannot serve answers
//! `NOT_LEADER` with its leader hint instead of forwarding again, so requests never loop. The
//! forwarding node follows such hints a few times within the request's deadline.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftcache_core::{CacheKey, ClientSeq, Command, GroupId, HashRing, NodeId, Response, Topology};
use raftcache_proto::cache::cache_service_client::CacheServiceClient;
use raftcache_proto::cache::{ResponseHeader, WriteId};
use raftcache_raft::{Group, GroupRegistry, PeerChannels, WriteError};
use rand::seq::SliceRandom;
use tonic::transport::Channel;
use tonic::Status;

use crate::clock::stamp_ms;
use crate::error::ServeError;

/// Metadata key marking a request forwarded by another node.
pub const FORWARDED: &str = "x-raftcache-forwarded";
/// Largest message a node accepts from clients beyond the value limit (keys, headers).
pub const MESSAGE_OVERHEAD: usize = 64 * 1024;
/// Deadline used when a request carries none.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// Longest deadline a request may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);

/// A planted bug (fault-injection builds only), so the fault suite can prove it detects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Bug {
    /// Linearizable reads skip ReadIndex and read whatever the local replica holds.
    StaleRead,
    /// Invalidations delete without leaving a fence.
    NoFence,
}

/// The planted bugs in force; all off unless built with `fault-injection` and asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bugs {
    /// See [`Bug::StaleRead`].
    pub stale_read: bool,
    /// See [`Bug::NoFence`].
    pub no_fence: bool,
}

impl Bugs {
    /// The set named by `bugs`.
    pub fn from_list(bugs: &[Bug]) -> Self {
        Self { stale_read: bugs.contains(&Bug::StaleRead), no_fence: bugs.contains(&Bug::NoFence) }
    }
}

/// Where a forwarded request should go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// The group's leader.
    Leader,
    /// Any replica of the group.
    Replica,
}

/// The outcome of trying to serve a write on this node.
pub enum Local<T> {
    /// Served here (successfully or not).
    Done(Result<T, ServeError>),
    /// This node is not the leader; the leader if known.
    NotHere(Option<(NodeId, String)>),
}

/// Routing state of a node.
pub struct Router {
    /// This node.
    pub node_id: NodeId,
    /// The cluster layout.
    pub topology: Arc<Topology>,
    ring: HashRing,
    /// Local group replicas.
    pub registry: GroupRegistry,
    /// Channels to peers (shared with Raft).
    pub peers: PeerChannels,
    /// Last known leaders of groups this node does not replicate.
    hints: Mutex<HashMap<GroupId, NodeId>>,
    /// Largest value accepted.
    pub max_value_bytes: usize,
    /// Planted bugs (fault-injection builds only).
    pub bugs: Bugs,
}

impl Router {
    /// A router over `topology` for `node_id`.
    pub fn new(
        node_id: NodeId,
        topology: Arc<Topology>,
        registry: GroupRegistry,
        peers: PeerChannels,
        max_value_bytes: usize,
        bugs: Bugs,
    ) -> Self {
        let ring = topology.ring();
        Self { node_id, topology, ring, registry, peers, hints: Mutex::new(HashMap::new()), max_value_bytes, bugs }
    }

    /// The group that owns `key`.
    pub fn group_for(&self, key: &CacheKey) -> GroupId {
        self.ring.group_for(key)
    }

    /// The local replica of `group`.
    pub fn local(&self, group: GroupId) -> Option<&Arc<Group>> {
        self.registry.get(group)
    }

    /// A response header for `group` served here at `applied_index`.
    pub fn header(&self, group: GroupId, applied_index: u64) -> ResponseHeader {
        ResponseHeader { group, applied_index, served_by: self.node_id, epoch: self.topology.epoch }
    }

    fn addr(&self, node: NodeId) -> String {
        self.topology.nodes.get(&node).cloned().unwrap_or_default()
    }

    /// The leader of `group` as far as this node knows.
    pub fn leader_hint(&self, group: GroupId) -> Option<(NodeId, String)> {
        if let Some(g) = self.local(group) {
            return g.leader();
        }
        let id = *self.hints.lock().expect("hint lock poisoned").get(&group)?;
        Some((id, self.addr(id)))
    }

    /// Waits (until `deadline`, at most 2 s) for the local replica of `group` to know a leader.
    pub async fn wait_leader(&self, group: GroupId, deadline: Instant) -> Option<(NodeId, String)> {
        let g = self.local(group)?;
        if let Some(l) = g.leader() {
            return Some(l);
        }
        let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(2));
        // Boxed: the rare path, and a kilobyte that would otherwise grow every write's future.
        let _ = Box::pin(g.raft.wait(Some(wait)).metrics(|m| m.current_leader.is_some(), "leader known")).await;
        g.leader()
    }

    /// Waits (until `deadline`, at most 2 s) for the local replica of `group` to name a leader
    /// other than this node; false if it does not, or if this node wins a later term meanwhile
    /// (the caller's retry then finds it leading).
    async fn wait_other_leader(&self, group: GroupId, deadline: Instant) -> bool {
        let Some(g) = self.local(group) else { return false };
        let me = self.node_id;
        let term = g.raft.metrics().borrow().current_term;
        let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(2));
        let settled = g
            .raft
            .wait(Some(wait))
            .metrics(
                |m| {
                    m.current_leader.is_some_and(|l| l != me)
                        || (m.state == openraft::ServerState::Leader && m.current_term > term)
                },
                "another leader known, or this node elected",
            )
            .await;
        settled.is_ok_and(|m| m.current_leader.is_some_and(|l| l != me))
    }

    /// Proposes `cmd` on the local replica of `group` if it is the leader.
    pub async fn write_local(
        &self,
        group: GroupId,
        client: Option<ClientSeq>,
        cmd: Command,
        deadline: Instant,
    ) -> Local<(Response, u64)> {
        let Some(g) = self.local(group) else { return Local::NotHere(self.leader_hint(group)) };
        if !g.is_leader() {
            let leader = self.wait_leader(group, deadline).await;
            if !g.is_leader() {
                return Local::NotHere(leader);
            }
        }
        let floor = g.data().state.now_ms();
        let req = raftcache_core::Request { now_ms: stamp_ms(floor), client, cmd };
        match tokio::time::timeout_at(deadline.into(), g.write(req)).await {
            Err(_) => Local::Done(Err(ServeError::DeadlineExceeded(format!(
                "write to group {group} not committed within the deadline; it may still apply"
            )))),
            Ok(Ok(r)) => Local::Done(Ok(r)),
            Ok(Err(WriteError::NotLeader { leader })) => Local::NotHere(leader),
            Ok(Err(WriteError::Unavailable(e))) => Local::Done(Err(ServeError::Unavailable(e))),
        }
    }

    fn pick(&self, group: GroupId, hop: Hop) -> Option<(NodeId, String)> {
        match hop {
            Hop::Leader => self
                .leader_hint(group)
                .or_else(|| self.topology.groups.get(&group).and_then(|r| r.first()).map(|id| (*id, self.addr(*id)))),
            Hop::Replica => {
                let replicas = self.topology.groups.get(&group)?;
                let others: Vec<_> = replicas.iter().filter(|r| **r != self.node_id).collect();
                let id = **others.choose(&mut rand::thread_rng())?;
                Some((id, self.addr(id)))
            }
        }
    }

    /// Forwards `msg` to the group's leader (or a replica), following leader hints until
    /// `deadline`. `idempotent` requests are also retried after a connection failure; others only
    /// when the answer proves they had no effect (`NOT_LEADER`).
    ///
    /// The future is boxed: forwarding is the cold path, and held inline its tonic call would
    /// make every served call's future (spawned, so moved and copied, once per call) kilobytes
    /// larger.
    pub fn forward<'a, Req, Resp, F, Fut>(
        &'a self,
        group: GroupId,
        hop: Hop,
        msg: Req,
        deadline: Instant,
        idempotent: bool,
        call: F,
    ) -> Pin<Box<impl Future<Output = Result<tonic::Response<Resp>, Status>> + 'a>>
    where
        Req: Clone + 'a,
        Resp: 'a,
        F: FnMut(CacheServiceClient<Channel>, tonic::Request<Req>) -> Fut + 'a,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>> + 'a,
    {
        Box::pin(self.forward_unboxed(group, hop, msg, deadline, idempotent, call))
    }

    async fn forward_unboxed<Req, Resp, F, Fut>(
        &self,
        group: GroupId,
        hop: Hop,
        msg: Req,
        deadline: Instant,
        idempotent: bool,
        mut call: F,
    ) -> Result<tonic::Response<Resp>, Status>
    where
        Req: Clone,
        F: FnMut(CacheServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let mut last: Option<Status> = None;
        for attempt in 0..6u32 {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let Some((id, addr)) = self.pick(group, hop) else {
                tokio::time::sleep(Duration::from_millis(50).min(remaining)).await;
                continue;
            };
            if id == self.node_id {
                // The hint names this node, yet the request was refused here: it has just lost
                // leadership and its view has not caught up (a deposed leader learns of its
                // successor a moment after its heartbeats are refused), or an election runs here.
                // Wait for the view to name another leader; if none comes, let the caller retry.
                if attempt < 5 && self.wait_other_leader(group, deadline).await {
                    continue;
                }
                return Err(ServeError::Unavailable(format!("group {group} is electing a leader; retry")).into());
            }
            let mut req = tonic::Request::new(msg.clone());
            req.metadata_mut().insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
            req.set_timeout(remaining);
            let client = CacheServiceClient::new(self.peers.get(id, &addr))
                .max_decoding_message_size(self.max_value_bytes + MESSAGE_OVERHEAD)
                .max_encoding_message_size(self.max_value_bytes + MESSAGE_OVERHEAD);
            match call(client, req).await {
                Ok(resp) => {
                    if hop == Hop::Leader && self.local(group).is_none() {
                        self.hints.lock().expect("hint lock poisoned").insert(group, id);
                    }
                    return Ok(resp);
                }
                Err(s) => {
                    let kind = s.metadata().get("x-raftcache-error").and_then(|v| v.to_str().ok()).unwrap_or("");
                    let hinted = s
                        .metadata()
                        .get("x-raftcache-leader")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<NodeId>().ok());
                    let retry = match (kind, s.code()) {
                        ("not_leader", _) => true,
                        ("", tonic::Code::Unavailable) => idempotent || s.message().contains("connect"),
                        ("unavailable", _) => idempotent,
                        _ => false,
                    };
                    if !retry {
                        return Err(s);
                    }
                    {
                        let mut hints = self.hints.lock().expect("hint lock poisoned");
                        match hinted {
                            Some(h) => hints.insert(group, h),
                            None => hints.remove(&group),
                        };
                    }
                    last = Some(s);
                    if hinted.is_none() {
                        let backoff = Duration::from_millis(20 << attempt.min(4)).min(remaining);
                        tokio::time::sleep(backoff).await;
                    }
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            ServeError::Unavailable(format!("no leader of group {group} reachable within the deadline")).into()
        }))
    }
}

/// The `(client_id, seq)` of a write, if the client sent one.
pub fn client_seq(id: Option<WriteId>) -> Option<ClientSeq> {
    id.filter(|i| i.client_id != 0).map(|i| ClientSeq { client_id: i.client_id, seq: i.seq })
}

/// A unary request's message, whether another node forwarded it, and its deadline.
pub fn unpack<T>(req: tonic::Request<T>) -> (T, bool, Instant) {
    let (forwarded, deadline) = (is_forwarded(&req), deadline_of(&req));
    (req.into_inner(), forwarded, deadline)
}

/// Whether another node forwarded this request.
pub fn is_forwarded<T>(req: &tonic::Request<T>) -> bool {
    req.metadata().contains_key(FORWARDED)
}

/// The request's deadline from its `grpc-timeout`, capped at a minute; 5 s if absent.
pub fn deadline_of<T>(req: &tonic::Request<T>) -> Instant {
    let timeout = req
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or(DEFAULT_DEADLINE)
        .min(MAX_DEADLINE);
    Instant::now() + timeout
}

/// Parses the gRPC wire timeout format: up to 8 digits and a unit (H M S m u n).
fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("4999m"), Some(Duration::from_millis(4999)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("S"), None);
    }
}
