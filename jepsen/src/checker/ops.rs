//! Pairing invoke and completion events into operations.

use crate::history::{Consistency, Event, EventType, Value, Workload, F};

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It happened.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// Unknown (also: never completed before the history ended).
    Info,
}

/// One operation: an invoke and its completion.
#[derive(Clone, Debug)]
pub struct Op {
    /// Position in the list of operations (ordered by invoke time).
    pub id: usize,
    /// The process that ran it.
    pub process: u64,
    /// What it was.
    pub f: F,
    /// Its key.
    pub key: String,
    /// Its workload.
    pub workload: Option<Workload>,
    /// Reads: the level asked for (`None` means linearizable).
    pub consistency: Option<Consistency>,
    /// Eventual reads: the staleness bound.
    pub max_staleness_ms: Option<u64>,
    /// The invoke's value (the argument).
    pub input: Option<Value>,
    /// How it ended.
    pub status: Status,
    /// An ok read's value.
    pub output: Option<Value>,
    /// An ok cas's outcome.
    pub result: Option<bool>,
    /// The completion's version.
    pub version: Option<u64>,
    /// The completion's group.
    pub group: Option<u64>,
    /// The completion's node.
    pub node: Option<u64>,
    /// The invoke time (ns since the start).
    pub call: u64,
    /// The completion time; `u64::MAX` for `info` (it may take effect at any later time).
    pub ret: u64,
    /// When the client gave up on an `info` operation (for display).
    pub gave_up: Option<u64>,
    /// Index of the invoke event in the history.
    pub invoke_event: usize,
    /// Index of the completion event, if any.
    pub complete_event: Option<usize>,
}

impl Op {
    /// The level of a read, linearizable when unspecified.
    pub fn level(&self) -> Consistency {
        self.consistency.unwrap_or(Consistency::Linearizable)
    }

    /// The value a write or cas writes.
    pub fn written_value(&self) -> Option<u64> {
        match (self.f, self.input) {
            (F::Write, Some(Value::Int(v))) => Some(v),
            (F::Cas, Some(Value::Pair(_, v))) => Some(v),
            _ => None,
        }
    }

    /// The expected version of a cas.
    pub fn expected_version(&self) -> Option<u64> {
        match (self.f, self.input) {
            (F::Cas, Some(Value::Pair(e, _))) => Some(e),
            _ => None,
        }
    }

    /// An ok read's integer value (`None`: absent, or not an ok read).
    pub fn read_value(&self) -> Option<u64> {
        self.output.and_then(Value::int)
    }

    /// Whether the operation took effect for certain.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }

    /// Whether this is a write-like operation that certainly took effect (an ok write, delete,
    /// invalidation, or a cas whose condition held).
    pub fn applied(&self) -> bool {
        self.is_ok() && (self.f != F::Cas || self.result == Some(true)) && self.f != F::Read
    }

    /// One line for reports: `p3 cas [5,17] -> ok true v=19 @1.204s..1.210s`.
    pub fn describe(&self) -> String {
        let input = match self.input {
            None => String::new(),
            Some(Value::Int(v)) => format!(" {v}"),
            Some(Value::Pair(a, b)) => format!(" [{a},{b}]"),
        };
        let level = match self.consistency {
            Some(c) if self.f == F::Read => format!(" ({c:?})"),
            _ => String::new(),
        };
        let outcome = match self.status {
            Status::Ok => {
                let mut s = "ok".to_owned();
                if self.f == F::Read {
                    match self.read_value() {
                        Some(v) => s.push_str(&format!(" {v}")),
                        None => s.push_str(" null"),
                    }
                }
                if let Some(r) = self.result {
                    s.push_str(&format!(" {r}"));
                }
                if let Some(v) = self.version {
                    s.push_str(&format!(" v={v}"));
                }
                if let Some(n) = self.node {
                    s.push_str(&format!(" n{n}"));
                }
                s
            }
            Status::Fail => "fail".to_owned(),
            Status::Info => "info".to_owned(),
        };
        let end = if self.ret == u64::MAX {
            match self.gave_up {
                Some(t) => format!("{}(gave up)", secs(t)),
                None => "open".to_owned(),
            }
        } else {
            secs(self.ret)
        };
        format!("p{} {:?}{input}{level} {} -> {outcome} @{}..{end}", self.process, self.f, self.key, secs(self.call))
            .to_lowercase()
    }
}

/// `1.234s`.
pub fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// Pairs every invoke with the next completion of the same process. Operations still open at
/// the end are `info`. Errors on a malformed history (a completion with no invoke, two invokes
/// in a row on one process, a completion of another operation).
pub fn pair(events: &[Event]) -> Result<Vec<Op>, String> {
    let mut open: std::collections::HashMap<u64, usize> = Default::default();
    let mut ops: Vec<Op> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if e.kind == EventType::Invoke {
            if let Some(prev) = open.insert(e.process, ops.len()) {
                return Err(format!(
                    "event {i}: process {} invokes again while event {} is still open",
                    e.process, ops[prev].invoke_event
                ));
            }
            ops.push(Op {
                id: 0,
                process: e.process,
                f: e.f,
                key: e.key.clone(),
                workload: e.workload,
                consistency: e.consistency,
                max_staleness_ms: e.max_staleness_ms,
                input: e.value,
                status: Status::Info,
                output: None,
                result: None,
                version: None,
                group: None,
                node: e.node,
                call: e.time,
                ret: u64::MAX,
                gave_up: None,
                invoke_event: i,
                complete_event: None,
            });
            continue;
        }
        let Some(idx) = open.remove(&e.process) else {
            return Err(format!("event {i}: process {} completes an operation it never invoked", e.process));
        };
        let op = &mut ops[idx];
        if op.f != e.f || op.key != e.key {
            return Err(format!(
                "event {i}: process {} completes {:?} {} but invoked {:?} {}",
                e.process, e.f, e.key, op.f, op.key
            ));
        }
        op.complete_event = Some(i);
        match e.kind {
            EventType::Ok => {
                op.status = Status::Ok;
                op.ret = e.time;
                op.output = e.value;
                op.result = e.result;
                op.version = e.version;
                op.group = e.group;
                op.node = e.node.or(op.node);
            }
            EventType::Fail => {
                op.status = Status::Fail;
                op.ret = e.time;
            }
            EventType::Info => op.gave_up = Some(e.time),
            EventType::Invoke => unreachable!(),
        }
    }
    ops.sort_by_key(|o| (o.call, o.invoke_event));
    for (i, op) in ops.iter_mut().enumerate() {
        op.id = i;
    }
    Ok(ops)
}
