//! Linearizability of the register workload, key by key.
//!
//! Linearizability is compositional (Herlihy & Wing): a history is linearizable iff the
//! sub-history of every object is. Keys are independent objects, so each key's operations are
//! searched on their own ([`super::wgl`]) — P-compositionality in Lowe's terms — which keeps
//! each search small. Keys are checked on all available threads.

use std::collections::BTreeMap;

use super::model::{CasOutcome, ModelOp, VersionMap};
use super::ops::{Op, Status};
use super::wgl::{search, KeyOp, Search};
use super::Anomaly;
use crate::history::{Workload, F};

/// Default step budget of one key's search.
pub const DEFAULT_BUDGET: u64 = 20_000_000;

/// The model operation of `op`, or `None` if it says nothing about the register (a failed
/// operation, a read with unknown outcome, a non-strict read).
pub fn model_op(op: &Op, versions: &VersionMap) -> Option<KeyOp> {
    let info = match op.status {
        Status::Fail => return None,
        Status::Info => true,
        Status::Ok => false,
    };
    let m = match op.f {
        F::Read if info || !op.level().is_strict() => return None,
        F::Read => ModelOp::Read { value: op.read_value() },
        F::Write => {
            let value = op.written_value()?;
            ModelOp::Write { value, version: if info { versions.get(&value).copied() } else { op.version } }
        }
        F::Delete => ModelOp::Delete { version: if info { None } else { op.version } },
        F::Cas => {
            let (expected, new) = op.input?.pair()?;
            let outcome = match (info, op.result) {
                (true, _) => CasOutcome::Unknown,
                (false, Some(true)) => CasOutcome::Applied { version: op.version },
                // A refusal that reports a version no one else reported names a value that
                // nobody observed; it tells nothing checkable (see `settle_info`).
                (false, _) if op.version.is_some_and(|c| c != 0 && !versions.is_reported(c)) => return None,
                (false, _) => CasOutcome::Rejected { current: op.version },
            };
            ModelOp::Cas { expected, new, outcome }
        }
        F::Invalidate => return None,
    };
    Some(KeyOp { op: m, call: op.call, ret: op.ret, info })
}

/// Settles what the reads of a key reveal about its operations of unknown outcome, before the
/// search: without this, every `info` operation floats to the end of the history and each one
/// doubles the space a failing search must exhaust.
///
/// - An `info` write (or compare-and-set) whose value some read saw did happen, before that
///   read: it becomes an ordinary operation that must be linearized before the first such read
///   completed, with the version the read reported.
/// - An `info` write whose value no read saw is dropped. Placed anywhere, it would leave the
///   register holding a value no later operation can match: no read saw it, no compare-and-set
///   can expect its (unreported) version, and a refused compare-and-set reporting a *reported*
///   version cannot sit on it either; so any linearization that places it stays one without it
///   (the `info` operations that would have met it become no-ops and may be left out too).
///   Refusals that report an unreported version — the only operations such a value could
///   explain — are left out of the model for this reason ([`model_op`]).
pub fn settle_info<T>(ops: Vec<(KeyOp, T)>, versions: &VersionMap) -> Vec<(KeyOp, T)> {
    let mut first_seen: std::collections::HashMap<u64, u64> = Default::default();
    for (m, _) in &ops {
        if let (ModelOp::Read { value: Some(v) }, false) = (m.op, m.info) {
            let e = first_seen.entry(v).or_insert(m.ret);
            *e = (*e).min(m.ret);
        }
    }
    ops.into_iter()
        .filter_map(|(mut m, t)| {
            if !m.info {
                return Some((m, t));
            }
            let written = match m.op {
                ModelOp::Write { value, .. } => value,
                ModelOp::Cas { new, .. } => new,
                _ => return Some((m, t)),
            };
            match first_seen.get(&written) {
                Some(&seen) => {
                    let version = versions.get(&written).copied();
                    m.op = match m.op {
                        ModelOp::Cas { expected, new, .. } => {
                            ModelOp::Cas { expected, new, outcome: CasOutcome::Applied { version } }
                        }
                        _ => ModelOp::Write { value: written, version },
                    };
                    m.info = false;
                    m.ret = seen.max(m.call);
                    Some((m, t))
                }
                None => None,
            }
        })
        .collect()
}

/// Result for the register workload.
pub struct LinearizabilityResult {
    /// Keys searched.
    pub keys: usize,
    /// Operations given to the searches.
    pub ops: usize,
    /// Keys whose search ran out of budget.
    pub unknown: Vec<String>,
    /// One anomaly per non-linearizable key.
    pub anomalies: Vec<Anomaly>,
}

/// Checks every register key of `ops`.
pub fn check(ops: &[Op], versions: &VersionMap, budget: u64) -> LinearizabilityResult {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.workload.is_none_or(|w| w == Workload::Register)) {
        by_key.entry(&op.key).or_default().push(op);
    }
    let keys: Vec<(&str, Vec<&Op>)> = by_key.into_iter().collect();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(keys.len().max(1));
    let results: Vec<(String, usize, Search, Vec<&Op>, VersionMap)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let keys = &keys;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (key, key_ops) in keys.iter().skip(t).step_by(threads) {
                        let local = versions.restricted(key_ops.iter().filter_map(|o| o.written_value()));
                        let (model, sources): (Vec<KeyOp>, Vec<&Op>) = settle_info(
                            key_ops.iter().filter_map(|o| model_op(o, &local).map(|m| (m, *o))).collect(),
                            &local,
                        )
                        .into_iter()
                        .unzip();
                        let verdict = search(&model, &local, budget);
                        out.push((key.to_string(), model.len(), verdict, sources, local));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("checker thread panicked")).collect()
    });

    let mut res = LinearizabilityResult { keys: results.len(), ops: 0, unknown: Vec::new(), anomalies: Vec::new() };
    for (key, n, verdict, sources, versions) in results {
        res.ops += n;
        match verdict {
            Search::Linearizable => {}
            Search::Unknown { steps } => res.unknown.push(format!("{key} ({n} ops, gave up after {steps} steps)")),
            Search::NotLinearizable(stuck) => {
                let culprit = sources[stuck.op];
                let state = match stuck.state.value {
                    Some(v) => format!("value {v} (version {:?})", versions.get(&v)),
                    None => "absent".to_owned(),
                };
                let mut evidence: Vec<&Op> = stuck.open.iter().map(|i| sources[*i]).collect();
                evidence.retain(|o| o.id != culprit.id);
                evidence.insert(0, culprit);
                // Also the last few operations before it, for context.
                let before: Vec<&Op> =
                    sources.iter().filter(|o| o.ret < culprit.call && o.is_ok()).rev().take(4).copied().collect();
                evidence.extend(before.into_iter().rev());
                evidence.truncate(16);
                res.anomalies.push(Anomaly::new(
                    "nonlinearizable",
                    Some(&key),
                    format!(
                        "no linearization of the {n} operations on {key}: after linearizing {} of them (state: {state}), \
                         `{}` cannot be placed before it completes",
                        stuck.depth,
                        culprit.describe()
                    ),
                    evidence,
                ));
            }
        }
    }
    res
}
