//! # raftcache-server
//!
//! A raftcache node: it hosts replicas of several Raft groups, serves the public
//! `CacheService` for any key (forwarding to the owning group's leader when it is not that
//! leader), the node-to-node `RaftService`, and the operator `AdminService`, all on one port.
//!
//! ## REQUEST FLOW
//!
//! client → [`cache_service`] (validate) → [`router`] (which group, serve here or forward) →
//! `raftcache_raft::Group` (propose, ReadIndex) → `raftcache_core::CacheState` (apply) → response.
//!
//! ## CONSISTENCY
//!
//! | level | served by | how |
//! |---|---|---|
//! | LINEARIZABLE | leader | shared ReadIndex round, wait for apply, read |
//! | FOLLOWER_LINEARIZABLE | any replica | ask the leader's read index, wait for apply, read |
//! | SESSION | any replica | wait (≤ 1 s) until applied ≥ min_index, else hand over to the leader |
//! | EVENTUAL | any replica | refuse if its applied state may be staler than max_staleness |
//!
//! Errors become gRPC statuses in exactly one place: [`error`].

#![warn(missing_docs)]

pub mod admin_service;
pub mod cache_service;
pub mod clock;
pub mod config;
pub mod ctl;
pub mod error;
pub mod node;
pub mod pipeline;
pub mod router;
pub mod sweeper;
pub mod trim;
