//! The report of a suite run: `summary.md` (ratio table, goals, every run) and `summary.svg`
//! (throughput and p99 against client count), both made from `summary.json` alone so they can be
//! made again (`raftcache-bench report DIR`).
//!
//! Comparisons pair each raftcache record with the peer record of the same workload, keys,
//! clients and value size. etcd's peer for a strict read (linearizable, follower) is its
//! linearizable read; for a stale-allowed read (session, eventual) its serializable read, which
//! the bench records as `eventual` and the report marks as serializable. Redis has no levels.

mod plot;
mod table;

use std::path::Path;

use anyhow::{bail, Context};

use crate::record::{Record, Summary};

pub use plot::draw as draw_plot;
pub use table::{markdown, ratio_table};

/// File names inside a results dir.
pub const SUMMARY_JSON: &str = "summary.json";
/// See [`SUMMARY_JSON`].
pub const SUMMARY_MD: &str = "summary.md";
/// See [`SUMMARY_JSON`].
pub const SUMMARY_SVG: &str = "summary.svg";
/// Optional: a few lines about the machine, added to summary.md.
pub const MACHINE_TXT: &str = "machine.txt";

/// The record `system` ran with `consistency` where `like` ran (same workload, keys, clients,
/// value size); the last one if it ran more than once.
pub fn peer<'a>(runs: &'a [Record], like: &Record, system: &str, consistency: &str) -> Option<&'a Record> {
    runs.iter().rev().find(|r| {
        r.system == system
            && r.consistency == consistency
            && r.workload == like.workload
            && r.keys == like.keys
            && r.clients == like.clients
            && r.value_bytes == like.value_bytes
    })
}

/// The consistency of `system`'s record to compare a raftcache record of `consistency` with.
pub fn peer_consistency(system: &str, consistency: &str) -> &'static str {
    match (system, consistency) {
        ("etcd", "linearizable" | "follower") => "linearizable",
        ("etcd", "session" | "eventual") => "eventual",
        _ => "n/a",
    }
}

/// Writes `summary.md` and `summary.svg` into `dir` and prints the ratio table.
pub fn write(dir: &Path, summary: &Summary) -> anyhow::Result<()> {
    if summary.runs.is_empty() {
        bail!("the summary has no runs");
    }
    let mut md = markdown(&summary.runs);
    // scripts/bench.sh notes the machine and versions there.
    if let Ok(machine) = std::fs::read_to_string(dir.join(MACHINE_TXT)) {
        md.push_str("\n## Machine and command\n\n");
        md.push_str(machine.trim());
        md.push('\n');
    }
    let md_path = dir.join(SUMMARY_MD);
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let svg_path = dir.join(SUMMARY_SVG);
    draw_plot(&svg_path, &summary.runs)?;
    println!("\n{}", ratio_table(&summary.runs));
    println!("results: {} ({}, {})", dir.join(SUMMARY_JSON).display(), md_path.display(), svg_path.display());
    Ok(())
}

/// `raftcache-bench report DIR`: makes the report again from `DIR/summary.json`.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let summary = Summary::load(&dir.join(SUMMARY_JSON))?;
    write(dir, &summary)
}

/// Rank of a workload, keys or consistency name for sorting (unknown names last).
pub(crate) fn rank(name: &str) -> usize {
    ["write", "read", "mixed", "uniform", "zipf", "linearizable", "follower", "session", "eventual", "n/a"]
        .iter()
        .position(|n| *n == name)
        .unwrap_or(usize::MAX)
}
