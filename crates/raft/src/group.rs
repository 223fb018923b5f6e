//! One Raft group hosted by this node.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use openraft::error::RaftError;
use openraft::ServerState;
use raftcache_core::{Request, Response, StateConfig};

use crate::config::{raft_config, Durability, RaftTuning};
use crate::error::{Error, Result};
use crate::freshness::{Freshness, QuorumClock};
use crate::log_store::WalLogStore;
use crate::network::{GroupNetworkFactory, PeerChannels, VoterSet};
use crate::proposer::Proposer;
use crate::read_index::{ReadIndexBatcher, ReadIndexError};
use crate::state_machine::{SmData, StateMachineStore};
use crate::types::{NodeInfo, Raft};
use crate::wal::Wal;

/// Why a write did not produce a state machine response.
#[derive(Clone, Debug, thiserror::Error)]
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

/// What every group replica of one node opens with: the node's id, stores, peers and settings.
pub struct GroupHost {
    /// This node's id.
    pub node_id: u64,
    /// The node's sled database (its identity; logs of older versions, moved into the WAL).
    pub db: sled::Db,
    /// Where the groups' snapshot files live.
    pub snap_dir: std::path::PathBuf,
    /// The node's write-ahead log, shared by every group.
    pub wal: Wal,
    /// Connections to the other nodes, shared by every group.
    pub peers: PeerChannels,
    /// Raft timing, reads and write batching.
    pub tuning: RaftTuning,
    /// How each group's state is sized and expires entries.
    pub state_config: StateConfig,
    /// When appends are acknowledged.
    pub durability: Durability,
}

/// A group replica on this node.
pub struct Group {
    /// The group id.
    pub id: u64,
    /// This node's id.
    pub node_id: u64,
    /// The group's Raft instance.
    pub raft: Raft,
    proposer: Proposer,
    data: Arc<RwLock<SmData>>,
    sm: StateMachineStore,
    log: WalLogStore,
    reads: Arc<ReadIndexBatcher>,
    /// Follower side of EVENTUAL staleness.
    freshness: Mutex<Freshness>,
    /// Leader side: followers' acknowledgements of this replica's appends.
    clock: Arc<QuorumClock>,
    voters: Arc<VoterSet>,
    /// The leader's read lease, when lease reads are on.
    read_lease: Option<Duration>,
}

impl Group {
    /// Opens group `id`'s stores on the node `node` describes and starts its Raft instance.
    /// Does not initialize membership.
    pub async fn open(id: u64, node: &GroupHost) -> Result<Arc<Self>> {
        let node_id = node.node_id;
        let tuning = &node.tuning;
        let log = WalLogStore::new(node.wal.clone(), id, node.durability).owned_by(node_id);
        let moved = log.import_sled(&node.db).await.map_err(Error::Storage)?;
        if moved > 0 {
            tracing::info!(group = id, entries = moved, "moved the group's log from sled into the WAL");
        }
        let sm = StateMachineStore::open(&node.db, &node.snap_dir, id, node.state_config.clone())
            .map_err(|e| Error::Storage(e.to_string()))?
            .fork_snapshots(tuning.fork_snapshots);
        let data = sm.data();
        let config = raft_config(id, tuning)?;
        let (clock, voters) = (Arc::<QuorumClock>::default(), Arc::<VoterSet>::default());
        let network = GroupNetworkFactory::new(id, node_id, node.peers.clone(), clock.clone(), voters.clone());
        let raft = Raft::new(node_id, config, network, log.clone(), sm.clone())
            .await
            .map_err(|e| Error::Storage(e.to_string()))?;
        let group = Arc::new(Self {
            id,
            node_id,
            proposer: Proposer::start(raft.clone(), tuning.write_linger),
            raft,
            data,
            sm,
            log,
            reads: Arc::default(),
            freshness: Mutex::default(),
            clock,
            voters,
            read_lease: tuning.lease_reads.then(|| tuning.read_lease()),
        });
        tokio::spawn(watch_metrics(group.clone()));
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

    /// Records an accepted AppendEntries: the leader's commit index `commit` was part of a state
    /// that a quorum confirmed at `confirmed_at` (see `freshness.rs`).
    pub fn heard_from_leader(&self, confirmed_at: Instant, commit: u64) {
        self.freshness.lock().expect("freshness lock poisoned").heard(confirmed_at, commit);
    }

    /// How stale this replica's applied state may be: every write acknowledged (by any leader)
    /// longer ago than this is applied here. `None` if that cannot be vouched for (never heard
    /// from a quorum-confirmed leader; a leader that has not applied an entry of its own term).
    pub fn staleness(&self) -> Option<Duration> {
        let now = Instant::now();
        let applied = self.data().applied_index();
        let (is_leader, term, applied_term) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            (m.state == ServerState::Leader, m.current_term, m.last_applied.map(|l| l.leader_id.term))
        };
        if is_leader {
            // A leader's acknowledged writes are applied before they are acknowledged; earlier
            // leaders' writes are applied once an entry of this term is.
            if applied_term != Some(term) {
                return None;
            }
            let voters = self.voters.read().expect("voter set lock poisoned");
            return self.clock.age(term, self.node_id, &voters, now);
        }
        let fresh = self.freshness.lock().expect("freshness lock poisoned").fresh_as_of(applied)?;
        Some(now.saturating_duration_since(fresh))
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

    /// Proposes `req` (possibly in one entry with other writes, see `proposer.rs`) and waits
    /// for it to apply. Returns its response and the index of the entry that carried it.
    pub async fn write(&self, req: Request) -> std::result::Result<(Response, u64), WriteError> {
        self.proposer.write(req).await
    }

    /// The read index: under the leader's lease if it holds, else confirmed by a (shared)
    /// heartbeat round. Leader only.
    pub async fn read_index(&self) -> std::result::Result<u64, ReadIndexError> {
        if let Some(index) = self.lease_read_index() {
            return Ok(index);
        }
        self.reads.read_index(&self.raft).await
    }

    /// The read index without a heartbeat round, if this replica leads under a valid lease.
    ///
    /// The commit index is read first, then the lease and the leadership are checked. If the
    /// lease (see [`QuorumClock::lease_start`]) still holds at that check, no other leader can
    /// have been elected up to that moment, so every write acknowledged before this read began
    /// was acknowledged by this leader, after it applied it — after openraft saved a commit index
    /// covering it (`save_committed` precedes apply). Requiring an applied entry of the current
    /// term also puts every earlier leader's acknowledged writes below that index, as ReadIndex
    /// does with its blank entry.
    fn lease_read_index(&self) -> Option<u64> {
        let lease = self.read_lease?;
        let leading_term = || {
            let m = self.raft.metrics();
            let m = m.borrow();
            let applied_term = m.last_applied.map(|l| l.leader_id.term);
            (m.state == ServerState::Leader && applied_term == Some(m.current_term)).then_some(m.current_term)
        };
        let term = leading_term()?;
        let committed = self.log.committed_index();
        let now = Instant::now();
        let start = {
            let voters = self.voters.read().expect("voter set lock poisoned");
            self.clock.lease_start(term, self.node_id, &voters, now)?
        };
        (now < start + lease && leading_term() == Some(term)).then_some(committed)
    }

    /// Waits until this replica has applied `index`; false on timeout.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        if self.data().applied_index() >= index {
            return true;
        }
        // Boxed, as the wait is the rare path and its future is over a kilobyte: inline, it would
        // grow every read's future, which is spawned, so moved and copied, once per call.
        Box::pin(self.raft.wait(Some(timeout)).applied_index_at_least(Some(index), "read")).await.is_ok()
    }
}

/// Follows the group's server metrics: keeps the voter set current and logs one line per role
/// change of this replica (elected, lost leadership). Server metrics change only with the vote,
/// the role, the leader or the membership; the full metrics are sent on every pass of
/// openraft's core loop (several per entry), and a task woken that often costs a worker wake-up
/// each time.
async fn watch_metrics(group: Arc<Group>) {
    let mut rx = group.raft.server_metrics();
    let mut last = (ServerState::Learner, None::<u64>, 0u64);
    let mut membership_seen = None;
    loop {
        let (state, leader, term) = {
            let m = rx.borrow_and_update();
            let membership = Some(*m.membership_config.log_id());
            if membership != membership_seen {
                membership_seen = membership;
                *group.voters.write().expect("voter set lock poisoned") =
                    m.membership_config.membership().voter_ids().collect();
            }
            (m.state, m.current_leader, m.vote.leader_id().get_term())
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
