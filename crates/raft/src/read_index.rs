//! ReadIndex with shared rounds.
//!
//! openraft's `get_read_log_id` sends one heartbeat round to the voters per call. Under load
//! that is one round per read. Here a read joins the queue; if no round is in flight it starts
//! one. A round takes every read queued before it started and answers them all with its result;
//! reads that arrive while a round is in flight wait for the next one (joining the running round
//! would be unsafe: its leadership check may have started before the read arrived).

use std::sync::{Arc, Mutex};

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::oneshot;

use crate::types::Raft;

/// Why a read index could not be obtained.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ReadIndexError {
    /// This node is not the leader; the leader's id and address if known.
    #[error("not the leader")]
    NotLeader {
        /// The leader, if this node knows it.
        leader: Option<(u64, String)>,
    },
    /// Leadership could not be confirmed (no quorum answered) or the group is shutting down.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

type Waiter = oneshot::Sender<Result<u64, ReadIndexError>>;

#[derive(Default)]
struct Queue {
    round_running: bool,
    waiting: Vec<Waiter>,
}

/// Coalesces ReadIndex requests of one group into shared heartbeat rounds.
#[derive(Default)]
pub struct ReadIndexBatcher {
    queue: Mutex<Queue>,
}

impl ReadIndexBatcher {
    /// The index this (leader) node must apply before serving a linearizable read.
    ///
    /// Cancel-safe: rounds run on their own task, so a caller that gives up (deadline) strands
    /// no other reader.
    pub async fn read_index(self: &Arc<Self>, raft: &Raft) -> Result<u64, ReadIndexError> {
        let (tx, rx) = oneshot::channel();
        let start_round = {
            let mut q = self.queue.lock().expect("read queue lock poisoned");
            q.waiting.push(tx);
            !std::mem::replace(&mut q.round_running, true)
        };
        if start_round {
            let (this, raft) = (self.clone(), raft.clone());
            tokio::spawn(async move { this.run_rounds(&raft).await });
        }
        rx.await.unwrap_or_else(|_| Err(ReadIndexError::Unavailable("read round abandoned".into())))
    }

    /// Runs rounds until the queue is empty.
    async fn run_rounds(&self, raft: &Raft) {
        loop {
            let batch = {
                let mut q = self.queue.lock().expect("read queue lock poisoned");
                if q.waiting.is_empty() {
                    q.round_running = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            let res = match raft.get_read_log_id().await {
                Ok((read_log_id, _applied)) => Ok(read_log_id.map(|l| l.index).unwrap_or(0)),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(ReadIndexError::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) })
                }
                Err(e) => Err(ReadIndexError::Unavailable(e.to_string())),
            };
            for w in batch {
                let _ = w.send(res.clone());
            }
        }
    }
}
