//! Histories: what every client did, one JSON line per event.
//!
//! ## FORMAT
//!
//! Each operation is two events of the same `process`: an `invoke` when the client is about to
//! send it and a completion when the answer is in — `ok` (it happened, with what it saw), `fail`
//! (it certainly had no effect) or `info` (unknown: a timeout, a lost connection; it may take
//! effect at any later time, or never). A process runs one operation at a time; after an `info`
//! the worker carries on under a new process number, because the old operation may still be in
//! flight. `time` is nanoseconds since the run started, from a monotonic clock: an operation
//! whose completion time is below another's invoke time precedes it in real time.
//!
//! The exact fields are in [`Event`] and in `jepsen/README.md`.

mod event;
mod recorder;

pub use event::{Consistency, Event, EventType, Value, Workload, F};
pub use recorder::{read_jsonl, write_jsonl, Pending, Recorder};
