//! Group commit of client writes: writes that reach a leader while its earlier proposals are
//! still being committed go into the log together, as one [`Command::Batch`] entry.
//!
//! A log entry costs the same fixed work whatever it carries: an append and a flush on every
//! replica, a turn of openraft's core loop, a slot in an AppendEntries, an apply and a response
//! channel. Under load that fixed work, not the bytes, bounds writes per second, so the proposer
//! keeps at most [`MAX_IN_FLIGHT`] entry of a group uncommitted and puts whatever queued
//! meanwhile into the next one. An idle group proposes a lone write at once, as its own entry,
//! so batching adds no latency when there is nothing to batch with.
//!
//! A batch never holds two writes of the same key (each write of a key gets a version of its
//! own, later than the one before), nor an internal command (`Expire`, `Noop`), which goes alone.
//! So a hot key needs an entry per write of it. Writes held back that way do not wait for the
//! [`MAX_IN_FLIGHT`] slot behind entries they cannot share: they go in up to
//! [`MAX_HELD_BACK_IN_FLIGHT`] more entries, at once or as soon as one of those is free. That
//! halved the p99 of Zipf(0.99) writes (3 nodes, 3 groups, 64 clients, 10,000 keys: 48–61 ms
//! before, 24–29 ms after, with writes/s up ~9%) and left uniform writes, which rarely share a
//! key within an entry, as they were (within noise).
//!
//! Entries are handed to openraft in the order they are gathered, before the next is gathered,
//! so writes of one key reach the log in the order they arrived.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use openraft::error::ClientWriteError;
use raftcache_core::{BatchItem, CacheKey, Command, Request, Response};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::group::WriteError;
use crate::types::Raft;

/// Entries of one group proposed by this leader and not yet applied, at most, besides those of
/// held-back writes. Fewer make bigger batches, so less fixed work per write. 3 nodes, 3 groups,
/// 10,000 keys, fresh cluster per run, interleaved (`raftcache-bench load --workload write`):
/// - 1 against 3 in flight, 64 clients, uniform keys: 14,542 / 14,617 / 14,405 / 13,549 against
///   13,038 / 12,943 / 11,535 / 12,347 writes/s; machine CPU per write 114–122 against 128–142 µs;
///   p99 8.9–10.9 against 10.8–19.9 ms. 16 clients 4,792 / 5,444 / 5,558 against 4,350 / 4,718 /
///   4,680 (the first two before the change below). 1 client, 1 group, 16 groups and 256
///   clients: the same within the noise.
/// - Zipf(0.99) keys, 64 clients: 13,215 / 13,000 / 10,308 against 11,744 / 12,922 / 12,107,
///   p99 11.9–17.9 against 12.3–14.7 ms. (Before held-back writes could take a freed extra slot
///   without waiting for this one, 1 in flight doubled the Zipf p99.)
///
/// On this CPU-bound 2-core machine the other groups' entries keep it busy while one waits; where
/// commit latency is the network's or the disk's rather than the CPU's, more in flight would
/// shorten a write's wait at moderate load. Earlier, at 87bf303: 2 in flight 7,923 / 4,246
/// writes/s uniform / Zipf; 3: 7,730 / 5,839; 4: 7,050 / 6,258.
pub const MAX_IN_FLIGHT: usize = 1;
/// Entries of held-back writes (a key already in the entry just proposed) in flight beside
/// those, at most. Zipf(0.99) writes, same shape as above, p99 / p99.9 ms: none 48–61 / 69–155;
/// 4: 24–29 / 52–73; 8: 27 / 50–53 (within the noise of 4).
pub const MAX_HELD_BACK_IN_FLIGHT: usize = 4;
/// Writes in one batch entry, at most.
pub const MAX_BATCH_WRITES: usize = 1024;
/// Key and value bytes in one batch entry, at most (a single larger write goes alone).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Writes queued for the proposer; beyond this, writers wait for room.
const QUEUE: usize = 4096;
/// Writes the proposer holds while it picks the next entry's (it reads no more from the queue
/// while it holds this many).
const MAX_WAITING: usize = 2 * MAX_BATCH_WRITES;

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
        // Queued at once unless the queue is full. Only then is the send awaited, boxed: its
        // future is several hundred bytes, which would grow every served write's future (spawned,
        // so moved and copied, once per call).
        match self.tx.try_send(Pending { req, done }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(p)) => Box::pin(self.tx.send(p)).await.map_err(|_| stopped())?,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(stopped()),
        }
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
    let held_back = Arc::new(Semaphore::new(MAX_HELD_BACK_IN_FLIGHT));
    let hasher = RandomState::new();
    // Writes taken from the channel and not proposed yet, in arrival order.
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    loop {
        // What an earlier gather left waiting was held back (a key already in that entry, or its
        // size).
        let held = !waiting.is_empty();
        if !held {
            match rx.recv().await {
                Some(p) => waiting.push_back(p),
                None => return,
            }
        }
        // Held-back writes go in one of the extra entries as soon as one is free; they would
        // otherwise wait for a slot behind entries they cannot share. Everything else waits for
        // a slot, and what queues meanwhile joins its entry.
        let slot = if held {
            tokio::select! {
                biased;
                s = slots.clone().acquire_owned() => s.map(|s| (s, true)),
                s = held_back.clone().acquire_owned() => s.map(|s| (s, false)),
            }
        } else {
            slots.clone().acquire_owned().await.map(|s| (s, true))
        };
        let Ok((slot, main)) = slot else { return };
        if main {
            while waiting.len() < MAX_WAITING {
                let Ok(p) = rx.try_recv() else { break };
                waiting.push_back(p);
            }
        }
        propose(&raft, gather(&mut waiting, &hasher), slot).await;
        // What is still waiting was held back; it goes now, while the extra slots last.
        while !waiting.is_empty() {
            let Ok(slot) = held_back.clone().try_acquire_owned() else { break };
            propose(&raft, gather(&mut waiting, &hasher), slot).await;
        }
    }
}

/// Takes the next entry's writes from `waiting`: the first write, then every later one that can
/// share its entry, skipping (and leaving in order for the next entry) a write of a key already
/// taken or skipped, one that would overflow the entry, and internal commands. So a hot key
/// costs an entry per write of it, not an entry per write of every key queued behind it, and
/// writes of one key still reach the log in the order they arrived.
///
/// Writers that gave up (deadline passed, client gone) are dropped unproposed: they were told
/// the write may or may not apply, and not applying it is the cheaper of the two.
fn gather(waiting: &mut VecDeque<Pending>, hasher: &RandomState) -> Vec<Pending> {
    waiting.retain(|p| !p.done.is_closed());
    let Some(first) = waiting.pop_front() else { return Vec::new() };
    let Some(key) = batch_key(&first.req.cmd) else { return vec![first] };
    // Keys are told apart by hash; a collision only keeps a write for a later entry.
    let mut keys = HashSet::from([hasher.hash_one(key)]);
    let mut bytes = first.req.cmd.approx_bytes();
    let mut batch = vec![first];
    let mut skipped = VecDeque::new();
    while let Some(next) = waiting.pop_front() {
        if batch.len() >= MAX_BATCH_WRITES {
            waiting.push_front(next);
            break;
        }
        let size = next.req.cmd.approx_bytes();
        match batch_key(&next.req.cmd) {
            Some(k) if keys.insert(hasher.hash_one(k)) && bytes + size <= MAX_BATCH_BYTES => {
                bytes += size;
                batch.push(next);
            }
            // A key already taken or skipped, an overflow (whose key is now taken, so that later
            // writes of it wait too), or an internal command.
            _ => skipped.push_back(next),
        }
    }
    skipped.append(waiting);
    *waiting = skipped;
    batch
}

/// Hands `batch` to openraft as one entry before returning, so entries reach the log in the
/// order they were gathered (and writes of one key in the order they arrived); a task then
/// answers each writer once the entry applies, and frees `slot`.
async fn propose(raft: &Raft, mut batch: Vec<Pending>, slot: OwnedSemaphorePermit) {
    let take = |p: &mut Pending| std::mem::replace(&mut p.req.cmd, Command::Noop);
    let req = match batch.as_mut_slice() {
        [] => return,
        [one] => Request { now_ms: one.req.now_ms, client: one.req.client, cmd: take(one) },
        many => Request {
            now_ms: many.iter().map(|p| p.req.now_ms).max().unwrap_or(0),
            client: None,
            cmd: Command::Batch(many.iter_mut().map(|p| BatchItem { client: p.req.client, cmd: take(p) }).collect()),
        },
    };
    let submitted = raft.client_write_ff(req).await;
    tokio::spawn(async move {
        let result = match submitted {
            Ok(rx) => match rx.await {
                Ok(Ok(r)) => Ok((r.data, r.log_id.index)),
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                    Err(WriteError::NotLeader { leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)) })
                }
                Ok(Err(e)) => Err(WriteError::Unavailable(e.to_string())),
                Err(_) => Err(WriteError::Unavailable("the group stopped before the write was decided".into())),
            },
            Err(fatal) => Err(WriteError::Unavailable(fatal.to_string())),
        };
        answer(batch, result);
        drop(slot);
    });
}

/// Answers the writers of one entry with what it applied as.
fn answer(mut batch: Vec<Pending>, result: WriteResult) {
    if batch.len() == 1 {
        let _ = batch.pop().expect("one write").done.send(result);
        return;
    }
    match result {
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raftcache_core::Condition;

    use super::*;

    fn set(key: &str, value_len: usize) -> Command {
        Command::Set {
            key: CacheKey::new("t", Bytes::copy_from_slice(key.as_bytes())).expect("valid key"),
            value: Bytes::from(vec![b'v'; value_len]),
            ttl_ms: None,
            cond: Condition::None,
        }
    }

    /// Queued writes, with the receivers that keep them wanted.
    fn queue(cmds: Vec<Command>) -> (VecDeque<Pending>, Vec<oneshot::Receiver<WriteResult>>) {
        cmds.into_iter()
            .map(|cmd| {
                let (done, rx) = oneshot::channel();
                (Pending { req: Request { now_ms: 1, client: None, cmd }, done }, rx)
            })
            .unzip()
    }

    fn names(ps: &[Pending]) -> Vec<String> {
        ps.iter()
            .map(|p| match &p.req.cmd {
                Command::Set { key, value, .. } => format!("{}:{}", String::from_utf8_lossy(&key.key), value.len()),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_batch_skips_repeated_keys_and_keeps_their_order() {
        let (mut waiting, _rx) = queue(vec![set("a", 1), set("b", 2), set("a", 3), set("c", 4), set("a", 5)]);
        let hasher = RandomState::new();
        let batch = gather(&mut waiting, &hasher);
        assert_eq!(names(&batch), ["a:1", "b:2", "c:4"]);
        assert_eq!(names(waiting.make_contiguous()), ["a:3", "a:5"]);
        assert_eq!(names(&gather(&mut waiting, &hasher)), ["a:3"]);
        assert_eq!(names(&gather(&mut waiting, &hasher)), ["a:5"]);
        assert!(waiting.is_empty());
    }

    #[test]
    fn an_overflowing_write_holds_back_later_writes_of_its_key() {
        let big = MAX_BATCH_BYTES - 10;
        let (mut waiting, _rx) = queue(vec![set("a", 100), set("b", big), set("c", 1), set("b", 1)]);
        let hasher = RandomState::new();
        assert_eq!(names(&gather(&mut waiting, &hasher)), ["a:100", "c:1"]);
        assert_eq!(names(&gather(&mut waiting, &hasher)), [format!("b:{big}")]);
        assert_eq!(names(&gather(&mut waiting, &hasher)), ["b:1"]);
    }

    #[test]
    fn internal_commands_go_alone_and_gone_writers_are_dropped() {
        let (mut waiting, mut rx) = queue(vec![Command::Noop, set("a", 1), Command::Noop, set("b", 1), set("c", 1)]);
        rx.remove(3); // the writer of b gave up
        let hasher = RandomState::new();
        assert_eq!(names(&gather(&mut waiting, &hasher)), ["Noop"]);
        assert_eq!(names(&gather(&mut waiting, &hasher)), ["a:1", "c:1"]);
        assert_eq!(names(&gather(&mut waiting, &hasher)), ["Noop"]);
        assert!(gather(&mut waiting, &hasher).is_empty());
    }

    /// Writes of one key queued together each need an entry of their own, and those entries go
    /// out beside each other (`MAX_IN_FLIGHT` plus the held-back ones); they must still reach the
    /// log in the order they were queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_of_one_key_apply_in_the_order_they_were_queued() {
        use std::collections::BTreeMap;
        use std::time::{Duration, Instant};

        use raftcache_core::StateConfig;

        use crate::{Durability, Group, NodeInfo, PeerChannels, RaftTuning, Wal, WalOptions};

        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new().path(dir.path().join("db")).open().expect("sled");
        let wal = Wal::open(&dir.path().join("wal"), WalOptions::default()).expect("wal");
        let tuning = RaftTuning::default();
        let group = Group::open(
            1,
            1,
            &db,
            &dir.path().join("snapshots"),
            wal,
            PeerChannels::default(),
            &tuning,
            StateConfig::default(),
            Durability::Fsync,
        )
        .await
        .expect("open the group");
        group.initialize(BTreeMap::from([(1, NodeInfo { addr: "127.0.0.1:1".into() })])).await.expect("initialize");
        let give_up = Instant::now() + Duration::from_secs(20);
        while !group.is_leader() {
            assert!(Instant::now() < give_up, "a one-node group elected no leader in 20 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // join_all polls the writes in order, so they queue in that order.
        let n = 64;
        let writes = (0..n).map(|i| group.write(Request { now_ms: 1, client: None, cmd: set("hot", i + 1) }));
        let indexes: Vec<u64> = futures::future::join_all(writes)
            .await
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.unwrap_or_else(|e| panic!("write {i}: {e}")).1)
            .collect();
        for (i, pair) in indexes.windows(2).enumerate() {
            assert!(
                pair[0] < pair[1],
                "write {i} applied at {} but write {} at {}: {indexes:?}",
                pair[0],
                i + 1,
                pair[1]
            );
        }
    }

    #[test]
    fn a_batch_stops_at_its_write_limit() {
        let cmds = (0..MAX_BATCH_WRITES + 5).map(|i| set(&format!("k{i}"), 1)).collect();
        let (mut waiting, _rx) = queue(cmds);
        let hasher = RandomState::new();
        assert_eq!(gather(&mut waiting, &hasher).len(), MAX_BATCH_WRITES);
        assert_eq!(names(&gather(&mut waiting, &hasher))[0], format!("k{MAX_BATCH_WRITES}:1"));
    }
}
