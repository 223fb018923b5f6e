//! `AdminService`: status of this node's replicas, snapshots on demand, leader transfer.

use std::sync::Arc;

use openraft::ServerState;
use raftcache_proto::admin::admin_service_server::AdminService;
use raftcache_proto::admin::{
    GroupStatus, InjectFaultRequest, InjectFaultResponse, StatusRequest, StatusResponse, TransferLeaderRequest,
    TransferLeaderResponse, TriggerSnapshotRequest, TriggerSnapshotResponse,
};
use tonic::{Request, Response, Status};

use crate::error::ServeError;
use crate::router::Router;

/// The `AdminService` of one node.
#[derive(Clone)]
pub struct AdminServiceImpl {
    router: Arc<Router>,
}

impl AdminServiceImpl {
    /// Reports on the groups of `router`.
    pub fn new(router: Arc<Router>) -> Self {
        Self { router }
    }
}

fn role(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[tonic::async_trait]
impl AdminService for AdminServiceImpl {
    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let r = &self.router;
        let groups = r
            .registry
            .iter()
            .map(|g| {
                let m = g.raft.metrics().borrow().clone();
                let (keys, digest, applied) = {
                    let d = g.data();
                    (d.state.len() as u64, d.state.digest(), d.applied_index())
                };
                GroupStatus {
                    group: g.id,
                    role: role(m.state).to_owned(),
                    leader: m.current_leader.unwrap_or(0),
                    term: m.current_term,
                    replicas: r.topology.groups.get(&g.id).cloned().unwrap_or_default(),
                    last_log_index: m.last_log_index.unwrap_or(0),
                    applied_index: applied,
                    snapshot_index: m.snapshot.map(|s| s.index).unwrap_or(0),
                    purged_index: m.purged.map(|p| p.index).unwrap_or(0),
                    keys,
                    digest,
                    millis_since_leader: g.staleness().map(|d| d.as_millis() as u64),
                }
            })
            .collect();
        Ok(Response::new(StatusResponse {
            node_id: r.node_id,
            addr: r.topology.nodes.get(&r.node_id).cloned().unwrap_or_default(),
            epoch: r.topology.epoch,
            groups,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }))
    }

    async fn trigger_snapshot(
        &self,
        req: Request<TriggerSnapshotRequest>,
    ) -> Result<Response<TriggerSnapshotResponse>, Status> {
        let req = req.into_inner();
        for g in self.router.registry.iter().filter(|g| req.all || g.id == req.group) {
            g.raft.trigger().snapshot().await.map_err(|e| ServeError::Unavailable(e.to_string()))?;
        }
        if !req.all && self.router.local(req.group).is_none() {
            return Err(ServeError::InvalidArgument(format!("node does not replicate group {}", req.group)).into());
        }
        Ok(Response::new(TriggerSnapshotResponse {}))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let req = req.into_inner();
        if req.to != self.router.node_id {
            return Err(ServeError::InvalidArgument(format!(
                "send TransferLeader to the target node {} itself; this is node {}",
                req.to, self.router.node_id
            ))
            .into());
        }
        let g = self
            .router
            .local(req.group)
            .ok_or_else(|| ServeError::InvalidArgument(format!("node does not replicate group {}", req.group)))?;
        // openraft 0.9 has no leader transfer: campaigning on the target does the job.
        g.raft.trigger().elect().await.map_err(|e| ServeError::Unavailable(e.to_string()))?;
        Ok(Response::new(TransferLeaderResponse {}))
    }

    async fn inject_fault(&self, req: Request<InjectFaultRequest>) -> Result<Response<InjectFaultResponse>, Status> {
        #[cfg(feature = "fault-injection")]
        {
            let skew = req.into_inner().clock_skew_ms;
            crate::clock::skew::set(skew);
            tracing::warn!(skew_ms = skew, "clock skew injected");
            Ok(Response::new(InjectFaultResponse {}))
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            let _ = req;
            Err(Status::unimplemented("this node was built without the fault-injection feature"))
        }
    }
}
