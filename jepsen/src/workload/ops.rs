//! Recorded operations through the SDK. Each helper records the invoke, runs the operation and
//! records how it ended: `ok`, `fail` when the error proves it had no effect (any failed read;
//! a write whose error [`is_definite`](raftcache_client::Error::is_definite)), `info` otherwise.
//! After an `info` the process number moves on (the old operation may still be in flight).

use std::time::Duration;

use raftcache_client::{Client, Condition, Consistency as Level, Error, SetOptions, WriteResult};

use super::{Ctx, NS};
use crate::history::{Consistency, Event, EventType, Pending, Value, Workload, F};

/// A logical client: its current process number.
pub struct Proc {
    /// The process number in the history.
    pub id: u64,
    stride: u64,
}

impl Proc {
    /// Process `id`; after an `info` it becomes `id + stride`.
    pub fn new(id: u64, stride: u64) -> Self {
        Self { id, stride }
    }

    fn crashed(&mut self) {
        self.id += self.stride;
    }
}

/// The invoke event of an operation.
pub fn invoke(proc: &Proc, workload: Workload, f: F, key: &str, value: Option<Value>) -> Event {
    let mut e = Event::new(proc.id, EventType::Invoke, f, key, value, 0);
    e.workload = Some(workload);
    e
}

/// Values are decimal strings; anything else reads as `u64::MAX`, which no one writes, so the
/// integrity checker reports it.
pub fn decode(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX)
}

fn level_of(c: Consistency, max_staleness_ms: u64) -> Level {
    match c {
        Consistency::Linearizable => Level::Linearizable,
        Consistency::FollowerLinearizable => Level::FollowerLinearizable,
        Consistency::Session => Level::Session { min_index: 0 },
        Consistency::Eventual => Level::Eventual { max_staleness: Duration::from_millis(max_staleness_ms) },
    }
}

/// A read at `level`. Returns (value, version) when ok.
pub async fn read(
    ctx: &Ctx,
    client: &Client,
    proc: &mut Proc,
    workload: Workload,
    key: &str,
    level: Consistency,
) -> Option<(Option<u64>, u64)> {
    let mut e = invoke(proc, workload, F::Read, key, None);
    e.consistency = Some(level);
    if level == Consistency::Eventual {
        e.max_staleness_ms = Some(ctx.opts.max_staleness_ms);
    }
    let p = ctx.rec.invoke(e);
    match client.get_with(NS, key.as_bytes(), level_of(level, ctx.opts.max_staleness_ms)).await {
        Ok(r) => {
            let value = r.value.as_deref().map(decode);
            p.read_ok(value, r.version, r.group, r.served_by);
            Some((value, r.version))
        }
        Err(err) => {
            p.fail(err);
            None
        }
    }
}

/// Records how a write (set, delete, invalidate) ended and returns its version when ok.
fn finish_write(p: Pending<'_>, proc: &mut Proc, result: Result<WriteResult, Error>) -> Option<u64> {
    match result {
        Ok(r) => {
            p.ok(|e| applied(e, &r));
            Some(r.version)
        }
        Err(err) => {
            write_failed(p, proc, err);
            None
        }
    }
}

/// What an acknowledged write adds to its completion.
fn applied(e: &mut Event, r: &WriteResult) {
    e.version = Some(r.version);
    e.group = Some(r.group);
    e.node = Some(r.served_by);
}

fn write_failed(p: Pending<'_>, proc: &mut Proc, err: Error) {
    if err.is_definite() {
        p.fail(err);
    } else {
        p.info(err);
        proc.crashed();
    }
}

/// An unconditional set of a fresh value. Returns its version when ok.
pub async fn write(ctx: &Ctx, client: &Client, proc: &mut Proc, workload: Workload, key: &str) -> Option<u64> {
    let value = ctx.fresh_value();
    let p = ctx.rec.invoke(invoke(proc, workload, F::Write, key, Some(Value::Int(value))));
    let result = client.set_with(NS, key.as_bytes(), value.to_string(), SetOptions::default()).await;
    finish_write(p, proc, result)
}

/// What a compare-and-set did.
pub enum CasOutcome {
    /// Written at this version.
    Applied(u64),
    /// Refused (the condition did not hold, or the key is fenced).
    Refused,
}

/// A set of a fresh value if the key's version is `expected`.
pub async fn cas(
    ctx: &Ctx,
    client: &Client,
    proc: &mut Proc,
    workload: Workload,
    key: &str,
    expected: u64,
) -> Option<CasOutcome> {
    let value = ctx.fresh_value();
    let p = ctx.rec.invoke(invoke(proc, workload, F::Cas, key, Some(Value::Pair(expected, value))));
    let opts = SetOptions { ttl: None, condition: Condition::IfVersion(expected) };
    // A refusal is an ok operation with `result: false`, the version the server reported and why.
    let refused = |p: Pending<'_>, version: u64, why: &str| {
        p.ok(|e| {
            e.result = Some(false);
            e.version = Some(version);
            e.error = Some(why.into());
        });
        Some(CasOutcome::Refused)
    };
    match client.set_with(NS, key.as_bytes(), value.to_string(), opts).await {
        Ok(r) => {
            p.ok(|e| {
                e.result = Some(true);
                applied(e, &r);
            });
            Some(CasOutcome::Applied(r.version))
        }
        Err(Error::ConditionFailed { current_version }) => refused(p, current_version, "condition_failed"),
        Err(Error::Fenced { fence }) => refused(p, fence, "fenced"),
        Err(err) => {
            write_failed(p, proc, err);
            None
        }
    }
}

/// An unconditional delete. Returns its log index when ok.
pub async fn delete(ctx: &Ctx, client: &Client, proc: &mut Proc, workload: Workload, key: &str) -> Option<u64> {
    let p = ctx.rec.invoke(invoke(proc, workload, F::Delete, key, None));
    let result = client.delete_with(NS, key.as_bytes(), None).await;
    finish_write(p, proc, result)
}

/// An invalidation. Returns the fence when ok.
pub async fn invalidate(ctx: &Ctx, client: &Client, proc: &mut Proc, workload: Workload, key: &str) -> Option<u64> {
    let p = ctx.rec.invoke(invoke(proc, workload, F::Invalidate, key, None));
    let result = client.invalidate(NS, key.as_bytes()).await;
    finish_write(p, proc, result)
}
