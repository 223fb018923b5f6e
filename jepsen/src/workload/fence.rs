//! The fence workload: slow loaders race invalidators.
//!
//! A loader reads a key (value and version — for an absent key, its fence), "computes" for up
//! to `load_ms`, then writes a fresh value conditioned on the version it read, as a cache-aside
//! loader using raftcache's fences would. Invalidators invalidate the same keys. Whatever the
//! interleaving, no write based on a version older than an acknowledged invalidation may apply
//! after it.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::keys::Slots;
use super::ops;
use super::worker::Worker;
use super::Ctx;
use crate::history::{Consistency, Workload};

const W: Workload = Workload::Fence;

/// One loader.
pub async fn loader(ctx: Arc<Ctx>, slots: Arc<Slots>, process: u64) {
    let Some(mut w) = Worker::connect(ctx, slots, W, 37, process).await else { return };
    while let Some((slot, key)) = w.next_key() {
        w.slots.count_op(slot);
        let Some((_, version)) = ops::read(&w.ctx, &w.client, &mut w.proc, W, &key, Consistency::Linearizable).await
        else {
            continue;
        };
        tokio::time::sleep(Duration::from_millis(w.rng.gen_range(0..=w.ctx.opts.load_ms))).await;
        ops::cas(&w.ctx, &w.client, &mut w.proc, W, &key, version).await;
    }
}

/// One invalidator.
pub async fn invalidator(ctx: Arc<Ctx>, slots: Arc<Slots>, process: u64) {
    let Some(mut w) = Worker::connect(ctx, slots, W, 41, process).await else { return };
    while let Some((_, key)) = w.next_key() {
        ops::invalidate(&w.ctx, &w.client, &mut w.proc, W, &key).await;
        tokio::time::sleep(Duration::from_millis(w.rng.gen_range(0..=w.ctx.opts.load_ms))).await;
    }
}
