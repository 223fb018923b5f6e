//! Checkers: from a history to a verdict.
//!
//! | checker | what it proves | how |
//! |---|---|---|
//! | integrity | every value read was written, once, by an operation that did not fail; versions are unique | one pass ([`integrity`]) |
//! | linearizability | the register workload is linearizable, key by key | Wing–Gong/Lowe search with memoisation ([`wgl`]), per key ([`linearizable`]) |
//! | fence | no value based on a version older than an invalidation becomes visible after it | version arithmetic ([`fence`]) |
//! | session | read-your-writes and monotonic SESSION reads; EVENTUAL within its bound | per process and key ([`session`]) |
//!
//! Operations with unknown outcome (`info`) may or may not have taken effect, at any time after
//! their invocation; failed operations (`fail`) had no effect. The liveness and crash checks are
//! made by the runner (they need the cluster, not the history) and join the verdict there.

pub mod brute;
pub mod fence;
pub mod integrity;
pub mod linearizable;
pub mod model;
pub mod ops;
pub mod session;
pub mod sim;
pub mod wgl;

use serde::Serialize;

use crate::history::Event;
use ops::Op;

/// Anomalies kept per checker in a report (the count is always exact).
const MAX_REPORTED: usize = 20;

/// Something a checker proved wrong, with the operations that show it.
#[derive(Clone, Debug, Serialize)]
pub struct Anomaly {
    /// Short name of the kind of anomaly.
    pub kind: String,
    /// The key, if it concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// The operations that show it, one line each ([`Op::describe`]).
    pub ops: Vec<String>,
    /// Their event numbers in `history.jsonl` (1-based line numbers: invoke, completion).
    pub lines: Vec<(usize, Option<usize>)>,
}

impl Anomaly {
    /// An anomaly shown by `ops`.
    pub fn new<'a>(kind: &str, key: Option<&str>, message: String, ops: impl IntoIterator<Item = &'a Op>) -> Self {
        let ops: Vec<&Op> = ops.into_iter().collect();
        Self {
            kind: kind.to_owned(),
            key: key.map(str::to_owned),
            message,
            ops: ops.iter().map(|o| o.describe()).collect(),
            lines: ops.iter().map(|o| (o.invoke_event + 1, o.complete_event.map(|c| c + 1))).collect(),
        }
    }

    /// An anomaly not tied to operations (liveness, crashes).
    pub fn plain(kind: &str, message: String) -> Self {
        Self { kind: kind.to_owned(), key: None, message, ops: Vec::new(), lines: Vec::new() }
    }
}

/// Pass, fail, or could not tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    /// No anomaly.
    Valid,
    /// At least one anomaly.
    Invalid,
    /// The checker could not decide (search budget exhausted).
    Unknown,
}

/// One checker's result.
#[derive(Clone, Debug, Serialize)]
pub struct CheckerResult {
    /// Checker name.
    pub name: String,
    /// Its verdict.
    pub valid: Validity,
    /// What it looked at.
    pub summary: String,
    /// How many anomalies it found.
    pub anomaly_count: usize,
    /// The first of them.
    pub anomalies: Vec<Anomaly>,
}

impl CheckerResult {
    /// A result from a list of anomalies.
    pub fn new(name: &str, summary: String, mut anomalies: Vec<Anomaly>) -> Self {
        let anomaly_count = anomalies.len();
        anomalies.truncate(MAX_REPORTED);
        let valid = if anomaly_count == 0 { Validity::Valid } else { Validity::Invalid };
        Self { name: name.to_owned(), valid, summary, anomaly_count, anomalies }
    }
}

/// Knobs of the history checkers.
#[derive(Clone, Copy, Debug)]
pub struct CheckParams {
    /// Fence retention and skew, see [`fence::FenceParams`].
    pub fence: fence::FenceParams,
    /// Slack of the eventual rule, see [`session`].
    pub eventual_slack_ms: u64,
    /// Step budget per key of the linearizability search.
    pub search_budget: u64,
}

impl Default for CheckParams {
    fn default() -> Self {
        Self {
            fence: fence::FenceParams { retention_ms: None, max_skew_ms: 0 },
            eventual_slack_ms: session::DEFAULT_EVENTUAL_SLACK_MS,
            search_budget: linearizable::DEFAULT_BUDGET,
        }
    }
}

/// Runs every history checker on `events`.
pub fn check(events: &[Event], params: CheckParams) -> Vec<CheckerResult> {
    let ops = match ops::pair(events) {
        Ok(ops) => ops,
        Err(e) => {
            return vec![CheckerResult::new(
                "history",
                "the history is malformed".into(),
                vec![Anomaly::plain("malformed-history", e)],
            )]
        }
    };
    check_ops(&ops, params)
}

/// Runs every history checker on paired operations.
pub fn check_ops(ops: &[Op], params: CheckParams) -> Vec<CheckerResult> {
    let (versions, integrity) = integrity::check(ops);
    let mut out = vec![CheckerResult::new(
        "integrity",
        format!("{} operations, {} distinct values with known versions", ops.len(), versions.len()),
        integrity,
    )];

    let started = std::time::Instant::now();
    let lin = linearizable::check(ops, &versions, params.search_budget);
    let mut r = CheckerResult::new(
        "linearizability",
        format!(
            "{} register keys, {} operations searched in {:.2?}{}",
            lin.keys,
            lin.ops,
            started.elapsed(),
            if lin.unknown.is_empty() { String::new() } else { format!("; undecided: {}", lin.unknown.join(", ")) }
        ),
        lin.anomalies,
    );
    if r.valid == Validity::Valid && !lin.unknown.is_empty() {
        r.valid = Validity::Unknown;
    }
    out.push(r);

    let (keys, fence) = fence::check(ops, params.fence);
    out.push(CheckerResult::new("fence", format!("{keys} fence keys"), fence));

    let (reads, session) = session::check(ops, params.eventual_slack_ms);
    out.push(CheckerResult::new("session", format!("{reads} session/eventual reads"), session));
    out
}
