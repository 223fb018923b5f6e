//! The register workload: linearizable read / write / compare-and-set / delete on a few keys.

use std::collections::HashMap;
use std::sync::Arc;

use rand::Rng;

use super::direct::Direct;
use super::keys::Slots;
use super::ops::{self, CasOutcome};
use super::worker::Worker;
use super::Ctx;
use crate::history::{Consistency, Workload};

const W: Workload = Workload::Register;

/// One register client: runs until the run stops.
pub async fn client(ctx: Arc<Ctx>, slots: Arc<Slots>, process: u64) {
    let Some(mut w) = Worker::connect(ctx, slots, W, 31, process).await else { return };
    let mut direct = Direct::default();
    // The version this client last saw of each key: what its compare-and-sets expect.
    let mut known: HashMap<String, u64> = HashMap::new();
    while let Some((slot, key)) = w.next_key() {
        let (ctx, client, proc) = (&w.ctx, &w.client, &mut w.proc);
        match w.rng.gen_range(0..100) {
            0..20 => {
                if let Some((_, v)) = ops::read(ctx, client, proc, W, &key, Consistency::Linearizable).await {
                    known.insert(key.clone(), v);
                }
            }
            20..30 => {
                if let Some((_, v)) = ops::read(ctx, client, proc, W, &key, Consistency::FollowerLinearizable).await {
                    known.insert(key.clone(), v);
                }
            }
            30..45 => {
                let (node, addr) = ctx.nodes[w.rng.gen_range(0..ctx.nodes.len())].clone();
                if let Some((_, v)) = direct.read(ctx, proc, W, &key, node, &addr).await {
                    known.insert(key.clone(), v);
                }
            }
            45..65 => {
                if let Some(v) = ops::write(ctx, client, proc, W, &key).await {
                    known.insert(key.clone(), v);
                }
            }
            65..90 => {
                // Expect only versions of values this client saw (the checker's model relies on
                // it): a refusal's "current version" may belong to a value no one observed.
                let expected = known.get(&key).copied().unwrap_or(0);
                match ops::cas(ctx, client, proc, W, &key, expected).await {
                    Some(CasOutcome::Applied(v)) => {
                        known.insert(key.clone(), v);
                    }
                    Some(CasOutcome::Refused) | None => {
                        known.remove(&key);
                    }
                }
            }
            _ => {
                if ops::delete(ctx, client, proc, W, &key).await.is_some() {
                    known.insert(key.clone(), 0);
                }
            }
        }
        w.slots.count_op(slot);
    }
}
