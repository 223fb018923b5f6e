//! Model tests of the cache state machine.
//!
//! Random logs of Set/Delete/Invalidate/Expire/Noop — with conditions, TTLs, client retries and
//! leader clocks that jump forwards and backwards — are applied to [`CacheState`] and to a
//! reference model written as plainly as possible (hash maps, full scans, no indexes). Every
//! response and every read must agree. The same logs then check determinism: replicas fed one
//! log have equal digests, and a snapshot taken anywhere restores the same state and behaviour.
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use proptest::prelude::*;
use raftcache_core::limits::{SESSION_IDLE_MS, SESSION_WINDOW};
use raftcache_core::{
    BatchItem, CacheKey, CacheState, ClientSeq, Command, Condition, Entry, ReadResult, Rejection, Request, Response,
    StateConfig,
};

// ---------------------------------------------------------------------------------------------
// The reference model.

#[derive(Default)]
struct ModelSession {
    last_index: u64,
    last_ms: u64,
    results: BTreeMap<u64, Response>,
    floor: u64,
}

struct Model {
    retention: u64,
    max_sessions: usize,
    now: u64,
    /// key → (value, version, expires_at)
    entries: HashMap<CacheKey, (Bytes, u64, Option<u64>)>,
    /// key → (fence version, set at)
    fences: HashMap<CacheKey, (u64, u64)>,
    sessions: HashMap<u64, ModelSession>,
}

impl Model {
    fn new(config: &StateConfig) -> Self {
        Self {
            retention: config.fence_retention_ms,
            max_sessions: config.max_sessions,
            now: 0,
            entries: HashMap::new(),
            fences: HashMap::new(),
            sessions: HashMap::new(),
        }
    }

    fn live_at(&self, key: &CacheKey, at: u64) -> Option<(Bytes, u64, Option<u64>)> {
        self.entries.get(key).filter(|(_, _, exp)| exp.is_none_or(|e| e > at)).cloned()
    }

    fn fence_at(&self, key: &CacheKey, at: u64) -> Option<u64> {
        self.fences.get(key).filter(|(_, set_at)| at < set_at.saturating_add(self.retention)).map(|(v, _)| *v)
    }

    fn get(&self, key: &CacheKey, now_ms: u64) -> ReadResult {
        let at = now_ms.max(self.now);
        match self.live_at(key, at) {
            Some((value, version, expires_at_ms)) => ReadResult::Found(Entry { value, version, expires_at_ms }),
            None => ReadResult::Missing { version: self.fence_at(key, at).unwrap_or(0) },
        }
    }

    fn expired_keys(&self, now_ms: u64, limit: usize) -> Vec<CacheKey> {
        let at = now_ms.max(self.now);
        let mut expired: Vec<(u64, CacheKey)> = self
            .entries
            .iter()
            .filter_map(|(k, (_, _, exp))| exp.filter(|e| *e <= at).map(|e| (e, k.clone())))
            .collect();
        expired.sort();
        expired.into_iter().take(limit).map(|(_, k)| k).collect()
    }

    fn apply(&mut self, index: u64, req: &Request) -> Response {
        self.now = self.now.max(req.now_ms);
        let now = self.now;
        let retention = self.retention;
        self.fences.retain(|_, (_, at)| now < at.saturating_add(retention));
        self.sessions.retain(|_, s| s.last_ms + SESSION_IDLE_MS > now);
        match &req.cmd {
            Command::Batch(items) => {
                Response::Batch(items.iter().map(|i| self.apply_write(index, i.client, &i.cmd)).collect())
            }
            cmd => self.apply_write(index, req.client, cmd),
        }
    }

    fn apply_write(&mut self, index: u64, client: Option<ClientSeq>, cmd: &Command) -> Response {
        let now = self.now;
        let Some(cs) = client else { return self.execute(index, cmd) };
        if let Some(s) = self.sessions.get_mut(&cs.client_id) {
            if let Some(r) = s.results.get(&cs.seq).cloned() {
                s.last_index = index;
                s.last_ms = now;
                return r;
            }
            if cs.seq <= s.floor {
                return Response::Rejected(Rejection::DuplicateTooOld);
            }
        }
        let r = self.execute(index, cmd);
        let s = self.sessions.entry(cs.client_id).or_default();
        s.results.insert(cs.seq, r.clone());
        while s.results.len() > SESSION_WINDOW {
            let min = *s.results.keys().min().unwrap();
            s.results.remove(&min);
            s.floor = s.floor.max(min);
        }
        s.last_index = index;
        s.last_ms = now;
        while self.sessions.len() > self.max_sessions {
            // Clients of one batch entry share a last index; the lowest client id goes first.
            let oldest = *self.sessions.iter().min_by_key(|(id, s)| (s.last_index, **id)).unwrap().0;
            self.sessions.remove(&oldest);
        }
        r
    }

    fn check(&self, key: &CacheKey, cond: Condition) -> Option<Rejection> {
        let live = self.live_at(key, self.now).map(|(_, v, _)| v);
        let fence = self.fence_at(key, self.now);
        match cond {
            Condition::None => None,
            Condition::IfAbsent => live.map(|current_version| Rejection::ConditionFailed { current_version }),
            Condition::IfVersion(v) => match fence {
                Some(f) if f > v => Some(Rejection::Fenced { fence: f }),
                _ => {
                    let current_version = live.or(fence).unwrap_or(0);
                    (current_version != v).then_some(Rejection::ConditionFailed { current_version })
                }
            },
        }
    }

    fn execute(&mut self, index: u64, cmd: &Command) -> Response {
        let now = self.now;
        match cmd {
            Command::Set { key, value, ttl_ms, cond } => {
                if let Some(r) = self.check(key, *cond) {
                    return Response::Rejected(r);
                }
                self.entries.insert(key.clone(), (value.clone(), index, ttl_ms.map(|t| now + t)));
                Response::Written { version: index }
            }
            Command::Delete { key, cond } => {
                if let Some(r) = self.check(key, *cond) {
                    return Response::Rejected(r);
                }
                let existed = self.live_at(key, now).is_some();
                self.entries.remove(key);
                Response::Deleted { version: index, existed }
            }
            Command::Invalidate { key } => {
                self.entries.remove(key);
                self.fences.insert(key.clone(), (index, now));
                Response::Invalidated { fence: index }
            }
            Command::Expire { as_of_ms, keys } => {
                let cutoff = (*as_of_ms).min(now);
                let mut removed = 0;
                for k in keys {
                    if self.entries.get(k).is_some_and(|(_, _, exp)| exp.is_some_and(|e| e <= cutoff)) {
                        self.entries.remove(k);
                        removed += 1;
                    }
                }
                Response::Expired { removed }
            }
            Command::Noop => Response::Blank,
            Command::Batch(_) => Response::Batch(Vec::new()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Random logs. Steps are abstract ("the key's current version", "retry the write 2 back") and
// resolved against the model while the log is built, so conditions hit often enough to matter.

const KEYS: usize = 5;

fn key(i: usize) -> CacheKey {
    let ns = ["users", "orders"][i % 2];
    CacheKey::new(ns, format!("k{i}")).unwrap()
}

#[derive(Clone, Debug)]
enum Clock {
    /// The leader's clock moved forward a little.
    Forward(u64),
    /// A new leader whose clock is behind.
    Behind(u64),
    /// A long pause: fences and sessions age out.
    Jump(u64),
}

#[derive(Clone, Debug)]
enum CondPick {
    None,
    IfAbsent,
    /// The version a read would report right now.
    IfCurrent,
    /// An older version than the current one.
    IfStale(u64),
    IfExact(u64),
}

#[derive(Clone, Debug)]
enum Op {
    Set {
        key: usize,
        value: u8,
        ttl_ms: Option<u64>,
        cond: CondPick,
    },
    Delete {
        key: usize,
        cond: CondPick,
    },
    Invalidate {
        key: usize,
    },
    /// `as_of = now + skew - 1000`, so sweeps from the past and the future both happen.
    Expire {
        skew: u64,
        keys: Vec<usize>,
    },
    /// A sweep as a leader builds it, from `expired_keys`.
    Sweep {
        ahead: u64,
        limit: usize,
    },
    Noop,
}

#[derive(Clone, Copy, Debug)]
enum Writer {
    Internal,
    /// A new write of this client.
    Client(u64),
    /// A retry of one of this client's earlier writes, `back` writes ago.
    Retry(u64, u64),
}

#[derive(Clone, Debug)]
struct Step {
    clock: Clock,
    index_gap: u64,
    writer: Writer,
    op: Op,
    /// More writes proposed in the same entry, as a leader batches them (only client-style
    /// writes on keys no other write of the batch touches are kept).
    batched: Vec<(Writer, Op)>,
}

fn clock() -> impl Strategy<Value = Clock> {
    prop_oneof![
        8 => (0..400u64).prop_map(Clock::Forward),
        1 => (0..3_000u64).prop_map(Clock::Behind),
        1 => (0..SESSION_IDLE_MS + 60_000).prop_map(Clock::Jump),
    ]
}

fn cond() -> impl Strategy<Value = CondPick> {
    prop_oneof![
        3 => Just(CondPick::None),
        2 => Just(CondPick::IfAbsent),
        3 => Just(CondPick::IfCurrent),
        2 => (1..5u64).prop_map(CondPick::IfStale),
        1 => (0..40u64).prop_map(CondPick::IfExact),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS;
    prop_oneof![
        6 => (k.clone(), any::<u8>(), prop::option::of(1..2_000u64), cond())
            .prop_map(|(key, value, ttl_ms, cond)| Op::Set { key, value, ttl_ms, cond }),
        2 => (k.clone(), cond()).prop_map(|(key, cond)| Op::Delete { key, cond }),
        2 => k.clone().prop_map(|key| Op::Invalidate { key }),
        1 => (0..2_000u64, prop::collection::vec(k, 0..4)).prop_map(|(skew, keys)| Op::Expire { skew, keys }),
        1 => (0..1_500u64, 0..4usize).prop_map(|(ahead, limit)| Op::Sweep { ahead, limit }),
        1 => Just(Op::Noop),
    ]
}

fn writer() -> impl Strategy<Value = Writer> {
    prop_oneof![
        3 => Just(Writer::Internal),
        4 => (1..6u64).prop_map(Writer::Client),
        2 => (1..6u64, 0..4u64).prop_map(|(c, back)| Writer::Retry(c, back)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let batched = prop_oneof![3 => Just(Vec::new()), 1 => prop::collection::vec((writer(), op()), 1..4)];
    (clock(), prop_oneof![4 => Just(0u64), 1 => 1..3u64], writer(), op(), batched)
        .prop_map(|(clock, index_gap, writer, op, batched)| Step { clock, index_gap, writer, op, batched })
}

fn config() -> impl Strategy<Value = StateConfig> {
    (1..3_000u64, 1..5usize)
        .prop_map(|(fence_retention_ms, max_sessions)| StateConfig { fence_retention_ms, max_sessions })
}

// ---------------------------------------------------------------------------------------------
// Running a log against model and state together.

/// The key a write touches if a leader may batch it (the proposer's rule).
fn batch_key(cmd: &Command) -> Option<&CacheKey> {
    match cmd {
        Command::Set { key, .. } | Command::Delete { key, .. } | Command::Invalidate { key } => Some(key),
        _ => None,
    }
}

struct Harness {
    model: Model,
    state: CacheState,
    index: u64,
    /// The leader clock the next stamp is derived from (may be behind the state's now).
    clock: u64,
    /// Per client: the commands it sent, by seq (seq = position + 1).
    sent: HashMap<u64, Vec<Command>>,
    log: Vec<(u64, Request)>,
    responses: Vec<Response>,
}

impl Harness {
    fn new(config: StateConfig) -> Self {
        Self {
            model: Model::new(&config),
            state: CacheState::new(config),
            index: 0,
            clock: 1_000_000,
            sent: HashMap::new(),
            log: Vec::new(),
            responses: Vec::new(),
        }
    }

    fn version_now(&self, key: &CacheKey) -> u64 {
        match self.model.get(key, 0) {
            ReadResult::Found(e) => e.version,
            ReadResult::Missing { version } => version,
        }
    }

    fn condition(&self, key: &CacheKey, pick: &CondPick) -> Condition {
        match pick {
            CondPick::None => Condition::None,
            CondPick::IfAbsent => Condition::IfAbsent,
            CondPick::IfCurrent => Condition::IfVersion(self.version_now(key)),
            CondPick::IfStale(back) => Condition::IfVersion(self.version_now(key).saturating_sub(*back)),
            CondPick::IfExact(v) => Condition::IfVersion(*v),
        }
    }

    fn command(&self, op: &Op, now: u64) -> Command {
        match op {
            Op::Set { key: k, value, ttl_ms, cond } => Command::Set {
                key: key(*k),
                value: Bytes::from(vec![*value; 1 + (*value as usize % 3)]),
                ttl_ms: *ttl_ms,
                cond: self.condition(&key(*k), cond),
            },
            Op::Delete { key: k, cond } => Command::Delete { key: key(*k), cond: self.condition(&key(*k), cond) },
            Op::Invalidate { key: k } => Command::Invalidate { key: key(*k) },
            Op::Expire { skew, keys } => Command::Expire {
                as_of_ms: (now + skew).saturating_sub(1_000),
                keys: keys.iter().map(|k| key(*k)).collect(),
            },
            Op::Sweep { ahead, limit } => {
                Command::Expire { as_of_ms: now + ahead, keys: self.state.expired_keys(now + ahead, *limit) }
            }
            Op::Noop => Command::Noop,
        }
    }

    /// What `writer` sends for `op`: a new write, a retry, or an internal command.
    fn write(&mut self, writer: Writer, op: &Op, now_ms: u64) -> (Option<ClientSeq>, Command) {
        match writer {
            Writer::Internal => (None, self.command(op, now_ms)),
            Writer::Client(c) => {
                let cmd = self.command(op, now_ms);
                let sent = self.sent.entry(c).or_default();
                sent.push(cmd.clone());
                (Some(ClientSeq { client_id: c, seq: sent.len() as u64 }), cmd)
            }
            Writer::Retry(c, back) => match self.sent.get(&c) {
                Some(sent) if (back as usize) < sent.len() => {
                    let seq = sent.len() - back as usize;
                    (Some(ClientSeq { client_id: c, seq: seq as u64 }), sent[seq - 1].clone())
                }
                _ => (None, self.command(op, now_ms)),
            },
        }
    }

    fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let now_ms = match step.clock {
            Clock::Forward(d) => {
                self.clock += d;
                self.clock
            }
            Clock::Behind(d) => self.clock.saturating_sub(d),
            Clock::Jump(d) => {
                self.clock += d;
                self.clock
            }
        };
        let (client, cmd) = self.write(step.writer, &step.op, now_ms);
        let mut req = Request { now_ms, client, cmd };
        if !step.batched.is_empty() {
            let mut items = vec![BatchItem { client, cmd: req.cmd }];
            for (writer, op) in &step.batched {
                let (client, cmd) = self.write(*writer, op, now_ms);
                items.push(BatchItem { client, cmd });
            }
            let mut keys = std::collections::HashSet::new();
            items.retain(|i| batch_key(&i.cmd).is_some_and(|k| keys.insert(k.clone())));
            req = match items.len() {
                0 => Request { now_ms, client: None, cmd: Command::Noop },
                1 => {
                    let i = items.pop().unwrap();
                    Request { now_ms, client: i.client, cmd: i.cmd }
                }
                _ => Request { now_ms, client: None, cmd: Command::Batch(items) },
            };
        }
        self.index += 1 + step.index_gap;

        let expected = self.model.apply(self.index, &req);
        let got = self.state.apply(self.index, &req);
        prop_assert_eq!(&got, &expected, "index {} request {:?}", self.index, req);
        self.check_reads()?;
        self.log.push((self.index, req));
        self.responses.push(got);
        Ok(())
    }

    fn check_reads(&self) -> Result<(), TestCaseError> {
        let now = self.model.now;
        prop_assert_eq!(self.state.now_ms(), now);
        prop_assert_eq!(self.state.last_index(), self.index);
        prop_assert_eq!(self.state.len(), self.model.entries.len());
        prop_assert_eq!(self.state.fence_count(), self.model.fences.len());
        prop_assert_eq!(self.state.session_count(), self.model.sessions.len());
        for k in (0..KEYS).map(key) {
            for at in [0, now, now + 1, now + 500, now + 2_500] {
                prop_assert_eq!(self.state.get(&k, at), self.model.get(&k, at), "get {} at {}", k, at);
            }
        }
        for (at, limit) in [(now, 10), (now + 700, 2), (now + 3_000, 10)] {
            prop_assert_eq!(self.state.expired_keys(at, limit), self.model.expired_keys(at, limit));
        }
        Ok(())
    }
}

fn run_log(config: StateConfig, steps: &[Step]) -> Result<Harness, TestCaseError> {
    let mut h = Harness::new(config);
    for s in steps {
        h.run(s)?;
    }
    Ok(h)
}

fn replay(config: StateConfig, log: &[(u64, Request)]) -> (CacheState, Vec<Response>) {
    let mut s = CacheState::new(config);
    let responses = log.iter().map(|(i, r)| s.apply(*i, r)).collect();
    (s, responses)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn state_matches_model(config in config(), steps in prop::collection::vec(step(), 1..150)) {
        let h = run_log(config, &steps)?;
        let restored = CacheState::from_bytes(&h.state.to_bytes()).unwrap();
        prop_assert_eq!(restored.digest(), h.state.digest());
    }

    #[test]
    fn replicas_fed_one_log_agree(config in config(), steps in prop::collection::vec(step(), 1..100)) {
        let h = run_log(config.clone(), &steps)?;
        let (a, ra) = replay(config.clone(), &h.log);
        let (b, rb) = replay(config, &h.log);
        prop_assert_eq!(&ra, &h.responses);
        prop_assert_eq!(&ra, &rb);
        prop_assert_eq!(a.digest(), h.state.digest());
        prop_assert_eq!(b.digest(), h.state.digest());
        prop_assert_eq!(a.to_bytes(), b.to_bytes());
        prop_assert_eq!(a.mem_bytes(), b.mem_bytes());
    }

    #[test]
    fn snapshot_anywhere_restores_state_and_behaviour(
        config in config(),
        steps in prop::collection::vec(step(), 1..100),
        cut in any::<prop::sample::Index>(),
    ) {
        let h = run_log(config.clone(), &steps)?;
        let cut = cut.index(h.log.len() + 1);
        let (prefix, _) = replay(config, &h.log[..cut]);
        let mut restored = CacheState::from_bytes(&prefix.to_bytes()).unwrap();
        prop_assert_eq!(restored.digest(), prefix.digest());
        prop_assert_eq!(restored.mem_bytes(), prefix.mem_bytes());
        for ((index, req), expected) in h.log[cut..].iter().zip(&h.responses[cut..]) {
            prop_assert_eq!(&restored.apply(*index, req), expected);
        }
        prop_assert_eq!(restored.digest(), h.state.digest());
    }

    #[test]
    fn a_different_log_gives_a_different_digest(
        config in config(),
        steps in prop::collection::vec(step(), 1..60),
        extra in step(),
    ) {
        let mut h = run_log(config, &steps)?;
        let before = h.state.digest();
        // Every entry advances the last index at least, so every entry changes the digest.
        h.run(&extra)?;
        prop_assert_ne!(h.state.digest(), before);
    }

    #[test]
    fn from_bytes_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = CacheState::from_bytes(&bytes);
    }

    #[test]
    fn from_bytes_never_panics_on_a_damaged_snapshot(
        steps in prop::collection::vec(step(), 1..40),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let h = run_log(StateConfig::default(), &steps)?;
        let mut bytes = h.state.to_bytes();
        for (at, byte) in flips {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        if let Ok(s) = CacheState::from_bytes(&bytes) {
            // Whatever decodes is a consistent state: it re-encodes to itself.
            prop_assert_eq!(CacheState::from_bytes(&s.to_bytes()).unwrap().digest(), s.digest());
        }
    }
}

#[test]
fn digest_differs_for_different_states() {
    let cfg = StateConfig::default();
    let set = |k: usize, v: &'static [u8]| Request {
        now_ms: 10,
        client: None,
        cmd: Command::Set { key: key(k), value: Bytes::from_static(v), ttl_ms: None, cond: Condition::None },
    };
    let (a, _) = replay(cfg.clone(), &[(1, set(0, b"x"))]);
    let (b, _) = replay(cfg.clone(), &[(1, set(0, b"y"))]);
    let (c, _) = replay(cfg.clone(), &[(1, set(1, b"x"))]);
    let (d, _) = replay(StateConfig { max_sessions: 7, ..cfg }, &[(1, set(0, b"x"))]);
    let digests = [a.digest(), b.digest(), c.digest(), d.digest(), CacheState::default().digest()];
    for i in 0..digests.len() {
        for j in 0..i {
            assert_ne!(digests[i], digests[j], "states {i} and {j}");
        }
    }
}
