//! Client side of the Raft transport: one lazily connected HTTP/2 channel per peer, shared by
//! every group; each group's [`GroupNetworkFactory`] stamps its group id on the RPCs. Appends,
//! votes and read indexes travel over one stream per peer (`stream.rs`), snapshots as unary
//! calls; a peer that does not know the stream (an older version) gets unary calls for
//! [`UNARY_RETRY`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{Entry, EntryPayload, LogId};
use raftcache_proto::raft::raft_service_client::RaftServiceClient;
use raftcache_proto::raft::{RaftReply, RaftRequest, RaftRpc, ReadIndexRequest};
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::codec::{decode, encode};
use crate::freshness::QuorumClock;
use crate::stream::PeerStream;
use crate::types::{NodeInfo, TypeConfig};

/// Largest Raft message either side accepts (snapshot chunks are smaller).
pub const MAX_RAFT_MESSAGE: usize = 64 * 1024 * 1024;

/// Payload bytes above which an AppendEntries is cut short (it still carries one entry, and
/// one entry is at most a maximal value). openraft limits appends by entry count only, so a
/// backlog of large values would otherwise make every append exceed [`MAX_RAFT_MESSAGE`] and
/// fail forever, leaving the follower behind and electing in vain.
pub const MAX_APPEND_PAYLOAD: usize = 16 * 1024 * 1024;

/// Payload bytes from which an append keeps running after openraft gives up on it. openraft
/// 0.9 bounds every AppendEntries by the heartbeat interval (50 ms) and sends the same entries
/// again when that expires. An append of a multi-megabyte value can need longer than that to
/// cross the link and be stored (debug builds on a busy machine; 8 MiB on a 1 Gbit/s link
/// alone takes 67 ms), so every attempt expired, each queued another copy on the peer's
/// stream ahead of every group's heartbeats, and the follower never caught up while the
/// other groups on that stream lost their leaders. Such an append now runs to completion in a
/// task of its own, and openraft's next attempt at the same entries waits for it instead of
/// sending them again.
pub const DETACHED_APPEND_BYTES: usize = 1024 * 1024;

/// Key and value bytes an entry carries (membership and blank entries count as none).
fn entry_bytes(e: &Entry<TypeConfig>) -> usize {
    match &e.payload {
        EntryPayload::Normal(req) => req.cmd.approx_bytes(),
        _ => 0,
    }
}

/// An append of at least [`DETACHED_APPEND_BYTES`], running in its own task.
struct DetachedAppend {
    /// The leader's vote, the entry before the first sent, and the last sent.
    vote: openraft::Vote<u64>,
    prev: Option<LogId<u64>>,
    last: Option<LogId<u64>>,
    task: tokio::task::JoinHandle<AppendResult>,
}

type AppendResult = Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>>;

/// Keeps the longest prefix of `entries` (at least one) whose payload fits in `limit` bytes;
/// the log id of the last kept entry if any were cut.
fn cut_to_size(entries: &mut Vec<Entry<TypeConfig>>, limit: usize) -> Option<LogId<u64>> {
    let mut total = 0;
    let keep = entries
        .iter()
        .position(|e| {
            total += entry_bytes(e);
            total > limit
        })
        .map_or(entries.len(), |first_over| first_over.max(1));
    if keep == entries.len() {
        return None;
    }
    entries.truncate(keep);
    entries.last().map(|e| e.log_id)
}

/// How long a peer that answered the stream with `UNIMPLEMENTED` gets unary calls before the
/// stream is tried again (it may have been upgraded meanwhile).
pub const UNARY_RETRY: Duration = Duration::from_secs(60);

struct Peer {
    addr: String,
    channel: Channel,
    reachable: bool,
    /// The stream of appends and votes, once opened.
    stream: Option<PeerStream>,
    /// Until when the peer gets unary calls because it lacks the stream.
    unary_until: Option<Instant>,
}

/// One channel per peer node, shared by all groups of this node.
#[derive(Clone, Default)]
pub struct PeerChannels {
    peers: Arc<Mutex<HashMap<u64, Peer>>>,
    /// Peer id → address to dial instead of the advertised one (a proxy, a NAT mapping).
    overrides: Arc<HashMap<u64, String>>,
}

/// Builds a lazily connecting channel to `addr` (`host:port`).
pub fn channel_to(addr: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(500))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .initial_connection_window_size(Some(8 * 1024 * 1024))
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .connect_lazy())
}

impl PeerChannels {
    /// Channels that dial `overrides[id]` instead of a peer's advertised address.
    pub fn with_overrides(overrides: HashMap<u64, String>) -> Self {
        Self { peers: Arc::default(), overrides: Arc::new(overrides) }
    }

    /// The channel to `node` at `addr`, created on first use (and anew if the address changed).
    pub fn get(&self, node: u64, addr: &str) -> Channel {
        let mut peers = self.peers.lock().expect("peer map lock poisoned");
        self.peer(&mut peers, node, addr).channel.clone()
    }

    /// The entry of `node` at `addr` (or its override) in `peers`, replaced (with a new channel
    /// and no stream) if the address changed.
    fn peer<'a>(&self, peers: &'a mut HashMap<u64, Peer>, node: u64, addr: &str) -> &'a mut Peer {
        let addr = self.overrides.get(&node).map(String::as_str).unwrap_or(addr);
        if peers.get(&node).is_none_or(|p| p.addr != addr) {
            let channel = channel_to(addr).unwrap_or_else(|_| panic!("peer address {addr:?} is not a valid host:port"));
            let peer = Peer { addr: addr.to_owned(), channel, reachable: true, stream: None, unary_until: None };
            peers.insert(node, peer);
        }
        peers.get_mut(&node).expect("inserted above")
    }

    /// The open stream to `node`, opened anew if the last one ended; `None` while the peer gets
    /// unary calls.
    pub(crate) fn stream(&self, node: u64, addr: &str) -> Option<PeerStream> {
        let mut peers = self.peers.lock().expect("peer map lock poisoned");
        let p = self.peer(&mut peers, node, addr);
        if p.unary_until.is_some_and(|until| Instant::now() < until) {
            return None;
        }
        match &p.stream {
            Some(s) if !s.is_closed() => Some(s.clone()),
            _ => Some(p.stream.insert(PeerStream::open(p.channel.clone(), node)).clone()),
        }
    }

    /// `node` answered the stream with `UNIMPLEMENTED`: unary calls for [`UNARY_RETRY`].
    fn use_unary(&self, node: u64) {
        let mut peers = self.peers.lock().expect("peer map lock poisoned");
        if let Some(p) = peers.get_mut(&node) {
            if p.unary_until.is_none_or(|until| until <= Instant::now()) {
                tracing::info!(peer = node, addr = %p.addr, "peer has no raft stream; using unary calls");
            }
            p.unary_until = Some(Instant::now() + UNARY_RETRY);
            p.stream = None;
        }
    }

    /// Logs reachability transitions once, not on every failed heartbeat.
    fn mark(&self, node: u64, ok: bool) {
        let mut peers = self.peers.lock().expect("peer map lock poisoned");
        if let Some(p) = peers.get_mut(&node) {
            if p.reachable != ok {
                p.reachable = ok;
                if ok {
                    tracing::info!(peer = node, addr = %p.addr, "peer reachable again");
                } else {
                    tracing::warn!(peer = node, addr = %p.addr, "peer unreachable");
                }
            }
        }
    }

    /// Asks `leader` for its read index of `group` (for follower-linearizable reads).
    pub async fn read_index(
        &self,
        leader: u64,
        addr: &str,
        group: u64,
        timeout: Duration,
    ) -> Result<u64, tonic::Status> {
        if let Some(stream) = self.stream(leader, addr) {
            let request = RaftRequest { group, ..RaftRequest::default() };
            match tokio::time::timeout(timeout, stream.call(RaftRpc::ReadIndex, request)).await {
                Err(_) => return Err(tonic::Status::cancelled("Timeout expired")),
                Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => self.use_unary(leader),
                Ok(Err(s)) => return Err(s),
                Ok(Ok(reply)) => {
                    return decode(&reply.payload).map_err(|e| {
                        tonic::Status::internal(format!("undecodable read index from node {leader}: {e}"))
                    })
                }
            }
        }
        let mut client = RaftServiceClient::new(self.get(leader, addr));
        let mut req = tonic::Request::new(ReadIndexRequest { group });
        req.set_timeout(timeout);
        Ok(client.read_index(req).await?.into_inner().index)
    }
}

/// Creates the connections of one group.
#[derive(Clone)]
pub struct GroupNetworkFactory {
    group: u64,
    node_id: u64,
    peers: PeerChannels,
    clock: Arc<QuorumClock>,
    voters: Arc<VoterSet>,
}

/// The voters of a group as this node last saw them (membership is fixed at bootstrap, but the
/// set is read from the group's metrics once the Raft instance exists).
pub type VoterSet = std::sync::RwLock<Vec<u64>>;

impl GroupNetworkFactory {
    /// The factory of `group` on `node_id`, over the node's shared channels; `clock` collects the
    /// followers' acknowledgements of this group's appends, `voters` is the group's voter set.
    pub fn new(group: u64, node_id: u64, peers: PeerChannels, clock: Arc<QuorumClock>, voters: Arc<VoterSet>) -> Self {
        Self { group, node_id, peers, clock, voters }
    }
}

impl RaftNetworkFactory<TypeConfig> for GroupNetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: u64, node: &NodeInfo) -> Self::Network {
        GroupNetwork {
            group: self.group,
            target,
            addr: node.addr.clone(),
            client: RaftServiceClient::new(self.peers.get(target, &node.addr))
                .max_decoding_message_size(MAX_RAFT_MESSAGE)
                .max_encoding_message_size(MAX_RAFT_MESSAGE),
            peers: self.peers.clone(),
            node_id: self.node_id,
            clock: self.clock.clone(),
            voters: self.voters.clone(),
            detached: None,
        }
    }
}

/// A connection from one group to one peer.
pub struct GroupNetwork {
    group: u64,
    target: u64,
    addr: String,
    client: RaftServiceClient<Channel>,
    peers: PeerChannels,
    node_id: u64,
    clock: Arc<QuorumClock>,
    voters: Arc<VoterSet>,
    /// The large append still running, if any (see [`DETACHED_APPEND_BYTES`]).
    detached: Option<DetachedAppend>,
}

enum Rpc {
    Append,
    Vote,
    Snapshot,
}

/// Whether a failed RPC means the peer cannot be reached, so that openraft backs off (500 ms)
/// instead of retrying at once: the connection failed (`Unavailable`), or our own transport
/// failed under the call (a status with a local source: the connection was reset or closed,
/// as a proxy in front of a dead peer does). A status the peer sent — a server-side timeout is
/// `Cancelled` too — carries no source and stays a plain network error: backing off on slow
/// answers starves followers of heartbeats and makes them call elections.
fn peer_unreachable(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    status.code() == tonic::Code::Unavailable || status.source().is_some()
}

impl GroupNetwork {
    async fn call<Resp, E>(
        &mut self,
        rpc: Rpc,
        payload: Vec<u8>,
        ttl: Option<Duration>,
        quorum_confirmed: Option<Instant>,
    ) -> Result<Resp, RPCError<u64, NodeInfo, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let request = RaftRequest {
            group: self.group,
            payload: payload.into(),
            leader_quorum_age_us: None,
            quorum_confirmed_at_us: None,
        };
        let streamed = match rpc {
            Rpc::Append => Some(RaftRpc::AppendEntries),
            Rpc::Vote => Some(RaftRpc::Vote),
            Rpc::Snapshot => None,
        };
        let mut res = None;
        if let Some(kind) = streamed {
            if let Some(stream) = self.peers.stream(self.target, &self.addr) {
                let request = RaftRequest {
                    quorum_confirmed_at_us: quorum_confirmed.and_then(|t| stream.peer_time(t)),
                    ..request.clone()
                };
                match stream.call(kind, request).await {
                    Err(s) if s.code() == tonic::Code::Unimplemented => self.peers.use_unary(self.target),
                    r => res = Some(r),
                }
            }
        }
        let res = match res {
            Some(r) => r,
            None => {
                // The quorum age at sending: a unary append that times out is reset, never
                // served late, so its transit time can count as zero.
                let age = quorum_confirmed.map(|t| Instant::now().saturating_duration_since(t).as_micros() as u64);
                let mut req = tonic::Request::new(RaftRequest { leader_quorum_age_us: age, ..request });
                // openraft already bounds appends and votes with its own timeout (and treats
                // expiry as a plain timeout). Setting the same deadline here turned slow answers
                // into `Unreachable`, which makes openraft back off replication for 500 ms and
                // followers start elections.
                if let Some(ttl) = ttl {
                    req.set_timeout(ttl);
                }
                match rpc {
                    Rpc::Append => self.client.append_entries(req).await,
                    Rpc::Vote => self.client.vote(req).await,
                    Rpc::Snapshot => self.client.install_snapshot(req).await,
                }
                .map(tonic::Response::into_inner)
            }
        };
        let reply: RaftReply = match res {
            Ok(r) => {
                self.peers.mark(self.target, true);
                r
            }
            Err(status) => {
                return Err(if peer_unreachable(&status) {
                    self.peers.mark(self.target, false);
                    RPCError::Unreachable(Unreachable::new(&status))
                } else {
                    RPCError::Network(NetworkError::new(&status))
                });
            }
        };
        let res: Result<Resp, E> = decode(&reply.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl GroupNetwork {
    /// The same connection, for a task of its own.
    fn detached_copy(&self) -> Self {
        Self {
            group: self.group,
            target: self.target,
            addr: self.addr.clone(),
            client: self.client.clone(),
            peers: self.peers.clone(),
            node_id: self.node_id,
            clock: self.clock.clone(),
            voters: self.voters.clone(),
            detached: None,
        }
    }

    /// Sends a large append in a task of its own, or joins the one already running that started
    /// at the same entry under the same vote and sent no more than asked for now. A join that
    /// sent fewer entries than asked answers `PartialSuccess` up to the last it sent.
    async fn append_detached(&mut self, rpc: AppendEntriesRequest<TypeConfig>) -> AppendResult {
        let last = rpc.entries.last().map(|e| e.log_id);
        let joins = self
            .detached
            .as_ref()
            .is_some_and(|d| d.vote == rpc.vote && d.prev == rpc.prev_log_id && d.last <= last && d.last.is_some());
        if !joins {
            if let Some(old) = self.detached.take() {
                old.task.abort();
            }
            let mut net = self.detached_copy();
            let (vote, prev) = (rpc.vote, rpc.prev_log_id);
            let task = tokio::spawn(async move { net.send_append(rpc).await });
            self.detached = Some(DetachedAppend { vote, prev, last, task });
        }
        let d = self.detached.as_mut().expect("a detached append");
        // openraft may drop this future at its timeout; the task runs on, and the next attempt
        // at these entries joins it.
        let res = (&mut d.task).await;
        let sent = d.last;
        self.detached = None;
        match res {
            Ok(Ok(AppendEntriesResponse::Success)) if sent < last => Ok(AppendEntriesResponse::PartialSuccess(sent)),
            Ok(res) => res,
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    async fn send_append(&mut self, rpc: AppendEntriesRequest<TypeConfig>) -> AppendResult {
        let mut rpc = rpc;
        let cut = cut_to_size(&mut rpc.entries, MAX_APPEND_PAYLOAD);
        let term = rpc.vote.leader_id().term;
        let sent = Instant::now();
        let age = {
            let voters = self.voters.read().expect("voter set lock poisoned");
            self.clock.age(term, self.node_id, &voters, sent)
        };
        let confirmed = age.and_then(|a| sent.checked_sub(a));
        let res = self.call(Rpc::Append, encode(&rpc), None, confirmed).await;
        if matches!(res, Ok(ref r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.clock.acked(term, self.target, sent);
        }
        match (res, cut) {
            // The follower has what was sent, not what openraft asked to send.
            (Ok(AppendEntriesResponse::Success), Some(last)) => Ok(AppendEntriesResponse::PartialSuccess(Some(last))),
            (res, _) => res,
        }
    }
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        if rpc.entries.iter().map(entry_bytes).sum::<usize>() >= DETACHED_APPEND_BYTES {
            return self.append_detached(rpc).await;
        }
        self.send_append(rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64, InstallSnapshotError>>> {
        self.call(Rpc::Snapshot, encode(&rpc), Some(option.hard_ttl()), None).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeInfo, RaftError<u64>>> {
        self.call(Rpc::Vote, encode(&rpc), None, None).await
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::CommittedLeaderId;
    use raftcache_core::{CacheKey, Command, Condition, Request};

    use super::*;

    fn entry(index: u64, value_len: usize) -> Entry<TypeConfig> {
        let key = CacheKey::new("t", Bytes::from(format!("k{index}"))).unwrap();
        let cmd = Command::Set { key, value: vec![0u8; value_len].into(), ttl_ms: None, cond: Condition::None };
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Request { now_ms: 0, client: None, cmd }),
        }
    }

    #[test]
    fn transport_failures_are_unreachable_and_answers_from_the_peer_are_not() {
        assert!(peer_unreachable(&tonic::Status::unavailable("tcp connect error")));
        // hyper's "connection closed" under a call, as seen behind the fault suite's proxy.
        let mut closed = tonic::Status::cancelled("operation was canceled");
        closed.set_source(std::sync::Arc::new(std::io::Error::other("connection closed")));
        assert!(peer_unreachable(&closed));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(peer_unreachable(&tonic::Status::from_error(Box::new(reset))));
        // What the peer itself answered: its grpc-timeout expired, or it refused the request.
        assert!(!peer_unreachable(&tonic::Status::cancelled("Timeout expired")));
        assert!(!peer_unreachable(&tonic::Status::not_found("group 9 is not hosted on this node")));
        assert!(!peer_unreachable(&tonic::Status::invalid_argument("undecodable raft payload")));
    }

    #[test]
    fn appends_are_cut_at_the_payload_limit_but_carry_at_least_one_entry() {
        let mut small: Vec<_> = (1..=5).map(|i| entry(i, 100)).collect();
        assert_eq!(cut_to_size(&mut small, 10_000), None, "everything fits");
        assert_eq!(small.len(), 5);

        let mut big: Vec<_> = (1..=5).map(|i| entry(i, 1_000)).collect();
        let last = cut_to_size(&mut big, 2_500).expect("cut");
        assert_eq!((big.len(), last.index), (2, 2), "two entries of ~1 kB fit in 2.5 kB");

        let mut huge: Vec<_> = (1..=3).map(|i| entry(i, 10_000)).collect();
        let last = cut_to_size(&mut huge, 2_500).expect("cut");
        assert_eq!((huge.len(), last.index), (1, 1), "an entry larger than the limit still goes, alone");

        let mut empty: Vec<Entry<TypeConfig>> = Vec::new();
        assert_eq!(cut_to_size(&mut empty, 1), None);
    }
}
