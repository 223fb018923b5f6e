//! Key slots: a few keys per workload in use at a time, each pinned to a data group, each moving
//! on to a fresh key after a number of operations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use raftcache_client::Client;

use super::NS;

/// The key slots of one workload.
pub struct Slots {
    prefix: &'static str,
    generation: Vec<AtomicU64>,
    ops: Vec<AtomicU64>,
    ops_per_key: u64,
    groups: u64,
}

impl Slots {
    /// `count` slots named `<prefix><slot>.<generation>…`; `ops_per_key = 0` never rotates.
    pub fn new(prefix: &'static str, count: usize, ops_per_key: u64, groups: u64) -> Self {
        Self {
            prefix,
            generation: (0..count).map(|_| AtomicU64::new(0)).collect(),
            ops: (0..count).map(|_| AtomicU64::new(0)).collect(),
            ops_per_key,
            groups: groups.max(1),
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.generation.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.generation.is_empty()
    }

    /// The slot's current generation.
    pub fn generation(&self, slot: usize) -> u64 {
        self.generation[slot].load(Ordering::Relaxed)
    }

    /// Counts an operation on `slot`, moving it to a fresh key when its quota is used.
    pub fn count_op(&self, slot: usize) {
        if self.ops_per_key == 0 {
            return;
        }
        if self.ops[slot].fetch_add(1, Ordering::Relaxed) + 1 >= self.ops_per_key {
            self.ops[slot].store(0, Ordering::Relaxed);
            self.generation[slot].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The data group a slot's keys live in.
    pub fn group_of_slot(&self, slot: usize) -> u64 {
        slot as u64 % self.groups + 1
    }

    /// The key of `slot` at `generation`: the first `<prefix><slot>.<generation>.<n>` that the
    /// ring maps to the slot's group (so every client derives the same name).
    pub fn key(&self, client: &Client, slot: usize, generation: u64) -> String {
        let want = self.group_of_slot(slot);
        for n in 0..10_000u32 {
            let k = format!("{}{slot}.{generation}.{n}", self.prefix);
            if client.group_of(NS, k.as_bytes()).ok() == Some(want) {
                return k;
            }
        }
        format!("{}{slot}.{generation}", self.prefix)
    }
}

/// A client task's cache of slot keys.
#[derive(Default)]
pub struct KeyCache(HashMap<(usize, u64), String>);

impl KeyCache {
    /// The current key of `slot`.
    pub fn current(&mut self, slots: &Slots, client: &Client, slot: usize) -> String {
        let generation = slots.generation(slot);
        self.0.entry((slot, generation)).or_insert_with(|| slots.key(client, slot, generation)).clone()
    }
}
