//! Workloads: concurrent clients that run operations against the cluster and record each one.
//!
//! | workload | clients | operations | checked by |
//! |---|---|---|---|
//! | register | `register_clients` | linearizable reads (SDK to the leader, SDK follower-linearizable, and direct to a random node, which must forward), writes, compare-and-set on the version, deletes | linearizability |
//! | fence | `loaders` + `invalidators` | loaders read a key, "compute" for a while, then write conditioned on the version they read; invalidators invalidate the same keys | fence |
//! | session | `session_clients` | writes, SESSION reads and EVENTUAL reads through replicas | session |
//!
//! Keys live in the namespace `jepsen`, a few slots per workload, each slot pinned to a data
//! group so the keys spread over the groups. A slot moves on to a fresh key after a number of
//! operations: every key's history stays short, which keeps the linearizability search (whose
//! cost grows with concurrency and with operations of unknown outcome) fast. Every value written
//! is unique in the run.

mod direct;
pub mod fence;
mod keys;
pub mod liveness;
mod ops;
pub mod register;
pub mod session;
mod worker;

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raftcache_client::{Client, ClientOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::history::{Recorder, Workload};
pub use keys::Slots;
pub use ops::{read, Proc};

/// The namespace of every key.
pub const NS: &str = "jepsen";

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 3] = [Workload::Register, Workload::Fence, Workload::Session];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Fence => "fence",
            Workload::Session => "session",
        }
    }

    /// Parses `register,fence` (also `all`).
    pub fn parse_list(s: &str) -> Result<Vec<Workload>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                out.extend(Self::ALL);
            } else {
                out.push(part.parse()?);
            }
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err("no workload given".into());
        }
        Ok(out)
    }
}

impl FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("unknown workload {s:?}; expected register, fence, session or all"))
    }
}

/// Sizes of the workloads.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkloadOptions {
    /// Which workloads run.
    pub workloads: Vec<Workload>,
    /// Register clients.
    pub register_clients: usize,
    /// Register key slots.
    pub register_keys: usize,
    /// Operations on a register key before its slot moves to a fresh key.
    pub ops_per_key: u64,
    /// Fence loaders.
    pub loaders: usize,
    /// Fence invalidators.
    pub invalidators: usize,
    /// Fence key slots.
    pub fence_keys: usize,
    /// Longest "computation" of a loader between its read and its conditional write (ms).
    pub load_ms: u64,
    /// Session clients.
    pub session_clients: usize,
    /// Session key slots.
    pub session_keys: usize,
    /// Staleness bound of EVENTUAL reads (ms).
    pub max_staleness_ms: u64,
    /// Deadline of one client operation, retries included (ms).
    pub op_timeout_ms: u64,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        Self {
            workloads: Workload::ALL.to_vec(),
            register_clients: 8,
            register_keys: 6,
            ops_per_key: 200,
            loaders: 4,
            invalidators: 2,
            fence_keys: 3,
            load_ms: 60,
            session_clients: 4,
            session_keys: 3,
            max_staleness_ms: 2_000,
            op_timeout_ms: 3_000,
        }
    }
}

/// What every client task shares.
pub struct Ctx {
    /// The history.
    pub rec: Arc<Recorder>,
    /// Turns true when clients should finish their operation and stop.
    pub stop: watch::Receiver<bool>,
    /// Node id → client address.
    pub nodes: Vec<(u64, String)>,
    /// Data groups, for pinning slots.
    pub groups: u64,
    /// Sizes.
    pub opts: WorkloadOptions,
    /// Process-number stride (the number of client tasks).
    pub stride: u64,
    /// The run's seed.
    pub seed: u64,
    next_value: AtomicU64,
    used_keys: Mutex<BTreeSet<(Workload, String)>>,
}

impl Ctx {
    /// A context for one run.
    pub fn new(
        rec: Arc<Recorder>,
        stop: watch::Receiver<bool>,
        nodes: Vec<(u64, String)>,
        groups: u64,
        opts: WorkloadOptions,
        seed: u64,
    ) -> Self {
        let w = &opts.workloads;
        let mut stride = 0;
        if w.contains(&Workload::Register) {
            stride += opts.register_clients;
        }
        if w.contains(&Workload::Fence) {
            stride += opts.loaders + opts.invalidators;
        }
        if w.contains(&Workload::Session) {
            stride += opts.session_clients;
        }
        Self {
            rec,
            stop,
            nodes,
            groups,
            opts,
            stride: stride.max(1) as u64,
            seed,
            next_value: AtomicU64::new(1),
            used_keys: Mutex::default(),
        }
    }

    /// A value no one has written before.
    pub fn fresh_value(&self) -> u64 {
        self.next_value.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether clients should stop.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Notes that `key` of `workload` was used (for the final reads).
    pub fn note_key(&self, workload: Workload, key: &str) {
        let mut keys = self.used_keys.lock().expect("key set lock poisoned");
        if !keys.contains(&(workload, key.to_owned())) {
            keys.insert((workload, key.to_owned()));
        }
    }

    /// Every key used so far.
    pub fn used_keys(&self) -> Vec<(Workload, String)> {
        self.used_keys.lock().expect("key set lock poisoned").iter().cloned().collect()
    }

    /// Client options for workload clients.
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions { timeout: Duration::from_millis(self.opts.op_timeout_ms), ..ClientOptions::default() }
    }

    /// Connects an SDK client, retrying until it works or the run stops.
    pub async fn connect(&self) -> Option<Client> {
        let endpoints: Vec<String> = self.nodes.iter().map(|(_, a)| a.clone()).collect();
        loop {
            if let Ok(c) = Client::connect_with(endpoints.clone(), self.client_options()).await {
                return Some(c);
            }
            if self.stopping() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
