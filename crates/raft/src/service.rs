//! Server side of the Raft transport: decodes each RPC and hands it to the named group.

use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, VoteRequest};
use raftcache_proto::raft::raft_service_server::RaftService;
use raftcache_proto::raft::{RaftReply, RaftRequest, ReadIndexReply, ReadIndexRequest};
use tonic::{Request, Response, Status};

use crate::codec::{decode, encode};
use crate::group::Group;
use crate::read_index::ReadIndexError;
use crate::registry::GroupRegistry;
use crate::types::TypeConfig;

/// The `RaftService` of one node.
#[derive(Clone)]
pub struct RaftServiceImpl {
    registry: GroupRegistry,
}

impl RaftServiceImpl {
    /// Serves the groups in `registry`.
    pub fn new(registry: GroupRegistry) -> Self {
        Self { registry }
    }

    fn group(&self, id: u64) -> Result<&std::sync::Arc<Group>, Status> {
        self.registry.get(id).ok_or_else(|| Status::not_found(format!("group {id} is not hosted on this node")))
    }
}

fn decode_payload<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
    decode(payload).map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
}

#[tonic::async_trait]
impl RaftService for RaftServiceImpl {
    async fn append_entries(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let received = Instant::now();
        let req = req.into_inner();
        let group = self.group(req.group)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode_payload(&req.payload)?;
        // Freshness counts only a commit index of the leader's own term: it then covers every
        // write of earlier terms too (see freshness.rs).
        let mark = match (req.leader_quorum_age_us, rpc.leader_commit) {
            (Some(age), Some(c)) if c.leader_id.term == rpc.vote.leader_id().term => {
                received.checked_sub(Duration::from_micros(age)).map(|at| (at, c.index))
            }
            _ => None,
        };
        let res = group.raft.append_entries(rpc).await;
        if let (Some((at, commit)), Ok(r)) = (mark, &res) {
            if !matches!(r, AppendEntriesResponse::HigherVote(_)) {
                group.heard_from_leader(at, commit);
            }
        }
        Ok(Response::new(RaftReply { payload: encode(&res).into() }))
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = req.into_inner();
        let group = self.group(req.group)?;
        let rpc: VoteRequest<u64> = decode_payload(&req.payload)?;
        let res = group.raft.vote(rpc).await;
        Ok(Response::new(RaftReply { payload: encode(&res).into() }))
    }

    async fn install_snapshot(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = req.into_inner();
        let group = self.group(req.group)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode_payload(&req.payload)?;
        let res = group.raft.install_snapshot(rpc).await;
        Ok(Response::new(RaftReply { payload: encode(&res).into() }))
    }

    async fn read_index(&self, req: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        let group = self.group(req.into_inner().group)?;
        match group.read_index().await {
            Ok(index) => Ok(Response::new(ReadIndexReply { index })),
            Err(ReadIndexError::NotLeader { .. }) => Err(Status::unavailable("not the leader")),
            Err(ReadIndexError::Unavailable(e)) => Err(Status::unavailable(e)),
        }
    }
}
