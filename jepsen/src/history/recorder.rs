use std::io::{BufRead, BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};

use super::event::{Event, EventType, Value};

/// Collects the events of a run, timestamped against one monotonic start.
///
/// Shared by every client task; recording is a short lock on a `Vec`.
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
    counts: [AtomicU64; 3],
}

impl Recorder {
    /// A recorder whose time 0 is `start`.
    pub fn new(start: Instant) -> Self {
        Self { start, events: Mutex::new(Vec::new()), counts: Default::default() }
    }

    /// The run's time 0.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Nanoseconds since the start.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Records `invoke` (its `time` is set here) and returns the handle that completes it.
    pub fn invoke(&self, mut invoke: Event) -> Pending<'_> {
        debug_assert_eq!(invoke.kind, EventType::Invoke);
        invoke.time = self.now();
        self.push(invoke.clone());
        Pending { rec: self, invoke }
    }

    fn push(&self, e: Event) {
        match e.kind {
            EventType::Ok => self.counts[0].fetch_add(1, Ordering::Relaxed),
            EventType::Fail => self.counts[1].fetch_add(1, Ordering::Relaxed),
            EventType::Info => self.counts[2].fetch_add(1, Ordering::Relaxed),
            EventType::Invoke => 0,
        };
        self.events.lock().expect("history lock poisoned").push(e);
    }

    /// Completed operations so far: (ok, fail, info).
    pub fn counts(&self) -> (u64, u64, u64) {
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        (c(0), c(1), c(2))
    }

    /// Every event so far, in the order recorded.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("history lock poisoned").clone()
    }
}

/// An invoked operation waiting for its completion. Dropping it without completing leaves the
/// operation open, which the checkers treat as `info`.
pub struct Pending<'a> {
    rec: &'a Recorder,
    invoke: Event,
}

impl Pending<'_> {
    fn complete(self, kind: EventType, fill: impl FnOnce(&mut Event)) {
        let mut e = Event { kind, time: self.rec.now(), ..self.invoke };
        fill(&mut e);
        self.rec.push(e);
    }

    /// The operation happened; `fill` adds what it returned.
    pub fn ok(self, fill: impl FnOnce(&mut Event)) {
        self.complete(EventType::Ok, fill)
    }

    /// The operation certainly had no effect.
    pub fn fail(self, error: impl ToString) {
        let error = error.to_string();
        self.complete(EventType::Fail, |e| e.error = Some(error))
    }

    /// The outcome is unknown.
    pub fn info(self, error: impl ToString) {
        let error = error.to_string();
        self.complete(EventType::Info, |e| e.error = Some(error))
    }

    /// A read's answer.
    pub fn read_ok(self, value: Option<u64>, version: u64, group: u64, node: u64) {
        self.ok(|e| {
            e.value = value.map(Value::Int);
            e.version = Some(version);
            e.group = Some(group);
            e.node = Some(node);
        })
    }
}

/// Writes `events` as JSON lines.
pub fn write_jsonl(path: &Path, events: &[Event]) -> Result<()> {
    let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(f);
    for e in events {
        serde_json::to_writer(&mut w, e)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

/// Reads a `history.jsonl`.
pub fn read_jsonl(path: &Path) -> Result<Vec<Event>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).with_context(|| format!("{}:{}: bad event", path.display(), i + 1))?);
    }
    Ok(out)
}
