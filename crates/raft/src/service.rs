//! Server side of the Raft transport: decodes each RPC and hands it to the named group. The
//! same handlers serve the unary calls and the calls on a stream (`stream.rs`).

use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest};
use raftcache_proto::raft::raft_service_server::RaftService;
use raftcache_proto::raft::{RaftCalls, RaftReply, RaftRequest, ReadIndexReply, ReadIndexRequest};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use crate::codec::{decode, encode};
use crate::group::Group;
use crate::read_index::ReadIndexError;
use crate::registry::GroupRegistry;
use crate::types::TypeConfig;

/// The `RaftService` of one node.
#[derive(Clone)]
pub struct RaftServiceImpl {
    registry: GroupRegistry,
    shutdown: watch::Receiver<bool>,
}

impl RaftServiceImpl {
    /// Serves the groups in `registry`; streams end once `shutdown` becomes true.
    pub fn new(registry: GroupRegistry, shutdown: watch::Receiver<bool>) -> Self {
        Self { registry, shutdown }
    }

    fn group(&self, id: u64) -> Result<&std::sync::Arc<Group>, Status> {
        self.registry.get(id).ok_or_else(|| Status::not_found(format!("group {id} is not hosted on this node")))
    }
}

fn decode_payload<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    decode(payload).map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
}

impl RaftServiceImpl {
    /// An AppendEntries received at `received`.
    pub(crate) async fn serve_append(&self, req: RaftRequest, received: Instant) -> Result<RaftReply, Status> {
        let group = self.group(req.group)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode_payload(&req.payload)?;
        // When a quorum last confirmed the sender: on the stream, given on our clock (no later
        // than the truth, see stream.rs); on a unary call, as an age at sending, whose transit
        // counts as zero (a unary append that timed out is reset, never served late).
        let confirmed = match (req.quorum_confirmed_at_us, req.leader_quorum_age_us) {
            (Some(us), _) => Some(crate::stream::local_instant(us).min(received)),
            (None, Some(age)) => received.checked_sub(Duration::from_micros(age)),
            (None, None) => None,
        };
        // Freshness counts only a commit index of the leader's own term: it then covers every
        // write of earlier terms too (see freshness.rs).
        let mark = match (confirmed, rpc.leader_commit) {
            (Some(at), Some(c)) if c.leader_id.term == rpc.vote.leader_id().term => Some((at, c.index)),
            _ => None,
        };
        let res = group.raft.append_entries(rpc).await;
        if let (Some((at, commit)), Ok(r)) = (mark, &res) {
            if !matches!(r, AppendEntriesResponse::HigherVote(_)) {
                group.heard_from_leader(at, commit);
            }
        }
        Ok(RaftReply { payload: encode(&res).into() })
    }

    /// The read index of `group`, whose leader this node must be.
    pub(crate) async fn serve_read_index(&self, group: u64) -> Result<u64, Status> {
        match self.group(group)?.read_index().await {
            Ok(index) => Ok(index),
            Err(ReadIndexError::NotLeader { .. }) => Err(Status::unavailable("not the leader")),
            Err(ReadIndexError::Unavailable(e)) => Err(Status::unavailable(e)),
        }
    }

    pub(crate) async fn serve_vote(&self, req: RaftRequest) -> Result<RaftReply, Status> {
        let group = self.group(req.group)?;
        let rpc: VoteRequest<u64> = decode_payload(&req.payload)?;
        let res = group.raft.vote(rpc).await;
        Ok(RaftReply { payload: encode(&res).into() })
    }
}

#[tonic::async_trait]
impl RaftService for RaftServiceImpl {
    type StreamStream = crate::stream::ResultStream;

    async fn stream(&self, req: Request<Streaming<RaftCalls>>) -> Result<Response<Self::StreamStream>, Status> {
        Ok(Response::new(crate::stream::serve(self.clone(), req.into_inner(), self.shutdown.clone())))
    }

    async fn append_entries(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.serve_append(req.into_inner(), Instant::now()).await.map(Response::new)
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        self.serve_vote(req.into_inner()).await.map(Response::new)
    }

    async fn install_snapshot(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = req.into_inner();
        let group = self.group(req.group)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode_payload(&req.payload)?;
        let res = group.raft.install_snapshot(rpc).await;
        Ok(Response::new(RaftReply { payload: encode(&res).into() }))
    }

    async fn read_index(&self, req: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        let index = self.serve_read_index(req.into_inner().group).await?;
        Ok(Response::new(ReadIndexReply { index }))
    }
}
