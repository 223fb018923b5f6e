//! # raftcache-raft
//!
//! The glue between openraft 0.9 and raftcache: every cache group is an independent
//! `openraft::Raft` instance, and one node hosts many of them.
//!
//! ## STORAGE
//!
//! One `sled::Db` per node. Group `g` owns the trees `g{g}/log` (entries keyed by big-endian log
//! index, bincode 2), `g{g}/meta` (vote, committed log id, last purged log id) and `g{g}/snap`
//! (the current snapshot). With [`Durability::Fsync`] an append is acknowledged to openraft only
//! after a flush of the Db returns; a [`Flusher`] thread batches the flushes of all groups,
//! so one fsync covers every entry appended before it (group commit). [`Durability::Async`] acknowledges at once and lets sled
//! flush in the background: a crash of a majority can lose acknowledged writes. Votes are always
//! flushed, because a forgotten vote can elect two leaders in one term.
//!
//! ## STATE MACHINE
//!
//! The state of a group is a [`raftcache_core::CacheState`] in memory behind a lock shared with
//! the read path. Snapshots are the bincode encoding of that state; restart loads the latest
//! snapshot and openraft re-applies the committed log after it.
//!
//! ## NETWORK
//!
//! Every Raft RPC carries its group id; a node keeps one HTTP/2 channel per peer and all groups
//! share it ([`PeerChannels`]). The receiving side ([`RaftServiceImpl`]) hands each RPC to the
//! right group's `Raft`.
//!
//! ## READS
//!
//! Linearizable reads go through [`ReadIndexBatcher`]: one heartbeat round confirms leadership
//! for every read queued before the round started, so concurrent reads share rounds.
//!
//! EVENTUAL reads are bounded by [`Group::staleness`]: not the time since a leader was last
//! heard, but the age of the newest state this replica has applied that a quorum-confirmed
//! leader had committed (see `freshness.rs`).
//!
//! ## CAVEATS
//!
//! Group membership is fixed at bootstrap; moving replicas is not implemented yet.

#![warn(missing_docs)]

mod codec;
mod config;
mod error;
mod flusher;
mod freshness;
mod group;
mod log_store;
mod network;
mod proposer;
mod read_index;
mod registry;
mod service;
mod state_machine;
mod types;

pub use codec::{decode, encode};
pub use config::{raft_config, Durability, RaftTuning};
pub use error::{Error, Result};
pub use flusher::Flusher;
pub use group::{Group, WriteError};
pub use log_store::SledLogStore;
pub use network::{GroupNetworkFactory, PeerChannels, MAX_RAFT_MESSAGE};
pub use read_index::{ReadIndexBatcher, ReadIndexError};
pub use registry::GroupRegistry;
pub use service::RaftServiceImpl;
pub use state_machine::{SmData, StateMachineStore};
pub use types::{NodeInfo, Raft, TypeConfig};
