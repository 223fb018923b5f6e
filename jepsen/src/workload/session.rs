//! The session workload: writes through the leader, SESSION and EVENTUAL reads through
//! replicas. Each client has its own SDK client, hence its own session tokens.

use std::sync::Arc;

use rand::Rng;

use super::keys::Slots;
use super::ops;
use super::worker::Worker;
use super::Ctx;
use crate::history::{Consistency, Workload};

const W: Workload = Workload::Session;

/// One session client.
pub async fn client(ctx: Arc<Ctx>, slots: Arc<Slots>, process: u64) {
    let Some(mut w) = Worker::connect(ctx, slots, W, 43, process).await else { return };
    while let Some((slot, key)) = w.next_key() {
        let (ctx, client, proc) = (&w.ctx, &w.client, &mut w.proc);
        match w.rng.gen_range(0..100) {
            0..30 => {
                ops::write(ctx, client, proc, W, &key).await;
            }
            30..80 => {
                ops::read(ctx, client, proc, W, &key, Consistency::Session).await;
            }
            _ => {
                ops::read(ctx, client, proc, W, &key, Consistency::Eventual).await;
            }
        }
        w.slots.count_op(slot);
    }
}
