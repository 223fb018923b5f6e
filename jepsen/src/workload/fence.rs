//! The fence workload: slow loaders race invalidators.
//!
//! A loader reads a key (value and version — for an absent key, its fence), "computes" for up
//! to `load_ms`, then writes a fresh value conditioned on the version it read, as a cache-aside
//! loader using raftcache's fences would. Invalidators invalidate the same keys. Whatever the
//! interleaving, no write based on a version older than an acknowledged invalidation may apply
//! after it.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::keys::{KeyCache, Slots};
use super::ops::{self, Proc};
use super::Ctx;
use crate::history::{Consistency, Workload};

const W: Workload = Workload::Fence;

/// One loader.
pub async fn loader(ctx: Arc<Ctx>, slots: Arc<Slots>, process: u64) {
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_mul(37).wrapping_add(process));
    let Some(client) = ctx.connect().await else { return };
    let mut proc = Proc::new(process, ctx.stride);
    let mut keys = KeyCache::default();
    while !ctx.stopping() {
        let slot = rng.gen_range(0..slots.len());
        let key = keys.current(&slots, &client, slot);
        ctx.note_key(W, &key);
        slots.count_op(slot);
        let Some((_, version)) = ops::read(&ctx, &client, &mut proc, W, &key, Consistency::Linearizable).await else {
            continue;
        };
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=ctx.opts.load_ms))).await;
        ops::cas(&ctx, &client, &mut proc, W, &key, version).await;
    }
}

/// One invalidator.
pub async fn invalidator(ctx: Arc<Ctx>, slots: Arc<Slots>, process: u64) {
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_mul(41).wrapping_add(process));
    let Some(client) = ctx.connect().await else { return };
    let mut proc = Proc::new(process, ctx.stride);
    let mut keys = KeyCache::default();
    while !ctx.stopping() {
        let slot = rng.gen_range(0..slots.len());
        let key = keys.current(&slots, &client, slot);
        ctx.note_key(W, &key);
        ops::invalidate(&ctx, &client, &mut proc, W, &key).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=ctx.opts.load_ms))).await;
    }
}
