//! # raftcache-core
//!
//! Everything in raftcache that can be decided without IO: key and namespace types with their
//! limits, the commands that travel through a group's Raft log, the per-group cache state
//! machine, the hash ring that maps keys onto groups, and group placement.
//!
//! ## THE STATE MACHINE
//!
//! Each Raft group replicates a [`CacheState`]. Applying a log entry is a pure, deterministic
//! function of the current state and the entry ([`CacheState::apply`]): no clocks, no
//! randomness, no IO. Time enters only through the leader-stamped `now_ms` carried by every
//! [`Request`]; the state keeps the maximum it has seen so time never runs backwards across the
//! log, even when leaders' clocks disagree.
//!
//! - **Versions.** The version of a value is the Raft log index of the write that produced it,
//!   so versions strictly increase per key and never exceed the group's applied index (a version
//!   is also a read-your-writes token). A leader may put concurrent writes of *different* keys
//!   into one entry ([`Command::Batch`]); they share its index as their version. Two writes of
//!   one key never share an entry, so no key sees one version twice.
//! - **Fences.** `Invalidate` removes a key and records a fence (the invalidation's log index)
//!   that outlives the value for a retention window. A conditional write whose expected version
//!   predates the fence is rejected as [`Rejection::Fenced`]: a slow loader can never put back
//!   the value an invalidation removed.
//! - **TTL.** Expiry is measured against leader-stamped time. Reads hide expired entries; the
//!   leader proposes `Expire` sweeps to reclaim memory, and apply removes exactly the listed keys
//!   that are expired as of the sweep's stamp, so every replica removes the same set.
//! - **Idempotent retries.** Writes carry `(client_id, seq)`. The state remembers the recent
//!   results of each client (bounded), so a retried write returns the original result instead of
//!   applying twice.
//! - **Digest.** [`CacheState::digest`] is a stable hash of the whole state; replicas fed the same
//!   log have equal digests.
//!
//! ## CAVEATS
//!
//! A fence protects only while it is retained (`fence_retention_ms`, default 60 s). A loader
//! that holds a version longer than that may write against a key whose fence has been pruned.

#![warn(missing_docs)]

mod command;
mod error;
mod key;
pub mod limits;
mod placement;
mod ring;
mod serde_bytes;
mod state;
mod topology;
pub mod waiting;

pub use command::{BatchItem, ClientSeq, Command, Condition, Rejection, Request, Response};
pub use error::{Error, Result};
pub use key::{validate_ttl_ms, validate_value, CacheKey, Namespace};
pub use placement::place_groups;
pub use ring::{HashRing, RING_SEED, VNODES_PER_GROUP};
pub use state::{CacheState, Entry, ReadResult, StateConfig};
pub use topology::{GroupId, NodeId, Topology, META_GROUP};
