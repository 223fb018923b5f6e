//! One Raft group hosted by this node.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use raftcache_core::{Request, Response, StateConfig};

use crate::config::{raft_config, Durability, RaftTuning};
use crate::error::{Error, Result};
use crate::flusher::Flusher;
use crate::log_store::SledLogStore;
use crate::network::{GroupNetworkFactory, PeerChannels};
use crate::read_index::{ReadIndexBatcher, ReadIndexError};
use crate::state_machine::{SmData, StateMachineStore};
use crate::types::{NodeInfo, Raft};

/// Why a write did not produce a state machine response.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Not the leader; the leader if known.
    #[error("not the leader")]
    NotLeader {
        /// Leader id and address.
        leader: Option<(u64, String)>,
    },
    /// The group cannot commit right now (shutting down, fatal store error).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A group replica on this node.
pub struct Group {
    /// The group id.
    pub id: u64,
    /// This node's id.
    pub node_id: u64,
    /// The group's Raft instance.
    pub raft: Raft,
    data: Arc<RwLock<SmData>>,
    sm: StateMachineStore,
    log: SledLogStore,
    reads: Arc<ReadIndexBatcher>,
    last_leader_contact: Mutex<Option<Instant>>,
}

impl Group {
    /// Opens the group's stores and starts its Raft instance. Does not initialize membership.
    pub async fn open(
        id: u64,
        node_id: u64,
        db: &sled::Db,
        flusher: Flusher,
        peers: PeerChannels,
        tuning: &RaftTuning,
        state_config: StateConfig,
        durability: Durability,
    ) -> Result<Arc<Self>> {
        let log = SledLogStore::open(db, flusher.clone(), id, durability)?;
        let sm = StateMachineStore::open(db, flusher, id, state_config).map_err(|e| Error::Storage(e.to_string()))?;
        let data = sm.data();
        let config = raft_config(id, tuning)?;
        let raft = Raft::new(node_id, config, GroupNetworkFactory::new(id, peers), log.clone(), sm.clone())
            .await
            .map_err(|e| Error::Storage(e.to_string()))?;
        let group = Arc::new(Self {
            id,
            node_id,
            raft,
            data,
            sm,
            log,
            reads: Arc::default(),
            last_leader_contact: Mutex::new(None),
        });
        tokio::spawn(log_role_changes(group.clone()));
        Ok(group)
    }

    /// Whether this replica was initialized before (it has a vote or log entries).
    pub fn has_state(&self) -> bool {
        self.log.has_state()
    }

    /// Forms the group with `members` (id → address). Safe to call on every member with the same
    /// set; a no-op if the group already has state.
    pub async fn initialize(&self, members: BTreeMap<u64, NodeInfo>) -> Result<()> {
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(Error::Config(e.to_string())),
        }
    }

    /// The applied state, read-locked. Never hold it across an `.await`.
    pub fn data(&self) -> RwLockReadGuard<'_, SmData> {
        self.data.read().expect("state machine lock poisoned")
    }

    /// Index of the stored snapshot (0 if none).
    pub fn snapshot_index(&self) -> u64 {
        self.sm.snapshot_index()
    }

    /// Records that the current leader just reached this replica.
    pub fn touch_leader(&self) {
        *self.last_leader_contact.lock().expect("leader contact lock poisoned") = Some(Instant::now());
    }

    /// How long since this replica last heard from a leader: 0 on a leader whose quorum answered
    /// recently (its last quorum acknowledgement otherwise); `None` if never.
    pub fn millis_since_leader(&self) -> Option<u64> {
        let m = self.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            return m.millis_since_quorum_ack;
        }
        self.last_leader_contact.lock().expect("leader contact lock poisoned").map(|t| t.elapsed().as_millis() as u64)
    }

    /// The leader this replica knows of, with its address.
    pub fn leader(&self) -> Option<(u64, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id).map(|n| n.addr.clone()).unwrap_or_default();
        Some((id, addr))
    }

    /// Whether this replica is the leader.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Proposes `req` and waits for it to apply.
    pub async fn write(&self, req: Request) -> std::result::Result<(Response, u64), WriteError> {
        match self.raft.client_write(req).await {
            Ok(r) => Ok((r.data, r.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(WriteError::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) })
            }
            Err(e) => Err(WriteError::Unavailable(e.to_string())),
        }
    }

    /// The read index, confirmed by a (shared) heartbeat round. Leader only.
    pub async fn read_index(&self) -> std::result::Result<u64, ReadIndexError> {
        self.reads.read_index(&self.raft).await
    }

    /// Waits until this replica has applied `index`; false on timeout.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        if self.data().applied_index() >= index {
            return true;
        }
        self.raft.wait(Some(timeout)).applied_index_at_least(Some(index), "read").await.is_ok()
    }
}

/// One log line per role change of this replica: elected, lost leadership.
async fn log_role_changes(group: Arc<Group>) {
    let mut rx = group.raft.metrics();
    let mut last = (ServerState::Learner, None::<u64>, 0u64);
    loop {
        let (state, leader, term) = {
            let m = rx.borrow_and_update();
            (m.state, m.current_leader, m.current_term)
        };
        if state != last.0 || leader != last.1 {
            if state == ServerState::Leader {
                tracing::info!(group = group.id, term, "elected leader");
            } else if last.0 == ServerState::Leader && state != ServerState::Shutdown {
                tracing::info!(group = group.id, term, new_leader = ?leader, "lost leadership");
            } else if leader != last.1 && leader.is_some() && leader != Some(group.node_id) {
                tracing::debug!(group = group.id, term, leader = ?leader, "following");
            }
            last = (state, leader, term);
        }
        if state == ServerState::Shutdown || rx.changed().await.is_err() {
            return;
        }
    }
}
