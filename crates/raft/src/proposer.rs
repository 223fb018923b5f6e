//! Group commit of client writes: writes that reach a leader while its earlier proposals are
//! still being committed go into the log together, as one [`Command::Batch`] entry.
//!
//! A log entry costs the same fixed work whatever it carries: an append and a flush on every
//! replica, a turn of openraft's core loop, a slot in an AppendEntries, an apply and a response
//! channel. Under load that fixed work, not the bytes, bounds writes per second, so the proposer
//! keeps at most [`MAX_IN_FLIGHT`] entries of a group uncommitted and puts whatever queued
//! meanwhile into the next one. An idle group proposes a lone write at once, as its own entry,
//! so batching adds no latency when there is nothing to batch with.
//!
//! A batch never holds two writes of the same key (each write of a key gets a version of its
//! own, later than the one before), nor an internal command (`Expire`, `Noop`), which goes alone.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use raftcache_core::{BatchItem, CacheKey, Command, Request, Response};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::group::WriteError;
use crate::types::Raft;

/// Entries of one group proposed by this leader and not yet applied, at most.
pub const MAX_IN_FLIGHT: usize = 2;
/// Writes in one batch entry, at most.
pub const MAX_BATCH_WRITES: usize = 1024;
/// Key and value bytes in one batch entry, at most (a single larger write goes alone).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Writes waiting for a batch; beyond this, writers wait for room.
const QUEUE: usize = 4096;

/// What a write resolves to: the state machine's response and the log index it applied at.
pub type WriteResult = Result<(Response, u64), WriteError>;

struct Pending {
    req: Request,
    done: oneshot::Sender<WriteResult>,
}

/// The write path of one group replica. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts proposing through `raft`. The task ends when the last clone is dropped.
    pub fn start(raft: Raft) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(raft, rx));
        Self { tx }
    }

    /// Proposes `req` (alone or in a batch) and waits for it to apply.
    pub async fn write(&self, req: Request) -> WriteResult {
        let stopped = || WriteError::Unavailable("the group is shutting down".into());
        let (done, rx) = oneshot::channel();
        self.tx.send(Pending { req, done }).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// The key a client write touches; `None` for commands that never share an entry.
fn batch_key(cmd: &Command) -> Option<&CacheKey> {
    match cmd {
        Command::Set { key, .. } | Command::Delete { key, .. } | Command::Invalidate { key } => Some(key),
        Command::Expire { .. } | Command::Noop | Command::Batch(_) => None,
    }
}

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let hasher = RandomState::new();
    let mut held: Option<Pending> = None;
    loop {
        let first = match held.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        // Wait for room before gathering: what queues meanwhile joins this entry.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut batch = vec![first];
        if let Some(key) = batch_key(&batch[0].req.cmd) {
            // Keys are told apart by hash; a collision only ends the batch early.
            let mut keys = HashSet::from([hasher.hash_one(key)]);
            let mut bytes = batch[0].req.cmd.approx_bytes();
            while batch.len() < MAX_BATCH_WRITES {
                let Ok(next) = rx.try_recv() else { break };
                let size = next.req.cmd.approx_bytes();
                let fits = batch_key(&next.req.cmd)
                    .is_some_and(|k| bytes + size <= MAX_BATCH_BYTES && keys.insert(hasher.hash_one(k)));
                if !fits {
                    held = Some(next);
                    break;
                }
                bytes += size;
                batch.push(next);
            }
        }
        // Writers that gave up (deadline passed, client gone) are not proposed: they were told
        // the write may or may not apply, and not applying it is the cheaper of the two.
        batch.retain(|p| !p.done.is_closed());
        if batch.is_empty() {
            continue;
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, batch).await;
            drop(slot);
        });
    }
}

/// Proposes `batch` as one entry and answers each writer.
async fn commit(raft: &Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let p = batch.pop().expect("one write");
        let _ = p.done.send(propose(raft, p.req).await);
        return;
    }
    let now_ms = batch.iter().map(|p| p.req.now_ms).max().unwrap_or(0);
    let items = batch
        .iter_mut()
        .map(|p| BatchItem { client: p.req.client, cmd: std::mem::replace(&mut p.req.cmd, Command::Noop) })
        .collect();
    match propose(raft, Request { now_ms, client: None, cmd: Command::Batch(items) }).await {
        Ok((Response::Batch(responses), index)) if responses.len() == batch.len() => {
            for (p, r) in batch.into_iter().zip(responses) {
                let _ = p.done.send(Ok((r, index)));
            }
        }
        Ok((other, index)) => {
            // Apply answers a batch with one response per write; anything else is a bug.
            let e = WriteError::Unavailable(format!("batch entry {index} applied as {other:?}"));
            tracing::error!(error = %e, "batch write");
            for p in batch {
                let _ = p.done.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for p in batch {
                let _ = p.done.send(Err(e.clone()));
            }
        }
    }
}

async fn propose(raft: &Raft, req: Request) -> WriteResult {
    match raft.client_write(req).await {
        Ok(r) => Ok((r.data, r.log_id.index)),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(WriteError::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) })
        }
        Err(e) => Err(WriteError::Unavailable(e.to_string())),
    }
}
