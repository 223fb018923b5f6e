//! Proposal batching: concurrent writes to one group share log entries.
//!
//! Every log entry costs the same fixed work whatever it carries: an openraft message, a log
//! append and flush wait on every replica, an AppendEntries slot, an apply and a response. Under
//! load most of a write's cost is that fixed part, so writes queue here and a few runners (at
//! most [`MAX_IN_FLIGHT`] proposals per group) each take everything queued, up to the limits, and
//! propose it as one [`Command::Batch`] entry. A lone write is proposed as it is, so an idle
//! group adds no latency.
//!
//! A batch never holds two requests on the same key (they would share a version) and never an
//! `Expire` sweep or `Noop` (they go alone). Requests taken by different runners are concurrent
//! anyway, so the order in which their entries reach the log is free.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use openraft::error::{ClientWriteError, RaftError};
use raftcache_core::{Command, Request, Response};
use tokio::sync::oneshot;

use crate::group::WriteError;
use crate::types::Raft;

/// Proposals of one group in flight at once.
pub const MAX_IN_FLIGHT: usize = 2;
/// Requests in one entry.
pub const MAX_BATCH: usize = 256;
/// Payload bytes in one entry (a single larger request still goes alone).
pub const MAX_BATCH_BYTES: usize = 1 << 20;

type Reply = oneshot::Sender<Result<(Response, u64), WriteError>>;

struct Pending {
    req: Request,
    bytes: usize,
    reply: Reply,
}

#[derive(Default)]
struct Queue {
    runners: usize,
    waiting: VecDeque<Pending>,
}

/// Batches the writes of one group.
#[derive(Default)]
pub struct Proposer {
    queue: Mutex<Queue>,
}

impl Proposer {
    /// Proposes `req` (possibly in a batch) and waits for its own response and entry index.
    ///
    /// Cancel-safe: proposals run on their own tasks.
    pub async fn write(self: &Arc<Self>, raft: &Raft, req: Request) -> Result<(Response, u64), WriteError> {
        let (reply, rx) = oneshot::channel();
        let bytes = req.cmd.approx_bytes();
        let start_runner = {
            let mut q = self.queue.lock().expect("proposal queue lock poisoned");
            q.waiting.push_back(Pending { req, bytes, reply });
            let start = q.runners < MAX_IN_FLIGHT;
            q.runners += usize::from(start);
            start
        };
        if start_runner {
            let (this, raft) = (self.clone(), raft.clone());
            tokio::spawn(async move { this.run(&raft).await });
        }
        rx.await.unwrap_or_else(|_| Err(WriteError::Unavailable("proposal abandoned".into())))
    }

    /// Proposes batches until the queue is empty.
    async fn run(&self, raft: &Raft) {
        loop {
            let batch = {
                let mut q = self.queue.lock().expect("proposal queue lock poisoned");
                if q.waiting.is_empty() {
                    q.runners -= 1;
                    return;
                }
                take_batch(&mut q.waiting)
            };
            propose(raft, batch).await;
        }
    }
}

/// Takes the longest prefix of `waiting` that can share one entry (at least one request).
fn take_batch(waiting: &mut VecDeque<Pending>) -> Vec<Pending> {
    let first = waiting.pop_front().expect("take_batch on an empty queue");
    let Some(first_key) = first.req.cmd.key().cloned() else { return vec![first] };
    let mut keys = HashSet::from([first_key]);
    let mut bytes = first.bytes;
    let mut batch = vec![first];
    while let Some(next) = waiting.front() {
        let Some(key) = next.req.cmd.key() else { break };
        if batch.len() == MAX_BATCH || bytes + next.bytes > MAX_BATCH_BYTES || keys.contains(key) {
            break;
        }
        keys.insert(key.clone());
        bytes += next.bytes;
        batch.push(waiting.pop_front().expect("front exists"));
    }
    batch
}

async fn propose(raft: &Raft, mut batch: Vec<Pending>) {
    if batch.len() == 1 {
        let p = batch.pop().expect("one request");
        let _ = p.reply.send(client_write(raft, p.req).await);
        return;
    }
    let now_ms = batch.iter().map(|p| p.req.now_ms).max().unwrap_or(0);
    let (reqs, replies): (Vec<Request>, Vec<Reply>) = batch.into_iter().map(|p| (p.req, p.reply)).unzip();
    let n = reqs.len();
    match client_write(raft, Request { now_ms, client: None, cmd: Command::Batch(reqs) }).await {
        Ok((Response::Batch(responses), index)) if responses.len() == n => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok((response, index)));
            }
        }
        Ok((other, _)) => {
            let e = WriteError::Unavailable(format!("a batch of {n} writes applied as {other:?}"));
            replies.into_iter().for_each(|r| drop(r.send(Err(e.clone()))));
        }
        Err(e) => replies.into_iter().for_each(|r| drop(r.send(Err(e.clone())))),
    }
}

async fn client_write(raft: &Raft, req: Request) -> Result<(Response, u64), WriteError> {
    match raft.client_write(req).await {
        Ok(r) => Ok((r.data, r.log_id.index)),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(WriteError::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) })
        }
        Err(e) => Err(WriteError::Unavailable(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raftcache_core::{CacheKey, Condition};

    use super::*;

    fn set(key: &str, value_len: usize) -> Pending {
        let key = CacheKey::new("t", Bytes::copy_from_slice(key.as_bytes())).unwrap();
        let req = Request {
            now_ms: 1,
            client: None,
            cmd: Command::Set { key, value: vec![0u8; value_len].into(), ttl_ms: None, cond: Condition::None },
        };
        Pending { bytes: req.cmd.approx_bytes(), req, reply: oneshot::channel().0 }
    }

    fn noop() -> Pending {
        Pending { req: Request { now_ms: 1, client: None, cmd: Command::Noop }, bytes: 0, reply: oneshot::channel().0 }
    }

    fn keys(batch: &[Pending]) -> Vec<String> {
        batch.iter().map(|p| String::from_utf8_lossy(&p.req.cmd.key().unwrap().key).into_owned()).collect()
    }

    #[test]
    fn a_batch_stops_before_a_repeated_key() {
        let mut q: VecDeque<Pending> = ["a", "b", "a", "c"].iter().map(|k| set(k, 10)).collect();
        assert_eq!(keys(&take_batch(&mut q)), ["a", "b"]);
        assert_eq!(keys(&take_batch(&mut q)), ["a", "c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn sweeps_and_noops_go_alone() {
        let mut q: VecDeque<Pending> = VecDeque::from([set("a", 1), noop(), set("b", 1)]);
        assert_eq!(keys(&take_batch(&mut q)), ["a"]);
        assert_eq!(take_batch(&mut q).len(), 1, "the noop alone");
        assert_eq!(keys(&take_batch(&mut q)), ["b"]);
    }

    #[test]
    fn batches_respect_count_and_byte_limits() {
        let mut q: VecDeque<Pending> = (0..MAX_BATCH + 5).map(|i| set(&format!("k{i}"), 1)).collect();
        assert_eq!(take_batch(&mut q).len(), MAX_BATCH);
        assert_eq!(take_batch(&mut q).len(), 5);

        let half = MAX_BATCH_BYTES / 2;
        let mut q: VecDeque<Pending> = VecDeque::from([set("x", half), set("y", half), set("z", 2 * MAX_BATCH_BYTES)]);
        assert_eq!(keys(&take_batch(&mut q)), ["x"], "x and y together exceed the byte limit");
        assert_eq!(keys(&take_batch(&mut q)), ["y"]);
        assert_eq!(keys(&take_batch(&mut q)), ["z"], "an oversized request still goes, alone");
    }
}
