//! The fence checker: an invalidation must keep out every value based on what it removed.
//!
//! Versions are log indices of the key's group, so "applied after the invalidation" is exact:
//! version `w > f`, where `f` is the invalidation's fence. Three rules, for every acknowledged
//! invalidation with fence `f` of a key:
//!
//! 1. **slipped fill** — no conditional write based on a version `c < f` may apply at `w > f`
//!    (the stale loader the fence exists to stop);
//! 2. **resurrected value** — no read invoked after the invalidation completed may see a value
//!    with version `< f` (the invalidation removed it);
//! 3. **lost fence** — no read of the absent key invoked after the invalidation completed may
//!    report a version `< f` (a loader conditioning on it would slip past the fence).
//!
//! Fences are retained for a window of leader time, so rules 1 and 3 are enforced only where the
//! real time between the invalidation's invocation and the other operation's completion, plus
//! the largest forward clock skew injected, is within the retention window.

use std::collections::BTreeMap;

use super::ops::Op;
use super::Anomaly;
use crate::history::{Workload, F};

/// How long fences last and how far clocks were pushed.
#[derive(Clone, Copy, Debug)]
pub struct FenceParams {
    /// The cluster's `--fence-retention-ms`; `None`: unbounded.
    pub retention_ms: Option<u64>,
    /// The largest forward clock skew any node had.
    pub max_skew_ms: u64,
}

/// Checks the fence workload's keys.
pub fn check(ops: &[Op], p: FenceParams) -> (usize, Vec<Anomaly>) {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in ops.iter().filter(|o| o.workload == Some(Workload::Fence) && o.is_ok()) {
        by_key.entry(&op.key).or_default().push(op);
    }
    let retained = |from: &Op, to: &Op| match p.retention_ms {
        None => true,
        Some(r) => {
            let gap_ms = to.ret.saturating_sub(from.call) / 1_000_000;
            gap_ms.saturating_add(p.max_skew_ms) < r
        }
    };
    let mut anomalies = Vec::new();
    for (key, key_ops) in &by_key {
        let fences: Vec<(&Op, u64)> =
            key_ops.iter().filter(|o| o.f == F::Invalidate).filter_map(|o| o.version.map(|f| (*o, f))).collect();
        for op in key_ops {
            match op.f {
                F::Cas if op.result == Some(true) => {
                    let (Some(c), Some(w)) = (op.expected_version(), op.version) else { continue };
                    if let Some((inv, f)) = fences.iter().find(|(inv, f)| c < *f && *f < w && retained(inv, op)) {
                        anomalies.push(Anomaly::new(
                            "slipped-fill",
                            Some(key),
                            format!(
                                "a write conditioned on version {c} applied at version {w}, after the invalidation \
                                 with fence {f}: a stale loader put back a value the invalidation removed"
                            ),
                            [*inv, *op],
                        ));
                    }
                }
                F::Read => {
                    let Some(v) = op.version else { continue };
                    let present = op.read_value().is_some();
                    let earlier = fences.iter().filter(|(inv, f)| inv.ret < op.call && *f > v);
                    let hit = if present {
                        earlier.max_by_key(|(_, f)| *f)
                    } else {
                        earlier.filter(|(inv, _)| retained(inv, op)).max_by_key(|(_, f)| *f)
                    };
                    if let Some((inv, f)) = hit {
                        let (kind, what) = if present {
                            ("resurrected-value", format!("saw a value of version {v}"))
                        } else {
                            ("lost-fence", format!("found the key absent with version {v} (not the fence)"))
                        };
                        anomalies.push(Anomaly::new(
                            kind,
                            Some(key),
                            format!("a read invoked after the invalidation with fence {f} completed {what}"),
                            [*inv, *op],
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    (by_key.len(), anomalies)
}
