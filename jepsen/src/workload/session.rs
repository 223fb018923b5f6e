//! The session workload: writes through the leader, SESSION and EVENTUAL reads through
//! replicas. Each client has its own SDK client, hence its own session tokens.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::keys::{KeyCache, Slots};
use super::ops::{self, Proc};
use super::Ctx;
use crate::history::{Consistency, Workload};

const W: Workload = Workload::Session;

/// One session client.
pub async fn client(ctx: Arc<Ctx>, slots: Arc<Slots>, process: u64) {
    let mut rng = StdRng::seed_from_u64(ctx.seed.wrapping_mul(43).wrapping_add(process));
    let Some(client) = ctx.connect().await else { return };
    let mut proc = Proc::new(process, ctx.stride);
    let mut keys = KeyCache::default();
    while !ctx.stopping() {
        let slot = rng.gen_range(0..slots.len());
        let key = keys.current(&slots, &client, slot);
        ctx.note_key(W, &key);
        match rng.gen_range(0..100) {
            0..30 => {
                ops::write(&ctx, &client, &mut proc, W, &key).await;
            }
            30..80 => {
                ops::read(&ctx, &client, &mut proc, W, &key, Consistency::Session).await;
            }
            _ => {
                ops::read(&ctx, &client, &mut proc, W, &key, Consistency::Eventual).await;
            }
        }
        slots.count_op(slot);
    }
}
