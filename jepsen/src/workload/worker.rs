//! What every workload client task holds: an RNG seeded from the run's seed, its own SDK client
//! (hence its own session tokens), its process number and its cache of slot keys.

use std::sync::Arc;

use raftcache_client::Client;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::keys::{KeyCache, Slots};
use super::ops::Proc;
use super::Ctx;
use crate::history::Workload;

/// One client task of a workload.
pub struct Worker {
    pub ctx: Arc<Ctx>,
    pub slots: Arc<Slots>,
    /// Seeded from the run's seed, the task kind's `salt` and the process number, so a seed
    /// reproduces every task's choices.
    pub rng: StdRng,
    pub client: Client,
    pub proc: Proc,
    workload: Workload,
    keys: KeyCache,
}

impl Worker {
    /// Connects the task that starts as `process`; `None` if the run stops first. `salt` keeps
    /// the RNG streams of different kinds of task apart.
    pub async fn connect(
        ctx: Arc<Ctx>,
        slots: Arc<Slots>,
        workload: Workload,
        salt: u64,
        process: u64,
    ) -> Option<Worker> {
        let rng = StdRng::seed_from_u64(ctx.seed.wrapping_mul(salt).wrapping_add(process));
        let client = ctx.connect().await?;
        let proc = Proc::new(process, ctx.stride);
        Some(Worker { ctx, slots, rng, client, proc, workload, keys: KeyCache::default() })
    }

    /// A slot drawn at random and its current key (noted as used by the run); `None` once the
    /// run is stopping.
    pub fn next_key(&mut self) -> Option<(usize, String)> {
        if self.ctx.stopping() {
            return None;
        }
        let slot = self.rng.gen_range(0..self.slots.len());
        let key = self.keys.current(&self.slots, &self.client, slot);
        self.ctx.note_key(self.workload, &key);
        Some((slot, key))
    }
}
