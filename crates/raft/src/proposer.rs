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
//!
//! ## Linger
//!
//! With one entry in flight, callers that each wait for their write before sending the next (a
//! service's request handlers, the benchmark's clients) split into two halves: those in the
//! entry being committed and those queued behind it, so each entry carries about half of them.
//! When an entry's writers are answered, the slot is free but their next writes are still on the
//! way. So the leader waits for them, up to the group's `write_linger` after the answer, before
//! gathering the next entry: for as many new writes as the answered entry carried, or fewer when
//! fewer came back last time (twice as many as came back then, plus one — in a 90/10 read/write
//! mix most writers read next, and waiting for all of them would cost every write the whole
//! linger). Nor does it wait when as many writes as the answered entry carried were queued before
//! the answer (a full entry already: heavy load, or callers that do not wait for their writes), or
//! when the group had nothing in flight when a write arrived, so a lone writer never waits.
//!
//! 3 nodes, 3 groups, uniform keys, `raftcache-bench load --workload write` against a fresh
//! cluster per run, without and with a 2 ms linger: 64 clients 14,603 / 14,972 → 17,109 / 18,540
//! writes/s, 11.2 → 20.2–20.5 writes per entry, machine CPU per write 104 / 101 → 86 / 79 µs, p99
//! 12.3 / 11.7 → 11.2 / 9.2 ms; both builds at once (`scripts/ab.sh`, 4 pairs each): 64 clients
//! +8.8% to +12.5%, 16 clients +9.5% to +13.6%, 256 clients −2.0% to +1.3% (entries already carry
//! ~34 writes), a 90/10 read/write mix −1.4% to −0.4%. One client: unchanged. See
//! [`crate::RaftTuning::write_linger`].
//!
//! The full linger only pays while CPU is scarce. With CPU to spare, the commit of an entry
//! (~0.7 ms on the development machine on a fast hour) is shorter than the linger, which tokio's
//! 1 ms timer ticks stretch to 2–3 ms, and most lingers ran to that deadline: the wait, not the
//! commit, was most of a write's latency. So the linger waits no longer than the answered entry
//! took from proposal to answer unless the CPUs this node may use are at least 75% busy
//! (`machine_load.rs`: the machine's `/proc/stat` or the process's CPU time against its quota,
//! read at most every 100 ms while writes linger). Measured alone against the fixed linger
//! (`scripts/ab.sh --alone`, 2 pairs each): writes 64 clients +9.2% / +19.1%, 16 clients
//! +35.1% / +22.8%, 256 clients +5.4% / −4.1%, a 90/10 mix +1.9% / +8.0%. Beside a busy loop on
//! one core the machine reads 86–100% busy and the linger is the full one, as before.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::ClientWriteError;
use raftcache_core::{BatchItem, CacheKey, Command, Request, Response};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

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

/// The busy share (thousandths) of the CPUs this node may use (`machine_load.rs`) from which the
/// linger waits its full length.
const FULL_LINGER_BUSY_PERMILLE: u32 = 750;

/// "Every awaited writer came back" for the linger's count (see [`linger_for`]); the count's
/// arithmetic saturates.
const ALL: u64 = u64::MAX;

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
    answers: Arc<Answers>,
}

/// What the linger (see the module docs) knows of the writes sent and answered.
#[derive(Default)]
struct Answers {
    /// Writes queued for the proposer so far.
    sent: AtomicU64,
    /// The last main entry's answer, until the proposer takes it.
    last: Mutex<Option<Answered>>,
}

#[derive(Clone, Copy)]
struct Answered {
    at: Instant,
    /// How long the entry took from its proposal to its answer.
    took: Duration,
    /// Writes the entry carried.
    writes: u64,
    /// [`Answers::sent`] when they were answered.
    sent: u64,
}

impl Proposer {
    /// Starts proposing through `raft`, waiting up to `linger` after an entry is answered for
    /// its writers' next writes (zero: never). The task ends when the last clone is dropped.
    pub fn start(raft: Raft, linger: Duration) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let answers = Arc::<Answers>::default();
        tokio::spawn(run(raft, rx, answers.clone(), linger));
        Self { tx, answers }
    }

    /// Proposes `req` (alone or in a batch) and waits for it to apply.
    pub async fn write(&self, req: Request) -> WriteResult {
        let stopped = || WriteError::Unavailable("the group is shutting down".into());
        let (done, rx) = oneshot::channel();
        // Counted before it can be received, so that the linger never waits for a write it has.
        self.answers.sent.fetch_add(1, Ordering::Relaxed);
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

async fn run(raft: Raft, mut rx: mpsc::Receiver<Pending>, answers: Arc<Answers>, linger: Duration) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let held_back = Arc::new(Semaphore::new(MAX_HELD_BACK_IN_FLIGHT));
    let hasher = RandomState::new();
    // Writes taken from the channel and not proposed yet, in arrival order.
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    // How many new writes came while the last linger waited; `ALL` if every awaited one did.
    let mut came_back = ALL;
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
            let last = answers.last.lock().expect("answers lock").take();
            if let Some(last) = last {
                linger_for(&mut rx, &mut waiting, &answers, last, &mut came_back, linger).await;
            }
            while waiting.len() < MAX_WAITING {
                let Ok(p) = rx.try_recv() else { break };
                waiting.push_back(p);
            }
        }
        // Only what the linger will read is noted.
        let answered = (main && !linger.is_zero()).then(|| answers.clone());
        propose(&raft, gather(&mut waiting, &hasher), slot, answered).await;
        // What is still waiting was held back; it goes now, while the extra slots last.
        while !waiting.is_empty() {
            let Ok(slot) = held_back.clone().try_acquire_owned() else { break };
            propose(&raft, gather(&mut waiting, &hasher), slot, None).await;
        }
    }
}

/// Waits until `last.at + linger` for the answered writers' next writes (see the module docs):
/// until `min(last.writes, 2 * came_back + 1)` writes were sent since the answer. Then sets
/// `came_back` to how many were, or to "all" if all that were awaited came. An answer whose
/// linger is already over (the group was idle since), or behind which as many writes as it
/// carried were already queued, changes nothing.
async fn linger_for(
    rx: &mut mpsc::Receiver<Pending>,
    waiting: &mut VecDeque<Pending>,
    answers: &Answers,
    last: Answered,
    came_back: &mut u64,
    linger: Duration,
) {
    let deadline = last.at + linger_now(linger, last.took, crate::machine_load::busy_permille());
    let want = last.writes.min(came_back.saturating_mul(2).saturating_add(1));
    let since = || answers.sent.load(Ordering::Relaxed).wrapping_sub(last.sent);
    // Writes queued before the answer: as many as the answered entry carried make a full entry
    // already (heavy load, or callers that do not wait for their writes).
    let queued_before = ((waiting.len() + rx.len()) as u64).saturating_sub(since());
    if Instant::now() >= deadline || queued_before >= last.writes {
        return;
    }
    while since() < want && waiting.len() < MAX_WAITING {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(p)) => waiting.push_back(p),
            // The deadline, or the group is stopping (the caller's next receive sees that).
            _ => {
                *came_back = since();
                return;
            }
        }
    }
    *came_back = ALL;
}

/// How long to linger after an entry that took `took` from proposal to answer, with the CPUs this
/// node may use `busy` thousandths busy. Batching saves CPU and costs latency: while there is CPU
/// to spare the linger waits no longer than the entry itself took, and its full `linger` only when
/// CPU is scarce (or the share is unknown).
fn linger_now(linger: Duration, took: Duration, busy: Option<u32>) -> Duration {
    match busy {
        Some(b) if b < FULL_LINGER_BUSY_PERMILLE => linger.min(took),
        _ => linger,
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
    // Back in front, in order; `waiting` keeps its allocation for the next writes.
    while let Some(p) = skipped.pop_back() {
        waiting.push_front(p);
    }
    batch
}

/// Hands `batch` to openraft as one entry before returning, so entries reach the log in the
/// order they were gathered (and writes of one key in the order they arrived); a task then
/// answers each writer once the entry applies, and frees `slot`.
async fn propose(raft: &Raft, mut batch: Vec<Pending>, slot: OwnedSemaphorePermit, answers: Option<Arc<Answers>>) {
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
    let proposed = Instant::now();
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
        // Counted before the writers hear back, so that none of their next writes counts as sent
        // before the answer.
        let noted = answers.map(|a| (a.sent.load(Ordering::Relaxed), batch.len() as u64, a));
        answer(batch, result);
        if let Some((sent, writes, a)) = noted {
            let at = Instant::now();
            *a.last.lock().expect("answers lock") = Some(Answered { at, took: at - proposed, writes, sent });
        }
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

    /// A one-node group with `tuning`, elected; the directory holds its files.
    async fn one_node_group(tuning: crate::RaftTuning) -> (tempfile::TempDir, Arc<crate::Group>) {
        use std::collections::BTreeMap;
        use std::time::{Duration, Instant};

        use raftcache_core::StateConfig;

        use crate::{Durability, Group, GroupHost, NodeInfo, PeerChannels, Wal, WalOptions};

        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new().path(dir.path().join("db")).open().expect("sled");
        let wal = Wal::open(&dir.path().join("wal"), WalOptions::default()).expect("wal");
        let host = GroupHost {
            node_id: 1,
            db,
            snap_dir: dir.path().join("snapshots"),
            wal,
            peers: PeerChannels::default(),
            tuning,
            state_config: StateConfig::default(),
            durability: Durability::Fsync,
        };
        let group = Group::open(1, &host).await.expect("open the group");
        group.initialize(BTreeMap::from([(1, NodeInfo { addr: "127.0.0.1:1".into() })])).await.expect("initialize");
        let give_up = Instant::now() + Duration::from_secs(20);
        while !group.is_leader() {
            assert!(Instant::now() < give_up, "a one-node group elected no leader in 20 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (dir, group)
    }

    /// Writes of one key queued together each need an entry of their own, and those entries go
    /// out beside each other (`MAX_IN_FLIGHT` plus the held-back ones); they must still reach the
    /// log in the order they were queued.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_of_one_key_apply_in_the_order_they_were_queued() {
        let (_dir, group) = one_node_group(crate::RaftTuning::default()).await;

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

    /// Writers that each send their next write when the last is answered share one entry per
    /// round once the leader lingers for them, instead of splitting between two; and a lone
    /// writer is never held back by the linger.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answered_writers_next_writes_share_an_entry_and_a_lone_writer_does_not_wait() {
        use std::time::{Duration, Instant};

        // Long enough that no round outlasts it on a loaded machine. When the first round splits,
        // the last entry waits all of it for the writers that finished an entry earlier.
        let linger = Duration::from_secs(5);
        let (_dir, group) = one_node_group(crate::RaftTuning { write_linger: linger, ..Default::default() }).await;

        let started = Instant::now();
        for i in 0..5 {
            let r = group.write(Request { now_ms: 1, client: None, cmd: set("lone", i) }).await;
            r.unwrap_or_else(|e| panic!("lone write {i}: {e}"));
        }
        assert!(started.elapsed() < linger / 2, "a lone writer waited for the linger: {:?}", started.elapsed());

        let (writers, rounds) = (8, 6);
        let writer = |w: usize| {
            let group = group.clone();
            async move {
                let mut indexes = Vec::new();
                for round in 0..rounds {
                    let key = format!("w{w}");
                    let r = group.write(Request { now_ms: 1, client: None, cmd: set(&key, round + 1) }).await;
                    indexes.push(r.unwrap_or_else(|e| panic!("writer {w} round {round}: {e}")).1);
                }
                indexes
            }
        };
        let all: Vec<Vec<u64>> = futures::future::join_all((0..writers).map(writer)).await;
        // The first round may split (the writers start one by one, and the proposer may take the
        // first write before the others come), which shifts the writers of the two parts by an
        // entry for good; apart from that, every entry carries a write of every writer. Without
        // the linger each round splits in two.
        let entries: std::collections::BTreeSet<u64> = all.iter().flatten().copied().collect();
        assert!(entries.len() <= rounds + 1, "{} entries for {rounds} rounds: {all:?}", entries.len());
    }

    #[test]
    fn the_linger_is_cut_to_the_entrys_own_time_only_while_cpu_is_spare() {
        let (linger, took) = (Duration::from_millis(2), Duration::from_micros(700));
        assert_eq!(linger_now(linger, took, Some(600)), took, "spare CPU: no longer than the entry took");
        assert_eq!(linger_now(linger, Duration::from_millis(5), Some(600)), linger, "never longer than the setting");
        assert_eq!(linger_now(linger, took, Some(FULL_LINGER_BUSY_PERMILLE)), linger, "scarce CPU: the full linger");
        assert_eq!(linger_now(linger, took, None), linger, "unknown: the full linger");
    }

    #[tokio::test(start_paused = true)]
    async fn the_linger_waits_for_the_answered_count_or_its_deadline() {
        let linger = Duration::from_millis(2);
        let answers = Answers::default();
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let send = |n: usize| {
            for _ in 0..n {
                let (done, _) = oneshot::channel();
                tx.try_send(Pending { req: Request { now_ms: 1, client: None, cmd: Command::Noop }, done })
                    .expect("room");
                answers.sent.fetch_add(1, Ordering::Relaxed);
            }
        };
        let answered =
            |writes| Answered { at: Instant::now(), took: linger, writes, sent: answers.sent.load(Ordering::Relaxed) };
        let mut waiting = VecDeque::new();

        // All 3 came back: no deadline reached, and next time all are awaited again.
        let last = answered(3);
        send(3);
        let mut came_back = ALL;
        linger_for(&mut rx, &mut waiting, &answers, last, &mut came_back, linger).await;
        // Taken from the queue or left in it for the caller's drain.
        let queued = |waiting: &VecDeque<Pending>, rx: &mpsc::Receiver<Pending>| waiting.len() + rx.len();
        assert_eq!((queued(&waiting, &rx), came_back), (3, ALL));
        assert_eq!(Instant::now(), last.at, "waited although every awaited write had come");

        // 1 of 4 came back: the deadline ends the wait, and next time 2 × 1 + 1 are awaited.
        while rx.try_recv().is_ok() {}
        let last = answered(4);
        send(1);
        linger_for(&mut rx, &mut waiting, &answers, last, &mut came_back, linger).await;
        assert_eq!((queued(&waiting, &rx), came_back), (1, 1));
        assert_eq!(Instant::now(), last.at + linger);
        let last = answered(8);
        send(3);
        linger_for(&mut rx, &mut waiting, &answers, last, &mut came_back, linger).await;
        assert_eq!((queued(&waiting, &rx), came_back), (4, ALL), "3 of 8 were enough after 1 came back");
        assert_eq!(Instant::now(), last.at);

        // As many writes queued before the answer as it carried: no wait, and no count.
        let last = answered(2);
        came_back = 2;
        linger_for(&mut rx, &mut waiting, &answers, last, &mut came_back, linger).await;
        assert_eq!((queued(&waiting, &rx), came_back), (4, 2));
        assert_eq!(Instant::now(), last.at);
        waiting.clear();
        while rx.try_recv().is_ok() {}

        // An answer whose linger is over (the group sat idle since) neither waits nor counts.
        let last = answered(5);
        tokio::time::advance(linger * 3).await;
        came_back = 2;
        linger_for(&mut rx, &mut waiting, &answers, last, &mut came_back, linger).await;
        assert_eq!(came_back, 2);
        assert_eq!(Instant::now(), last.at + linger * 3);
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
