//! # raftcache-raft
//!
//! The glue between openraft 0.9 and raftcache: every cache group is an independent
//! `openraft::Raft` instance, and one node hosts many of them.
//!
//! ## STORAGE
//!
//! One write-ahead log per node ([`Wal`], files under `wal/`) holds the Raft logs of all its
//! groups: entries, votes, commit marks, truncations and purges are checksummed records in
//! segment files, replayed on start. A sync thread writes what was appended and, with
//! [`Durability::Fsync`], acknowledges an append to openraft only after an `fdatasync` that
//! covers it; one sync covers every group's appends since the last (group commit).
//! [`Durability::Async`] acknowledges at once and syncs every 500 ms: a crash of a majority can
//! lose acknowledged writes. Votes and truncations always wait for the sync, because a forgotten
//! vote can elect two leaders in one term. A segment is deleted once every group has purged
//! (snapshotted past) all its entries. A small `sled::Db` per node keeps the node's identity;
//! logs an earlier version kept in sled trees move into the WAL on first start
//! ([`WalLogStore::import_sled`]). Snapshots are files of their own (`state_machine.rs`).
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
//! share it ([`PeerChannels`]). Appends, votes and read indexes of every group travel over one
//! long-lived stream per peer, several to a message when they are ready together
//! (`stream.rs`); snapshots are unary calls. The receiving side ([`RaftServiceImpl`]) hands each
//! RPC to the right group's `Raft`.
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
// openraft's storage traits return its `StorageError` (224 bytes) by value, and the helpers
// behind them do the same so that `?` needs no conversion; they run once per snapshot or start.
#![allow(clippy::result_large_err)]

mod codec;
mod config;
mod error;
mod forked;
mod freshness;
mod group;
mod log_store;
mod machine_load;
mod network;
mod proposer;
mod read_index;
mod registry;
mod service;
mod state_machine;
mod stream;
mod types;
mod wal;

pub use codec::{decode, encode};
pub use config::{raft_config, Durability, RaftTuning};
pub use error::{Error, Result};
pub use group::{Group, GroupHost, WriteError};
pub use log_store::WalLogStore;
pub use network::{GroupNetworkFactory, PeerChannels, MAX_RAFT_MESSAGE};
pub use read_index::{ReadIndexBatcher, ReadIndexError};
pub use registry::GroupRegistry;
pub use service::RaftServiceImpl;
pub use state_machine::{SmData, StateMachineStore};
pub use stream::{batched, serve_calls, Completed};
pub use types::{NodeInfo, Raft, TypeConfig};
pub use wal::{LogMeta, Wal, WalOptions};
