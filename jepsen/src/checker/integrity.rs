//! Cross-workload integrity: what every acknowledged value and version must satisfy before any
//! ordering question is asked. Also builds the value → version map the register model uses.
//!
//! - a value read must have been written by an operation invoked before the read completed, and
//!   not by one that certainly failed (a failed write that becomes visible is a lost `fail`);
//! - a value has exactly one version (a write applied twice — a broken retry de-duplication —
//!   shows up as one value under two versions);
//! - no two acknowledged writes of a key share a version (versions are log indices; writes of
//!   different keys proposed together share their entry's).

use std::collections::HashMap;

use super::model::VersionMap;
use super::ops::{Op, Status};
use super::Anomaly;
use crate::history::F;

/// Builds the version map and reports integrity anomalies.
pub fn check<'a>(ops: &'a [Op]) -> (VersionMap, Vec<Anomaly>) {
    let mut anomalies = Vec::new();
    let mut writer: HashMap<u64, &'a Op> = HashMap::new();
    for op in ops {
        if let Some(v) = op.written_value() {
            if let Some(first) = writer.insert(v, op) {
                anomalies.push(Anomaly::new(
                    "duplicate-value",
                    Some(&op.key),
                    format!("harness error: value {v} was written twice"),
                    [first, op],
                ));
            }
        }
    }

    let mut versions = VersionMap::new();
    let mut seen_by: HashMap<u64, &'a Op> = HashMap::new();
    let mut note = |value: u64, version: u64, op: &'a Op, anomalies: &mut Vec<Anomaly>| match versions.get(&value) {
        Some(&known) if known != version => anomalies.push(Anomaly::new(
            "value-with-two-versions",
            Some(&op.key),
            format!(
                "value {value} was reported with version {known} and with version {version}: one write applied \
                 twice, or a version rewritten"
            ),
            [seen_by[&value], op],
        )),
        Some(_) => {}
        None => {
            versions.insert(value, version);
            seen_by.insert(value, op);
        }
    };
    for op in ops.iter().filter(|o| o.is_ok()) {
        match op.f {
            F::Write | F::Cas if op.applied() => {
                if let (Some(value), Some(version)) = (op.written_value(), op.version) {
                    note(value, version, op, &mut anomalies);
                }
            }
            F::Read => {
                let Some(value) = op.read_value() else { continue };
                let Some(w) = writer.get(&value) else {
                    anomalies.push(Anomaly::new(
                        "phantom-read",
                        Some(&op.key),
                        format!("read saw value {value}, which no operation wrote"),
                        [op],
                    ));
                    continue;
                };
                if w.key != op.key {
                    anomalies.push(Anomaly::new(
                        "phantom-read",
                        Some(&op.key),
                        format!("read of {} saw value {value}, which was written to {}", op.key, w.key),
                        [*w, op],
                    ));
                }
                if w.status == Status::Fail || (w.is_ok() && w.result == Some(false)) {
                    anomalies.push(Anomaly::new(
                        "failed-write-visible",
                        Some(&op.key),
                        format!("read saw value {value}, written by an operation that reported it had no effect"),
                        [*w, op],
                    ));
                }
                if op.ret < w.call {
                    anomalies.push(Anomaly::new(
                        "read-from-the-future",
                        Some(&op.key),
                        format!("read saw value {value} before the write of it was invoked"),
                        [*w, op],
                    ));
                }
                if let Some(version) = op.version {
                    note(value, version, op, &mut anomalies);
                }
            }
            _ => {}
        }
    }

    // Writes of different keys may share a version: a leader puts concurrent writes into one log
    // entry, and a version is the index of that entry. Two writes of one key never may.
    let mut by_version: HashMap<(u64, &str, u64), &Op> = HashMap::new();
    for op in ops.iter().filter(|o| o.applied()) {
        let (Some(group), Some(version)) = (op.group, op.version) else { continue };
        if let Some(first) = by_version.insert((group, op.key.as_str(), version), op) {
            anomalies.push(Anomaly::new(
                "duplicate-version",
                Some(&op.key),
                format!("two acknowledged writes of this key in group {group} got the same version {version}"),
                [first, op],
            ));
        }
    }
    (versions, anomalies)
}
