//! Faults: how each is applied to the cluster and undone.

use std::collections::BTreeSet;

use crate::cluster::proxy::LinkMode;
use crate::cluster::{Cluster, NodeState};

use super::NemesisKind;

/// One fault, fully decided (which nodes, which links, how much).
#[derive(Clone, Debug)]
pub enum Fault {
    /// SIGKILL these nodes; healing restarts them.
    Kill {
        /// Targets.
        nodes: Vec<u64>,
        /// How they were chosen (one, leader, minority, majority, all).
        how: String,
    },
    /// SIGSTOP these nodes; healing SIGCONTs them.
    Pause {
        /// Targets.
        nodes: Vec<u64>,
        /// How they were chosen.
        how: String,
    },
    /// Cut these directed links.
    Partition {
        /// The shape (isolate-leader, halves, ring, bridge, one-way).
        shape: String,
        /// The sides, for the description.
        sides: String,
        /// Directed links cut.
        cut: Vec<(u64, u64)>,
        /// Drop or Blackhole.
        mode: LinkMode,
    },
    /// Slow these directed links.
    Delay {
        /// Links.
        links: Vec<(u64, u64)>,
        /// Which (a node's links, or all).
        how: String,
        /// One-way delay.
        ms: u64,
        /// Jitter.
        jitter_ms: u64,
    },
    /// Skew these nodes' clocks.
    Clock {
        /// (node, skew in ms).
        skews: Vec<(u64, i64)>,
    },
}

impl Fault {
    /// Its nemesis.
    pub fn kind(&self) -> NemesisKind {
        match self {
            Fault::Kill { .. } => NemesisKind::Kill,
            Fault::Pause { .. } => NemesisKind::Pause,
            Fault::Partition { .. } => NemesisKind::Partition,
            Fault::Delay { .. } => NemesisKind::Delay,
            Fault::Clock { .. } => NemesisKind::Clock,
        }
    }

    /// Nodes it touches.
    pub fn nodes(&self) -> Vec<u64> {
        let set: BTreeSet<u64> = match self {
            Fault::Kill { nodes, .. } | Fault::Pause { nodes, .. } => nodes.iter().copied().collect(),
            Fault::Partition { cut, .. } => cut.iter().flat_map(|(a, b)| [*a, *b]).collect(),
            Fault::Delay { links, .. } => links.iter().flat_map(|(a, b)| [*a, *b]).collect(),
            Fault::Clock { skews } => skews.iter().map(|(n, _)| *n).collect(),
        };
        set.into_iter().collect()
    }

    /// The largest skew it sets.
    pub fn skew_ms(&self) -> Option<i64> {
        match self {
            Fault::Clock { skews } => skews.iter().map(|(_, s)| *s).max_by_key(|s| s.abs()),
            _ => None,
        }
    }

    /// One line.
    pub fn describe(&self) -> String {
        match self {
            Fault::Kill { nodes, how } => format!("kill -9 {how} {nodes:?}"),
            Fault::Pause { nodes, how } => format!("SIGSTOP {how} {nodes:?}"),
            Fault::Partition { shape, sides, cut, mode } => {
                format!(
                    "{shape} {sides} ({} links, {})",
                    cut.len(),
                    if *mode == LinkMode::Drop { "drop" } else { "blackhole" }
                )
            }
            Fault::Delay { links, how, ms, jitter_ms } => {
                format!("{ms}±{jitter_ms} ms on {how} ({} links)", links.len())
            }
            Fault::Clock { skews } => {
                let s: Vec<String> = skews.iter().map(|(n, ms)| format!("n{n} {ms:+} ms")).collect();
                format!("skew {}", s.join(", "))
            }
        }
    }

    /// Applies it. Returns remarks about parts that could not be applied (a node already down).
    pub async fn apply(&self, c: &Cluster) -> Vec<String> {
        let mut notes = Vec::new();
        let line = format!("fault start: {}", self.describe());
        for n in self.nodes() {
            c.mark(n, &line);
        }
        match self {
            Fault::Kill { nodes, .. } => {
                for n in nodes {
                    if !c.kill(*n) {
                        notes.push(format!("node {n} was already down"));
                    }
                }
            }
            Fault::Pause { nodes, .. } => {
                for n in nodes {
                    if c.state(*n) != NodeState::Running {
                        notes.push(format!("node {n} is not running; not paused"));
                    } else if let Err(e) = c.pause(*n) {
                        notes.push(format!("pause node {n}: {e:#}"));
                    }
                }
            }
            Fault::Partition { cut, mode, .. } => {
                for (a, b) in cut {
                    c.net.set(*a, *b, *mode);
                }
            }
            Fault::Delay { links, ms, jitter_ms, .. } => {
                for (a, b) in links {
                    c.net.set(*a, *b, LinkMode::Delay { ms: *ms, jitter_ms: *jitter_ms });
                }
            }
            Fault::Clock { skews } => {
                for (n, ms) in skews {
                    if let Err(e) = c.set_clock_skew(*n, *ms).await {
                        notes.push(format!("skew node {n}: {e:#}"));
                    }
                }
            }
        }
        notes
    }

    /// Undoes it.
    pub async fn heal(&self, c: &Cluster) -> Vec<String> {
        let mut notes = Vec::new();
        match self {
            Fault::Kill { nodes, .. } => {
                for n in nodes {
                    if c.state(*n) == NodeState::Down {
                        if let Err(e) = c.restart(*n) {
                            notes.push(format!("restart node {n}: {e:#}"));
                        }
                    }
                }
            }
            Fault::Pause { nodes, .. } => {
                for n in nodes {
                    if c.state(*n) == NodeState::Paused {
                        if let Err(e) = c.resume(*n) {
                            notes.push(format!("resume node {n}: {e:#}"));
                        }
                    }
                }
            }
            Fault::Partition { cut, .. } => {
                for (a, b) in cut {
                    c.net.set(*a, *b, LinkMode::Pass);
                }
            }
            Fault::Delay { links, .. } => {
                for (a, b) in links {
                    c.net.set(*a, *b, LinkMode::Pass);
                }
            }
            Fault::Clock { skews } => {
                for (n, _) in skews {
                    if c.state(*n) == NodeState::Running {
                        if let Err(e) = c.set_clock_skew(*n, 0).await {
                            notes.push(format!("unskew node {n}: {e:#}"));
                        }
                    }
                }
            }
        }
        let line = format!("fault healed: {}", self.describe());
        for n in self.nodes() {
            c.mark(n, &line);
        }
        notes
    }
}

/// Undoes every fault there could be: restarts down nodes, continues paused ones, heals every
/// link, zeroes every clock skew.
pub async fn heal_all(c: &Cluster) -> Vec<String> {
    let mut notes = Vec::new();
    c.net.heal_all();
    for n in c.ids() {
        match c.state(n) {
            NodeState::Down => {
                if let Err(e) = c.restart(n) {
                    notes.push(format!("restart node {n}: {e:#}"));
                }
            }
            NodeState::Paused => {
                if let Err(e) = c.resume(n) {
                    notes.push(format!("resume node {n}: {e:#}"));
                }
            }
            NodeState::Running => {}
        }
    }
    for n in c.ids() {
        c.mark(n, "heal-all");
    }
    notes
}

/// Zeroes clock skews on every node (a restarted node starts unskewed anyway).
pub async fn unskew_all(c: &Cluster) -> Vec<String> {
    let mut notes = Vec::new();
    for n in c.in_state(NodeState::Running) {
        if let Err(e) = c.set_clock_skew(n, 0).await {
            notes.push(format!("unskew node {n}: {e:#}"));
        }
    }
    notes
}
