//! The session checker: SESSION reads give read-your-writes and monotonic reads; EVENTUAL reads
//! are never staler than their bound.
//!
//! - **session**: a SESSION read by a process returns a version of the key at least as high as
//!   any version that process saw of it before — by its own acknowledged write (read-your-writes)
//!   or by any earlier read (monotonic reads). The SDK's session token is per group and covers
//!   both, so this is exactly what it promises.
//! - **eventual**: an EVENTUAL read with bound `B` invoked at `t` is served by a replica that
//!   heard from a leader within `B`; any write acknowledged before `t − B − slack` was committed
//!   before that contact, so the read's version must be at least that write's. `slack` covers the
//!   replica's apply lag and scheduling on a loaded machine.

use std::collections::{BTreeMap, HashMap};

use super::ops::Op;
use super::Anomaly;
use crate::history::{Consistency, Workload, F};

/// Default slack of the eventual rule.
pub const DEFAULT_EVENTUAL_SLACK_MS: u64 = 1_000;

/// Checks the session workload's keys. Returns (reads checked, anomalies).
pub fn check(ops: &[Op], eventual_slack_ms: u64) -> (usize, Vec<Anomaly>) {
    let session_ops: Vec<&Op> = ops.iter().filter(|o| o.workload == Some(Workload::Session) && o.is_ok()).collect();
    let mut anomalies = Vec::new();
    let mut checked = 0;

    // Per process and key: the highest version seen so far and the op that showed it.
    let mut by_process: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    for op in &session_ops {
        by_process.entry(op.process).or_default().push(op);
    }
    for proc_ops in by_process.values_mut() {
        proc_ops.sort_by_key(|o| o.call);
        let mut seen: HashMap<&str, &Op> = HashMap::new();
        for op in proc_ops.iter() {
            let Some(v) = op.version else { continue };
            if op.f == F::Read && op.level() == Consistency::Session {
                checked += 1;
                if let Some(prev) = seen.get(op.key.as_str()) {
                    let pv = prev.version.unwrap_or(0);
                    if v < pv {
                        let rule = if prev.f == F::Read { "monotonic reads" } else { "read-your-writes" };
                        anomalies.push(Anomaly::new(
                            "session-violation",
                            Some(&op.key),
                            format!("{rule}: a SESSION read returned version {v}, below version {pv} the same process saw before"),
                            [*prev, *op],
                        ));
                    }
                }
            }
            if op.f == F::Read || op.applied() {
                let entry = seen.entry(&op.key).or_insert(op);
                if entry.version.unwrap_or(0) < v {
                    *entry = op;
                }
            }
        }
    }

    // Eventual: writes of each key ordered by completion, with running maximum of versions.
    let mut writes: BTreeMap<&str, Vec<(u64, u64, &Op)>> = BTreeMap::new();
    for op in session_ops.iter().filter(|o| o.applied()) {
        if let Some(v) = op.version {
            writes.entry(&op.key).or_default().push((op.ret, v, op));
        }
    }
    for w in writes.values_mut() {
        w.sort_by_key(|(ret, _, _)| *ret);
    }
    for op in session_ops.iter().filter(|o| o.f == F::Read && o.level() == Consistency::Eventual) {
        checked += 1;
        let (Some(v), Some(bound)) = (op.version, op.max_staleness_ms) else { continue };
        let horizon = op.call.saturating_sub((bound + eventual_slack_ms) * 1_000_000);
        let Some(ws) = writes.get(op.key.as_str()) else { continue };
        let newest = ws.iter().take_while(|(ret, _, _)| *ret <= horizon).max_by_key(|(_, ver, _)| *ver);
        if let Some((_, wv, w)) = newest {
            if *wv > v {
                anomalies.push(Anomaly::new(
                    "staleness-bound-exceeded",
                    Some(&op.key),
                    format!(
                        "an EVENTUAL read with max_staleness {bound} ms returned version {v}, but version {wv} was \
                         acknowledged more than {} ms before the read began",
                        bound + eventual_slack_ms
                    ),
                    [*w, *op],
                ));
            }
        }
    }
    (checked, anomalies)
}
