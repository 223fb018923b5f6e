//! The nemesis timeline: when each fault started and healed, for the report and the plot.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Start, heal, or a remark (a crash noticed, a fault that could not be applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The fault began.
    Start,
    /// The fault was undone.
    Heal,
    /// Something worth knowing.
    Note,
}

/// One line of `nemesis.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NemesisEvent {
    /// ns since the run started (same clock as the history).
    pub time: u64,
    /// Fault number; a start and its heal share it.
    pub id: u64,
    /// start, heal or note.
    pub phase: Phase,
    /// kill, pause, partition, delay, clock, heal-all, crash…
    pub kind: String,
    /// Nodes involved.
    pub nodes: Vec<u64>,
    /// What exactly.
    pub description: String,
    /// For clock faults: the skew set, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew_ms: Option<i64>,
}

/// A fault's time span.
#[derive(Clone, Debug)]
pub struct FaultWindow {
    /// Kind of fault.
    pub kind: String,
    /// Start (ns).
    pub start: u64,
    /// Heal (ns); `None` if never healed in the record.
    pub end: Option<u64>,
    /// What it was.
    pub description: String,
}

/// Collects nemesis events during a run.
pub struct Timeline {
    start: Instant,
    events: Mutex<Vec<NemesisEvent>>,
    active: Mutex<BTreeMap<u64, String>>,
}

impl Timeline {
    /// A timeline whose time 0 is `start` (the history's).
    pub fn new(start: Instant) -> Self {
        Self { start, events: Mutex::default(), active: Mutex::default() }
    }

    /// Records an event now.
    pub fn record(&self, id: u64, phase: Phase, kind: &str, nodes: &[u64], description: String, skew_ms: Option<i64>) {
        let time = self.start.elapsed().as_nanos() as u64;
        {
            let mut active = self.active.lock().expect("timeline lock poisoned");
            match phase {
                Phase::Start => {
                    active.insert(id, format!("{kind}: {description}"));
                }
                Phase::Heal => {
                    active.remove(&id);
                }
                Phase::Note => {}
            }
        }
        self.events.lock().expect("timeline lock poisoned").push(NemesisEvent {
            time,
            id,
            phase,
            kind: kind.to_owned(),
            nodes: nodes.to_vec(),
            description,
            skew_ms,
        });
    }

    /// Faults in force now, described.
    pub fn active(&self) -> Vec<String> {
        self.active.lock().expect("timeline lock poisoned").values().cloned().collect()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<NemesisEvent> {
        self.events.lock().expect("timeline lock poisoned").clone()
    }
}

/// The fault windows of a list of events.
pub fn windows(events: &[NemesisEvent]) -> Vec<FaultWindow> {
    let mut out: Vec<FaultWindow> = Vec::new();
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    for e in events {
        match e.phase {
            Phase::Start => {
                open.insert(e.id, out.len());
                out.push(FaultWindow {
                    kind: e.kind.clone(),
                    start: e.time,
                    end: None,
                    description: e.description.clone(),
                });
            }
            Phase::Heal => {
                if let Some(i) = open.remove(&e.id) {
                    out[i].end = Some(e.time);
                }
            }
            Phase::Note => {}
        }
    }
    out
}

/// The largest forward clock skew set in `events` (0 if none).
pub fn max_forward_skew_ms(events: &[NemesisEvent]) -> u64 {
    events.iter().filter_map(|e| e.skew_ms).filter(|s| *s > 0).max().unwrap_or(0) as u64
}
