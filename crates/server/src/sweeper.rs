//! Leader-side background work of each local group: TTL sweeps, and publishing the topology
//! into the metadata group.
//!
//! Expiry is decided by the leader and replicated as `Expire` commands, so every replica removes
//! the same keys at the same log index; replicas never drop entries on their own clocks.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raftcache_core::{CacheKey, Command, Condition, ReadResult, META_GROUP};
use tokio::sync::watch;

use crate::clock::stamp_ms;
use crate::router::{Local, Router};

/// How many keys one `Expire` command removes at most.
const SWEEP_BATCH: usize = 1_000;
/// How often leaders look for expired keys.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// Where the topology lives in the metadata group.
pub fn topology_key() -> CacheKey {
    CacheKey::new("raftcache.meta", Bytes::from_static(b"topology")).expect("static key is valid")
}

/// Runs until `shutdown` changes.
pub async fn run(router: Arc<Router>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut topology_published = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        for g in router.registry.iter().filter(|g| g.is_leader()) {
            let (keys, now) = {
                let d = g.data();
                let now = stamp_ms(d.state.now_ms());
                (d.state.expired_keys(now, SWEEP_BATCH), now)
            };
            if !keys.is_empty() {
                let n = keys.len();
                let cmd = Command::Expire { as_of_ms: now, keys };
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                if let Local::Done(Err(e)) = router.write_local(g.id, None, cmd, deadline).await {
                    tracing::debug!(group = g.id, keys = n, error = %e, "expire sweep not applied");
                }
            }
        }
        if !topology_published {
            topology_published = publish_topology(&router).await;
        }
    }
}

/// Writes the topology into the metadata group once (if-absent); true when it is there.
async fn publish_topology(router: &Router) -> bool {
    let Some(g) = router.local(META_GROUP) else { return true };
    let key = topology_key();
    if matches!(g.data().state.get(&key, 0), ReadResult::Found(_)) {
        return true;
    }
    if !g.is_leader() {
        return false;
    }
    let value = Bytes::from(serde_json::to_vec(&*router.topology).expect("topology serializes"));
    let cmd = Command::Set { key, value, ttl_ms: None, cond: Condition::IfAbsent };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    matches!(router.write_local(META_GROUP, None, cmd, deadline).await, Local::Done(Ok(_)))
}
