//! Nemeses: the faults a run injects, chosen at random from the run's seed.
//!
//! | nemesis | fault | heal |
//! |---|---|---|
//! | kill | SIGKILL one node, a group leader, a minority, a majority or all | restart on the same data |
//! | pause | SIGSTOP the same kinds of targets | SIGCONT |
//! | partition | through the link proxies: isolate a leader, random halves, a majority ring, a bridge, a one-way cut; links drop or black-hole | links pass again |
//! | delay | 20–`max` ms ± jitter on a node's links or on all links | delay off |
//! | clock | skew one or two nodes' wall clocks (leader time stamps, TTL) ± up to `max` | skew 0 |
//!
//! The loop alternates a quiet spell and a fault window. Where more than one nemesis is enabled,
//! a window sometimes combines two of them (at most one network fault, since partition and delay
//! act on the same links). Every fault is healed at the end of its window, and everything is
//! healed when the run stops. Choices come from an RNG seeded with the run's seed; timing and
//! leader discovery depend on the cluster, so a seed reproduces the plan, not the interleaving.

pub mod fault;
pub mod plan;
pub mod timeline;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::cluster::Cluster;
use fault::Fault;
use plan::PlanLimits;
use timeline::{Phase, Timeline};

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NemesisKind {
    /// kill -9 and restart.
    Kill,
    /// SIGSTOP / SIGCONT.
    Pause,
    /// Network partitions.
    Partition,
    /// Link delays.
    Delay,
    /// Clock skew.
    Clock,
}

impl NemesisKind {
    /// All of them.
    pub const ALL: [NemesisKind; 5] =
        [NemesisKind::Kill, NemesisKind::Pause, NemesisKind::Partition, NemesisKind::Delay, NemesisKind::Clock];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
            NemesisKind::Delay => "delay",
            NemesisKind::Clock => "clock",
        }
    }

    fn is_network(self) -> bool {
        matches!(self, NemesisKind::Partition | NemesisKind::Delay)
    }

    /// Parses `kill,pause` (also `all`, `none`).
    pub fn parse_list(s: &str) -> Result<Vec<NemesisKind>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "all" => out.extend(Self::ALL),
                "none" => {}
                p => out.push(p.parse()?),
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl FromStr for NemesisKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            format!(
                "unknown nemesis {s:?}; expected kill, pause, partition, delay, clock (comma-separated), all or none"
            )
        })
    }
}

/// How the nemesis behaves.
#[derive(Clone, Debug)]
pub struct NemesisOptions {
    /// Enabled faults; none means a fault-free run.
    pub kinds: Vec<NemesisKind>,
    /// Seed of the choices.
    pub seed: u64,
    /// Quiet spell between faults: uniform in this range.
    pub quiet: (Duration, Duration),
    /// Fault window: uniform in this range.
    pub hold: (Duration, Duration),
    /// Probability that a window combines two nemeses.
    pub combine: f64,
    /// Bounds of the random choices.
    pub limits: PlanLimits,
}

async fn pause_or_stop(rng: &mut StdRng, range: (Duration, Duration), stop: &mut watch::Receiver<bool>) -> bool {
    let d = if range.1 > range.0 { rng.gen_range(range.0..=range.1) } else { range.0 };
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => None,
        _ = stop.wait_for(|s| *s) => Some(true),
    };
    stopped.unwrap_or_else(|| *stop.borrow())
}

/// Runs faults until `stop` turns true, then heals everything. Returns the number of faults
/// injected.
pub async fn run(
    c: Arc<Cluster>,
    opts: NemesisOptions,
    timeline: Arc<Timeline>,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x6e65_6d65_7369_7321);
    let mut next_id = 0u64;
    let mut injected = 0u64;
    while !opts.kinds.is_empty() {
        if pause_or_stop(&mut rng, opts.quiet, &mut stop).await {
            break;
        }
        note_crashes(&c, &timeline, &mut next_id);
        let mut kinds = vec![*opts.kinds.choose(&mut rng).expect("non-empty")];
        if opts.kinds.len() > 1 && rng.gen_bool(opts.combine) {
            let others: Vec<NemesisKind> = opts
                .kinds
                .iter()
                .copied()
                .filter(|k| *k != kinds[0] && !(k.is_network() && kinds[0].is_network()))
                .collect();
            if let Some(k) = others.choose(&mut rng) {
                kinds.push(*k);
            }
        }
        let mut faults: Vec<(u64, Fault)> = Vec::new();
        for kind in kinds {
            let fault = plan::plan(kind, &mut rng, &c, opts.limits).await;
            next_id += 1;
            let notes = fault.apply(&c).await;
            timeline.record(next_id, Phase::Start, kind.name(), &fault.nodes(), fault.describe(), fault.skew_ms());
            for n in notes {
                timeline.record(next_id, Phase::Note, kind.name(), &[], n, None);
            }
            injected += 1;
            faults.push((next_id, fault));
        }
        let stopped = pause_or_stop(&mut rng, opts.hold, &mut stop).await;
        note_crashes(&c, &timeline, &mut next_id);
        for (id, fault) in faults.into_iter().rev() {
            let notes = fault.heal(&c).await;
            timeline.record(id, Phase::Heal, fault.kind().name(), &fault.nodes(), fault.describe(), None);
            for n in notes {
                timeline.record(id, Phase::Note, fault.kind().name(), &[], n, None);
            }
        }
        if stopped {
            break;
        }
    }
    note_crashes(&c, &timeline, &mut next_id);
    next_id += 1;
    let mut notes = Vec::new();
    if opts.kinds.contains(&NemesisKind::Clock) {
        notes.extend(fault::unskew_all(&c).await);
    }
    notes.extend(fault::heal_all(&c).await);
    timeline.record(next_id, Phase::Note, "heal-all", &c.ids(), "every fault healed".into(), None);
    for n in notes {
        timeline.record(next_id, Phase::Note, "heal-all", &[], n, None);
    }
    injected
}

/// Records nodes that died on their own (they stay down until the next heal restarts them).
fn note_crashes(c: &Cluster, timeline: &Timeline, next_id: &mut u64) {
    for crash in c.reap_crashes() {
        *next_id += 1;
        timeline.record(
            *next_id,
            Phase::Note,
            "crash",
            &[crash.node],
            format!("node {} exited on its own ({}); last log lines:\n{}", crash.node, crash.status, crash.log_tail),
            None,
        );
    }
}
