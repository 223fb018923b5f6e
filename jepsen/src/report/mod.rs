//! The results directory of a run and the verdict.
//!
//! `jepsen/results/<UTC time>-<seed>/`:
//!
//! | file | what |
//! |---|---|
//! | `run.json` | the options of the run (enough to repeat it) |
//! | `history.jsonl` | every client event ([`crate::history`], `jepsen/README.md`) |
//! | `nemesis.jsonl` | the fault timeline: start/heal/note events on the history's clock |
//! | `nodes/n<id>.log` | every node's log, all its starts, with fault markers |
//! | `verdict.json` | every checker's result and the anomalies with their operations |
//! | `verdict.txt` | the same for humans |
//! | `latency.svg` | latency of each operation over time, fault windows shaded |

pub mod latency;

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::checker::{CheckerResult, Validity};

/// Operation counts.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct OpCounts {
    /// Operations invoked.
    pub invoked: u64,
    /// Ended ok.
    pub ok: u64,
    /// Ended fail.
    pub fail: u64,
    /// Ended info (or never ended).
    pub info: u64,
}

/// The outcome of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// Every checker passed.
    pub valid: bool,
    /// pass, anomaly, or unknown (a checker could not decide).
    pub result: String,
    /// The seed.
    pub seed: u64,
    /// Nemeses enabled.
    pub nemeses: Vec<String>,
    /// Planted bugs.
    pub bugs: Vec<String>,
    /// Workloads.
    pub workloads: Vec<String>,
    /// Length of the fault phase, seconds.
    pub time_s: u64,
    /// Operations.
    pub ops: OpCounts,
    /// Faults injected.
    pub faults: u64,
    /// Slowest group's recovery after the final heal (ms); `None` if one never recovered.
    pub recovery_ms: Option<u64>,
    /// Each checker.
    pub checkers: Vec<CheckerResult>,
    /// Where the evidence is.
    pub results_dir: String,
}

impl Verdict {
    /// Judges checker results: (valid, "pass" | "anomaly" | "unknown", the results).
    pub fn judge(checkers: Vec<CheckerResult>) -> (bool, String, Vec<CheckerResult>) {
        let invalid = checkers.iter().any(|c| c.valid == Validity::Invalid);
        let unknown = checkers.iter().any(|c| c.valid == Validity::Unknown);
        let result = if invalid {
            "anomaly"
        } else if unknown {
            "unknown"
        } else {
            "pass"
        };
        (!invalid && !unknown, result.to_owned(), checkers)
    }

    /// The human-readable form.
    pub fn text(&self) -> String {
        let mut s = format!(
            "raftcache jepsen: {} — seed {}, nemesis {}, bugs {}, workloads {}, {} s\n\
             operations: {} invoked, {} ok, {} fail, {} info; {} faults; recovery after final heal: {}\n\n",
            self.result.to_uppercase(),
            self.seed,
            if self.nemeses.is_empty() { "none".to_owned() } else { self.nemeses.join(",") },
            if self.bugs.is_empty() { "none".to_owned() } else { self.bugs.join(",") },
            self.workloads.join(","),
            self.time_s,
            self.ops.invoked,
            self.ops.ok,
            self.ops.fail,
            self.ops.info,
            self.faults,
            match self.recovery_ms {
                Some(ms) => format!("{ms} ms"),
                None => "NEVER".to_owned(),
            }
        );
        for c in &self.checkers {
            s.push_str(&format!("[{:?}] {}: {}\n", c.valid, c.name, c.summary).to_string());
            for a in &c.anomalies {
                s.push_str(&format!(
                    "    {}{}: {}\n",
                    a.kind,
                    a.key.as_ref().map(|k| format!(" ({k})")).unwrap_or_default(),
                    a.message
                ));
                for (op, (inv, done)) in a.ops.iter().zip(&a.lines) {
                    let lines = match done {
                        Some(d) => format!("history.jsonl:{inv},{d}"),
                        None => format!("history.jsonl:{inv}"),
                    };
                    s.push_str(&format!("        {op}   [{lines}]\n"));
                }
            }
            if c.anomaly_count > c.anomalies.len() {
                s.push_str(&format!("    … and {} more\n", c.anomaly_count - c.anomalies.len()));
            }
        }
        s.push_str(&format!("\nresults: {}\n", self.results_dir));
        s
    }
}

/// A fresh results directory `<root>/<UTC time>-<seed>` (with a suffix if taken).
pub fn results_dir(root: &Path, seed: u64) -> Result<PathBuf> {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let stamp: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
    let mut dir = root.join(format!("{stamp}-{seed}"));
    let mut n = 1;
    while dir.exists() {
        n += 1;
        dir = root.join(format!("{stamp}-{seed}-{n}"));
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes `value` as pretty JSON.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?)?;
    Ok(())
}
