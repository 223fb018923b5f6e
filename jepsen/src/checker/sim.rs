//! Synthetic register histories for testing the checkers: a simulated concurrent execution that
//! is linearizable by construction, and a corruption that usually makes it not so.
//!
//! Each operation gets an invoke time, a linearization point and a completion time; the true
//! register is updated in the order of linearization points, so the recorded results are those
//! of a correct server. Versions come from one log counter, as in one Raft group. Some writes
//! end `info` (unknown outcome): half of them take effect, possibly after the client gave up.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{Consistency, Event, EventType, Value, Workload, F};

/// Shape of a simulated history.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Number of operations.
    pub ops: usize,
    /// Number of keys.
    pub keys: usize,
    /// Concurrent processes.
    pub processes: usize,
    /// Probability that an operation ends `info`.
    pub info_rate: f64,
    /// Largest gap between an invoke and its linearization point (and that point and the
    /// completion), in ns.
    pub latency: u64,
    /// RNG seed.
    pub seed: u64,
}

struct Planned {
    process: u64,
    key: usize,
    f: F,
    call: u64,
    lin: u64,
    ret: u64,
    info: bool,
    value: u64,
    // Filled in by the execution.
    applied: bool,
    expected: u64,
    result: Option<bool>,
    read: Option<u64>,
    version: u64,
}

/// A linearizable history of the register workload.
pub fn linearizable_history(o: &SimOptions) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(o.seed);
    let mut free = vec![0u64; o.processes];
    let mut ids: Vec<u64> = (0..o.processes as u64).collect();
    let mut planned = Vec::with_capacity(o.ops);
    for n in 0..o.ops {
        let p = (0..o.processes).min_by_key(|p| free[*p]).expect("at least one process");
        let call = free[p] + rng.gen_range(0..=o.latency / 2);
        let lin = call + rng.gen_range(0..=o.latency);
        let ret = lin + rng.gen_range(0..=o.latency);
        let f = match rng.gen_range(0..100) {
            0..40 => F::Read,
            40..65 => F::Write,
            65..90 => F::Cas,
            _ => F::Delete,
        };
        let info = rng.gen_bool(o.info_rate);
        // An unknown outcome may take effect well after the client gave up.
        let lin = if info { lin + rng.gen_range(0..=o.latency * 3) } else { lin };
        planned.push(Planned {
            process: ids[p],
            key: rng.gen_range(0..o.keys),
            f,
            call,
            lin,
            ret,
            info,
            value: n as u64 + 1,
            applied: !info || rng.gen_bool(0.5),
            expected: 0,
            result: None,
            read: None,
            version: 0,
        });
        free[p] = ret + 1;
        if info {
            ids[p] += o.processes as u64;
        }
    }

    // Execute in linearization order.
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|i| planned[*i].lin);
    // (value, version, acknowledged): a compare-and-set only expects versions of values that
    // were acknowledged (or 0), as the register workload does (see `model`).
    let mut state: Vec<Option<(u64, u64, bool)>> = vec![None; o.keys];
    let mut history: Vec<Vec<u64>> = vec![vec![0]; o.keys];
    let mut index = 0u64;
    for i in order {
        let op = &mut planned[i];
        let cur = state[op.key];
        let cur_version = cur.map(|c| c.1).unwrap_or(0);
        if op.f == F::Cas {
            let known = &history[op.key];
            let cur_acked = cur.is_none_or(|c| c.2);
            op.expected =
                if cur_acked && rng.gen_bool(0.5) { cur_version } else { known[rng.gen_range(0..known.len())] };
        }
        if !op.applied {
            continue;
        }
        match op.f {
            F::Read => {
                op.read = cur.map(|c| c.0);
                op.version = cur_version;
            }
            F::Write => {
                index += 1;
                state[op.key] = Some((op.value, index, !op.info));
                if !op.info {
                    history[op.key].push(index);
                }
                op.version = index;
            }
            F::Delete => {
                index += 1;
                state[op.key] = None;
                op.version = index;
            }
            F::Cas => {
                index += 1;
                if cur_version == op.expected {
                    state[op.key] = Some((op.value, index, !op.info));
                    if !op.info {
                        history[op.key].push(index);
                    }
                    op.result = Some(true);
                    op.version = index;
                } else {
                    op.result = Some(false);
                    op.version = cur_version;
                }
            }
            F::Invalidate => unreachable!(),
        }
    }

    let mut events = Vec::with_capacity(planned.len() * 2);
    for op in &planned {
        let key = format!("k{}", op.key);
        let input = match op.f {
            F::Write => Some(Value::Int(op.value)),
            F::Cas => Some(Value::Pair(op.expected, op.value)),
            _ => None,
        };
        let mut inv = Event::new(op.process, EventType::Invoke, op.f, key.clone(), input, op.call);
        inv.workload = Some(Workload::Register);
        if op.f == F::Read {
            inv.consistency = Some(Consistency::Linearizable);
        }
        let mut done = Event { kind: EventType::Ok, time: op.ret, ..inv.clone() };
        if op.info {
            done.kind = EventType::Info;
            done.error = Some("simulated timeout".into());
        } else {
            done.version = Some(op.version);
            done.group = Some(1);
            done.result = op.result;
            if op.f == F::Read {
                done.value = op.read.map(Value::Int);
            }
        }
        events.push(inv);
        events.push(done);
    }
    events.sort_by_key(|e| (e.time, e.kind != EventType::Invoke));
    events
}

/// Changes one ok read's value (to another value written to the key, with that value's
/// version, or to absent) or flips one cas outcome. Returns false if there was nothing to
/// change. The result is usually, not always, non-linearizable.
pub fn corrupt(events: &mut [Event], seed: u64) -> bool {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut written: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    for e in events.iter().filter(|e| e.kind == EventType::Ok) {
        let value = match (e.f, e.value) {
            (F::Write, Some(Value::Int(v))) => v,
            (F::Cas, Some(Value::Pair(_, v))) if e.result == Some(true) => v,
            _ => continue,
        };
        written.entry(e.key.clone()).or_default().push((value, e.version.unwrap_or(0)));
    }
    let candidates: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == EventType::Ok && matches!(e.f, F::Read | F::Cas))
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() {
        return false;
    }
    let e = &mut events[candidates[rng.gen_range(0..candidates.len())]];
    if e.f == F::Cas {
        e.result = Some(!e.result.unwrap_or(false));
        return true;
    }
    let options = written.get(&e.key).cloned().unwrap_or_default();
    let pick = rng.gen_range(0..=options.len());
    let (value, version) = if pick == options.len() { (None, 0) } else { (Some(options[pick].0), options[pick].1) };
    if value == e.value.and_then(Value::int) {
        return false;
    }
    e.value = value.map(Value::Int);
    e.version = Some(version);
    true
}
