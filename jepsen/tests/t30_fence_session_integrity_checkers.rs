//! t30: the fence, session and integrity checkers on hand-written histories: each rule fires on
//! the history that breaks it and stays quiet on the one that keeps it.

use raftcache_jepsen::checker::fence::FenceParams;
use raftcache_jepsen::checker::{check, CheckParams, Validity};
use raftcache_jepsen::history::{Consistency, Event, EventType, Value, Workload, F};

const MS: u64 = 1_000_000;

struct H {
    events: Vec<Event>,
}

impl H {
    fn new() -> Self {
        Self { events: Vec::new() }
    }

    /// An ok operation from `call` to `ret` (ms); `fill` sets what it returned.
    #[allow(clippy::too_many_arguments)]
    fn ok(
        &mut self,
        p: u64,
        w: Workload,
        f: F,
        key: &str,
        input: Option<Value>,
        call: u64,
        ret: u64,
        fill: impl FnOnce(&mut Event),
    ) -> &mut Self {
        let mut inv = Event::new(p, EventType::Invoke, f, key, input, call * MS);
        inv.workload = Some(w);
        let mut done = Event { kind: EventType::Ok, time: ret * MS, ..inv.clone() };
        fill(&mut done);
        // The level of a read is part of its invocation.
        inv.consistency = done.consistency;
        inv.max_staleness_ms = done.max_staleness_ms;
        self.events.push(inv);
        self.events.push(done);
        self
    }

    fn checked(&self) -> Vec<(String, Validity, Vec<String>)> {
        let mut events = self.events.clone();
        events.sort_by_key(|e| (e.time, e.kind != EventType::Invoke));
        let params =
            CheckParams { fence: FenceParams { retention_ms: Some(60_000), max_skew_ms: 0 }, ..CheckParams::default() };
        check(&events, params)
            .into_iter()
            .map(|r| (r.name.clone(), r.valid, r.anomalies.iter().map(|a| a.kind.clone()).collect()))
            .collect()
    }

    fn kinds_of(&self, checker: &str) -> Vec<String> {
        self.checked().into_iter().find(|(n, _, _)| n == checker).map(|(_, _, k)| k).unwrap_or_default()
    }
}

fn version(v: u64) -> impl FnOnce(&mut Event) {
    move |e| {
        e.version = Some(v);
        e.group = Some(1);
    }
}

fn read(value: Option<u64>, v: u64, level: Consistency) -> impl FnOnce(&mut Event) {
    move |e| {
        e.value = value.map(Value::Int);
        e.version = Some(v);
        e.consistency = Some(level);
    }
}

fn cas_ok(v: u64) -> impl FnOnce(&mut Event) {
    move |e| {
        e.result = Some(true);
        e.version = Some(v);
        e.group = Some(1);
    }
}

const FW: Workload = Workload::Fence;
const SW: Workload = Workload::Session;
const LIN: Consistency = Consistency::Linearizable;

#[test]
fn fence_rules() {
    // A loader read the absent key (version 0), an invalidation fenced it at 5, and the load
    // conditioned on 0 still applied at 7: slipped.
    let mut h = H::new();
    h.ok(1, FW, F::Read, "f", None, 0, 1, read(None, 0, LIN)).ok(2, FW, F::Invalidate, "f", None, 2, 3, version(5)).ok(
        1,
        FW,
        F::Cas,
        "f",
        Some(Value::Pair(0, 100)),
        4,
        5,
        cas_ok(7),
    );
    assert_eq!(h.kinds_of("fence"), ["slipped-fill"]);

    // The same load refused: fine.
    let mut h = H::new();
    h.ok(1, FW, F::Read, "f", None, 0, 1, read(None, 0, LIN))
        .ok(2, FW, F::Invalidate, "f", None, 2, 3, version(5))
        .ok(1, FW, F::Cas, "f", Some(Value::Pair(0, 100)), 4, 5, |e| {
            e.result = Some(false);
            e.version = Some(5);
        })
        .ok(3, FW, F::Read, "f", None, 6, 7, read(None, 5, LIN));
    assert!(h.kinds_of("fence").is_empty(), "{:?}", h.checked());

    // A read after the invalidation reports the absent key at version 0: the fence is lost.
    let mut h = H::new();
    h.ok(2, FW, F::Invalidate, "f", None, 0, 1, version(5)).ok(3, FW, F::Read, "f", None, 2, 3, read(None, 0, LIN));
    assert_eq!(h.kinds_of("fence"), ["lost-fence"]);

    // A value older than a completed invalidation comes back.
    let mut h = H::new();
    h.ok(1, FW, F::Cas, "f", Some(Value::Pair(0, 100)), 0, 1, cas_ok(3))
        .ok(2, FW, F::Invalidate, "f", None, 2, 3, version(5))
        .ok(3, FW, F::Read, "f", None, 4, 5, read(Some(100), 3, LIN));
    assert!(h.kinds_of("fence").contains(&"resurrected-value".to_owned()));

    // Beyond the retention window the fence may be gone: not an anomaly.
    let mut h = H::new();
    h.ok(2, FW, F::Invalidate, "f", None, 0, 1, version(5)).ok(
        3,
        FW,
        F::Read,
        "f",
        None,
        61_000,
        61_001,
        read(None, 0, LIN),
    );
    assert!(h.kinds_of("fence").is_empty());
}

#[test]
fn session_rules() {
    let s = Consistency::Session;
    // Read-your-writes broken.
    let mut h = H::new();
    h.ok(1, SW, F::Write, "s", Some(Value::Int(10)), 0, 1, version(8)).ok(
        1,
        SW,
        F::Read,
        "s",
        None,
        2,
        3,
        read(None, 0, s),
    );
    assert_eq!(h.kinds_of("session"), ["session-violation"]);

    // Monotonic reads broken (another process wrote both values).
    let mut h = H::new();
    h.ok(2, SW, F::Write, "s", Some(Value::Int(10)), 0, 1, version(4))
        .ok(2, SW, F::Write, "s", Some(Value::Int(11)), 2, 3, version(9))
        .ok(1, SW, F::Read, "s", None, 4, 5, read(Some(11), 9, s))
        .ok(1, SW, F::Read, "s", None, 6, 7, read(Some(10), 4, s));
    assert_eq!(h.kinds_of("session"), ["session-violation"]);

    // Another process's later read may be older (no session across processes): fine.
    let mut h = H::new();
    h.ok(2, SW, F::Write, "s", Some(Value::Int(10)), 0, 1, version(4))
        .ok(2, SW, F::Write, "s", Some(Value::Int(11)), 2, 3, version(9))
        .ok(1, SW, F::Read, "s", None, 4, 5, read(Some(11), 9, s))
        .ok(3, SW, F::Read, "s", None, 6, 7, read(Some(10), 4, s));
    assert!(h.kinds_of("session").is_empty());

    // Eventual: stale beyond bound + slack (2 s + 1 s) is an anomaly, within it is not.
    let eventual = |v: u64, value: u64| {
        move |e: &mut Event| {
            e.value = Some(Value::Int(value));
            e.version = Some(v);
            e.consistency = Some(Consistency::Eventual);
            e.max_staleness_ms = Some(2_000);
        }
    };
    let mut h = H::new();
    h.ok(2, SW, F::Write, "s", Some(Value::Int(10)), 0, 1, version(4))
        .ok(2, SW, F::Write, "s", Some(Value::Int(11)), 2, 3, version(9))
        .ok(1, SW, F::Read, "s", None, 2_500, 2_501, eventual(4, 10))
        .ok(1, SW, F::Read, "s", None, 4_000, 4_001, eventual(4, 10));
    assert_eq!(h.kinds_of("session"), ["staleness-bound-exceeded"]);
}

#[test]
fn integrity_rules() {
    let rw = Workload::Register;
    // A value nobody wrote; a value with two versions; a failed write that shows up.
    let mut h = H::new();
    h.ok(1, rw, F::Read, "k", None, 0, 1, read(Some(99), 3, LIN));
    assert_eq!(h.kinds_of("integrity"), ["phantom-read"]);

    let mut h = H::new();
    h.ok(1, rw, F::Write, "k", Some(Value::Int(5)), 0, 1, version(3)).ok(
        1,
        rw,
        F::Read,
        "k",
        None,
        2,
        3,
        read(Some(5), 4, LIN),
    );
    assert_eq!(h.kinds_of("integrity"), ["value-with-two-versions"]);

    let mut h = H::new();
    h.ok(1, rw, F::Cas, "k", Some(Value::Pair(0, 5)), 0, 1, |e| e.result = Some(false)).ok(
        2,
        rw,
        F::Read,
        "k",
        None,
        2,
        3,
        read(Some(5), 4, LIN),
    );
    assert!(h.kinds_of("integrity").contains(&"failed-write-visible".to_owned()));

    // Two acknowledged writes at version 3: of one key, a duplicate; of two keys, what one log
    // entry gives the writes batched into it (its index).
    let both_at_version_3 = |second_key: &str| {
        let mut h = H::new();
        h.ok(1, rw, F::Write, "k", Some(Value::Int(5)), 0, 1, version(3)).ok(
            2,
            rw,
            F::Write,
            second_key,
            Some(Value::Int(6)),
            0,
            1,
            version(3),
        );
        h.kinds_of("integrity")
    };
    assert_eq!(both_at_version_3("k"), ["duplicate-version"]);
    let batched = both_at_version_3("j");
    assert!(batched.is_empty(), "{batched:?}");

    // And a clean history is clean everywhere.
    let mut h = H::new();
    h.ok(1, rw, F::Write, "k", Some(Value::Int(5)), 0, 1, version(3))
        .ok(2, rw, F::Read, "k", None, 2, 3, read(Some(5), 3, LIN))
        .ok(1, rw, F::Cas, "k", Some(Value::Pair(3, 6)), 4, 5, cas_ok(4))
        .ok(2, rw, F::Delete, "k", None, 6, 7, version(5))
        .ok(1, rw, F::Read, "k", None, 8, 9, read(None, 0, LIN));
    for (name, valid, kinds) in h.checked() {
        assert_eq!(valid, Validity::Valid, "{name}: {kinds:?}");
    }
}
