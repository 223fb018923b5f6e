//! `CacheService`: the public API. Validates input, then serves each request here or forwards
//! it (see [`crate::router`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use raftcache_core::{
    validate_ttl_ms, validate_value, CacheKey, Command, Condition, ReadResult, Response as Applied, RING_SEED,
    VNODES_PER_GROUP,
};
use raftcache_proto::cache::cache_service_server::CacheService;
use raftcache_proto::cache::{
    Consistency, DeleteRequest, DeleteResponse, GetRequest, GetResponse, GroupInfo, InvalidateRequest,
    InvalidateResponse, NodeInfo, PipelineRequest, SetRequest, SetResponse, TopologyRequest, TopologyResponse,
};
use raftcache_raft::{Group, ReadIndexError};
use tonic::{Request, Response, Status};

use crate::clock::wall_ms;
use crate::error::ServeError;
use crate::router::{client_seq, unpack, Hop, Local, Router};

/// Default bound of EVENTUAL reads that name none.
const DEFAULT_MAX_STALENESS_MS: u64 = 5_000;
/// How long a SESSION read waits for its replica to catch up before handing over to the leader.
const SESSION_CATCH_UP: Duration = Duration::from_secs(1);

/// The `CacheService` of one node.
#[derive(Clone)]
pub struct CacheServiceImpl {
    router: Arc<Router>,
    /// Becomes true when the node shuts down: pipelines then stop taking calls and end once the
    /// calls they took are answered (a server's graceful stop waits for every open stream).
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl CacheServiceImpl {
    /// Serves through `router` until `shutdown` becomes true.
    pub fn new(router: Arc<Router>, shutdown: tokio::sync::watch::Receiver<bool>) -> Self {
        Self { router, shutdown }
    }

    fn read_here(&self, g: &Group, key: &CacheKey) -> GetResponse {
        let d = g.data();
        let header = Some(self.router.header(g.id, d.applied_index()));
        match d.state.get(key, wall_ms()) {
            ReadResult::Found(e) => GetResponse {
                found: true,
                value: e.value,
                version: e.version,
                expires_at_ms: e.expires_at_ms.unwrap_or(0),
                header,
            },
            ReadResult::Missing { version } => {
                GetResponse { found: false, value: Default::default(), version, expires_at_ms: 0, header }
            }
        }
    }

    async fn wait_applied(&self, g: &Group, index: u64, deadline: Instant) -> Result<(), ServeError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        if g.wait_applied(index, wait).await {
            Ok(())
        } else {
            Err(ServeError::DeadlineExceeded(format!(
                "group {} replica on node {} did not apply index {index} within the deadline (applied {})",
                g.id,
                self.router.node_id,
                g.data().applied_index()
            )))
        }
    }

    /// The leader's read index, asked of the leader when this replica is a follower.
    async fn read_index(&self, g: &Group, deadline: Instant) -> Result<u64, ReadIndexError> {
        if g.is_leader() {
            return match tokio::time::timeout_at(deadline.into(), g.read_index()).await {
                Ok(r) => r,
                Err(_) => Err(ReadIndexError::Unavailable("leadership not confirmed within the deadline".into())),
            };
        }
        // Boxed: asking the leader is a gRPC call whose future, inline, would grow every read's.
        Box::pin(self.leaders_read_index(g, deadline)).await
    }

    /// The read index, asked of the group's leader (this replica is, or was, a follower).
    async fn leaders_read_index(&self, g: &Group, deadline: Instant) -> Result<u64, ReadIndexError> {
        let Some((leader, addr)) = self.router.wait_leader(g.id, deadline).await else {
            return Err(ReadIndexError::Unavailable(format!("group {} has no leader", g.id)));
        };
        if leader == self.router.node_id {
            return g.read_index().await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.router
            .peers
            .read_index(leader, &addr, g.id, remaining)
            .await
            .map_err(|s| ReadIndexError::Unavailable(format!("leader {leader}: {}", s.message())))
    }

    async fn forward_get(
        &self,
        group: u64,
        hop: Hop,
        msg: GetRequest,
        deadline: Instant,
    ) -> Result<Response<GetResponse>, Status> {
        self.router.forward(group, hop, msg, deadline, true, |mut c, r| async move { c.get(r).await }).await
    }
}

fn write_key(ns: &str, key: &bytes::Bytes) -> Result<CacheKey, ServeError> {
    Ok(CacheKey::new(ns, key.clone())?)
}

fn unexpected(r: &Applied) -> ServeError {
    ServeError::Internal(format!("unexpected state machine response {r:?}"))
}

/// The handlers, shared by the unary RPCs and the pipeline. `forwarded`: another node sent the
/// request (it must not be forwarded again).
impl CacheServiceImpl {
    pub(crate) async fn serve_get(
        &self,
        msg: GetRequest,
        forwarded: bool,
        deadline: Instant,
    ) -> Result<Response<GetResponse>, Status> {
        let key = write_key(&msg.namespace, &msg.key)?;
        let read = msg.read.unwrap_or_default();
        let level = Consistency::try_from(read.consistency).map_err(|_| {
            ServeError::InvalidArgument(format!(
                "unknown consistency level {}; expected 0 (LINEARIZABLE), 1 (FOLLOWER_LINEARIZABLE), 2 (SESSION) or 3 (EVENTUAL)",
                read.consistency
            ))
        })?;
        let group = self.router.group_for(&key);
        let msg = GetRequest { read: Some(read), ..msg };
        let local = self.router.local(group).cloned();

        match (level, local) {
            (Consistency::Linearizable, Some(g)) if self.router.bugs.stale_read => {
                Ok(Response::new(self.read_here(&g, &key)))
            }
            (Consistency::Linearizable, Some(g)) if g.is_leader() => {
                match tokio::time::timeout_at(deadline.into(), g.read_index()).await {
                    Ok(Ok(index)) => {
                        self.wait_applied(&g, index, deadline).await?;
                        Ok(Response::new(self.read_here(&g, &key)))
                    }
                    Ok(Err(ReadIndexError::NotLeader { leader })) if forwarded => {
                        Err(ServeError::NotLeader { group, leader }.into())
                    }
                    Ok(Err(ReadIndexError::NotLeader { .. })) => {
                        self.forward_get(group, Hop::Leader, msg, deadline).await
                    }
                    Ok(Err(ReadIndexError::Unavailable(e))) => Err(ServeError::Unavailable(e).into()),
                    Err(_) => {
                        Err(ServeError::DeadlineExceeded("leadership not confirmed within the deadline".into()).into())
                    }
                }
            }
            (Consistency::Linearizable, local) => {
                if forwarded {
                    let leader = match &local {
                        Some(_) => self.router.wait_leader(group, deadline).await,
                        None => self.router.leader_hint(group),
                    };
                    return Err(ServeError::NotLeader { group, leader }.into());
                }
                self.forward_get(group, Hop::Leader, msg, deadline).await
            }
            (Consistency::FollowerLinearizable, Some(g)) => match self.read_index(&g, deadline).await {
                Ok(index) => {
                    self.wait_applied(&g, index, deadline).await?;
                    Ok(Response::new(self.read_here(&g, &key)))
                }
                Err(ReadIndexError::NotLeader { leader }) => Err(ServeError::NotLeader { group, leader }.into()),
                Err(ReadIndexError::Unavailable(e)) => Err(ServeError::Unavailable(e).into()),
            },
            (Consistency::Session, Some(g)) => {
                let catch_up = deadline.min(Instant::now() + SESSION_CATCH_UP);
                if g.wait_applied(read.min_index, catch_up.saturating_duration_since(Instant::now())).await {
                    return Ok(Response::new(self.read_here(&g, &key)));
                }
                if forwarded || g.is_leader() {
                    return Err(ServeError::Unavailable(format!(
                        "replica of group {group} on node {} has applied {}, below the session's min_index {}",
                        self.router.node_id,
                        g.data().applied_index(),
                        read.min_index
                    ))
                    .into());
                }
                self.forward_get(group, Hop::Leader, msg, deadline).await
            }
            (Consistency::Eventual, Some(g)) => {
                let bound = if read.max_staleness_ms == 0 { DEFAULT_MAX_STALENESS_MS } else { read.max_staleness_ms };
                match g.staleness().map(|d| d.as_millis() as u64) {
                    Some(ms) if ms <= bound => Ok(Response::new(self.read_here(&g, &key))),
                    stale => Err(ServeError::Unavailable(format!(
                        "replica of group {group} on node {} {} — above max_staleness {bound} ms",
                        self.router.node_id,
                        match stale {
                            Some(ms) => format!("has applied state that is {ms} ms stale"),
                            None => "cannot vouch for its staleness (no quorum-confirmed leader heard from, or \
                                     still applying what the leader committed)"
                                .to_owned(),
                        }
                    ))
                    .into()),
                }
            }
            (_, None) if forwarded => {
                Err(ServeError::Unavailable(format!("node {} does not replicate group {group}", self.router.node_id))
                    .into())
            }
            (_, None) => self.forward_get(group, Hop::Replica, msg, deadline).await,
        }
    }

    pub(crate) async fn serve_set(
        &self,
        msg: SetRequest,
        forwarded: bool,
        deadline: Instant,
    ) -> Result<Response<SetResponse>, Status> {
        let key = write_key(&msg.namespace, &msg.key)?;
        validate_value(msg.value.len(), self.router.max_value_bytes).map_err(ServeError::from)?;
        if msg.ttl_ms != 0 {
            validate_ttl_ms(msg.ttl_ms).map_err(ServeError::from)?;
        }
        let cond = match (msg.if_absent, msg.if_version) {
            (true, Some(_)) => {
                return Err(ServeError::InvalidArgument("if_absent and if_version are mutually exclusive".into()).into())
            }
            (true, None) => Condition::IfAbsent,
            (false, Some(v)) => Condition::IfVersion(v),
            (false, None) => Condition::None,
        };
        let group = self.router.group_for(&key);
        let cmd = Command::Set { key, value: msg.value.clone(), ttl_ms: (msg.ttl_ms != 0).then_some(msg.ttl_ms), cond };
        match self.router.write_local(group, client_seq(msg.id), cmd, deadline).await {
            Local::Done(Ok((Applied::Written { version }, index))) => {
                Ok(Response::new(SetResponse { version, header: Some(self.router.header(group, index)) }))
            }
            Local::Done(Ok((Applied::Rejected(r), _))) => Err(ServeError::from(r).into()),
            Local::Done(Ok((other, _))) => Err(unexpected(&other).into()),
            Local::Done(Err(e)) => Err(e.into()),
            Local::NotHere(leader) if forwarded => Err(ServeError::NotLeader { group, leader }.into()),
            Local::NotHere(_) => {
                let idempotent = msg.id.is_some_and(|i| i.client_id != 0);
                self.router
                    .forward(group, Hop::Leader, msg, deadline, idempotent, |mut c, r| async move { c.set(r).await })
                    .await
            }
        }
    }

    pub(crate) async fn serve_delete(
        &self,
        msg: DeleteRequest,
        forwarded: bool,
        deadline: Instant,
    ) -> Result<Response<DeleteResponse>, Status> {
        let key = write_key(&msg.namespace, &msg.key)?;
        let group = self.router.group_for(&key);
        let cond = msg.if_version.map(Condition::IfVersion).unwrap_or_default();
        match self.router.write_local(group, client_seq(msg.id), Command::Delete { key, cond }, deadline).await {
            Local::Done(Ok((Applied::Deleted { version, existed }, index))) => {
                Ok(Response::new(DeleteResponse { version, existed, header: Some(self.router.header(group, index)) }))
            }
            Local::Done(Ok((Applied::Rejected(r), _))) => Err(ServeError::from(r).into()),
            Local::Done(Ok((other, _))) => Err(unexpected(&other).into()),
            Local::Done(Err(e)) => Err(e.into()),
            Local::NotHere(leader) if forwarded => Err(ServeError::NotLeader { group, leader }.into()),
            Local::NotHere(_) => {
                let idempotent = msg.id.is_some_and(|i| i.client_id != 0) || msg.if_version.is_none();
                self.router
                    .forward(group, Hop::Leader, msg, deadline, idempotent, |mut c, r| async move { c.delete(r).await })
                    .await
            }
        }
    }

    pub(crate) async fn serve_invalidate(
        &self,
        msg: InvalidateRequest,
        forwarded: bool,
        deadline: Instant,
    ) -> Result<Response<InvalidateResponse>, Status> {
        let key = write_key(&msg.namespace, &msg.key)?;
        let group = self.router.group_for(&key);
        let cmd = if self.router.bugs.no_fence {
            Command::Delete { key, cond: Condition::None }
        } else {
            Command::Invalidate { key }
        };
        match self.router.write_local(group, client_seq(msg.id), cmd, deadline).await {
            Local::Done(Ok((Applied::Invalidated { fence } | Applied::Deleted { version: fence, .. }, index))) => {
                Ok(Response::new(InvalidateResponse { fence, header: Some(self.router.header(group, index)) }))
            }
            Local::Done(Ok((Applied::Rejected(r), _))) => Err(ServeError::from(r).into()),
            Local::Done(Ok((other, _))) => Err(unexpected(&other).into()),
            Local::Done(Err(e)) => Err(e.into()),
            Local::NotHere(leader) if forwarded => Err(ServeError::NotLeader { group, leader }.into()),
            // An invalidation applied twice only moves the fence forward: always safe to retry.
            Local::NotHere(_) => {
                self.router
                    .forward(group, Hop::Leader, msg, deadline, true, |mut c, r| async move { c.invalidate(r).await })
                    .await
            }
        }
    }
}

#[tonic::async_trait]
impl CacheService for CacheServiceImpl {
    async fn get(&self, req: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let (msg, forwarded, deadline) = unpack(req);
        self.serve_get(msg, forwarded, deadline).await
    }

    async fn set(&self, req: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
        let (msg, forwarded, deadline) = unpack(req);
        self.serve_set(msg, forwarded, deadline).await
    }

    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let (msg, forwarded, deadline) = unpack(req);
        self.serve_delete(msg, forwarded, deadline).await
    }

    async fn invalidate(&self, req: Request<InvalidateRequest>) -> Result<Response<InvalidateResponse>, Status> {
        let (msg, forwarded, deadline) = unpack(req);
        self.serve_invalidate(msg, forwarded, deadline).await
    }

    type PipelineStream = crate::pipeline::ResultStream;

    async fn pipeline(
        &self,
        req: Request<tonic::Streaming<PipelineRequest>>,
    ) -> Result<Response<Self::PipelineStream>, Status> {
        Ok(Response::new(crate::pipeline::serve(self.clone(), req.into_inner(), self.shutdown.clone())))
    }

    async fn topology(&self, _req: Request<TopologyRequest>) -> Result<Response<TopologyResponse>, Status> {
        let t = &self.router.topology;
        let groups = t
            .groups
            .iter()
            .map(|(id, replicas)| {
                let (leader, term) = match self.router.local(*id) {
                    Some(g) => {
                        let m = g.raft.metrics().borrow().clone();
                        (m.current_leader.unwrap_or(0), m.current_term)
                    }
                    None => (self.router.leader_hint(*id).map(|l| l.0).unwrap_or(0), 0),
                };
                GroupInfo { id: *id, replicas: replicas.clone(), leader, term }
            })
            .collect();
        Ok(Response::new(TopologyResponse {
            epoch: t.epoch,
            nodes: t.nodes.iter().map(|(id, addr)| NodeInfo { id: *id, addr: addr.clone() }).collect(),
            groups,
            ring_seed: RING_SEED,
            vnodes_per_group: VNODES_PER_GROUP,
            answered_by: self.router.node_id,
        }))
    }
}
