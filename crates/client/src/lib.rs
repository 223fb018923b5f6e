//! # raftcache-client
//!
//! The Rust SDK of raftcache.
//!
//! ## ROUTING
//!
//! The client fetches the cluster [`Topology`] from any endpoint, hashes each key onto its group
//! with the same ring the nodes use, and sends the request straight to the group's leader (or,
//! for follower reads, to a replica). Any node accepts any request and forwards it, so a stale
//! topology costs a hop, never correctness. A `NOT_LEADER` answer carries the leader's id and
//! address; the client remembers it and retries there at once.
//!
//! ## RETRIES
//!
//! Retryable failures (no leader yet, node unreachable, leader changed) are retried with
//! exponential backoff and full jitter until the operation's deadline. Every write carries
//! `(client_id, seq)`; a retry reuses them, so the group applies it once even when the first
//! attempt committed but its answer was lost.
//!
//! ## CONSISTENCY
//!
//! Reads are linearizable unless a weaker level is asked for by name ([`Consistency`]). The
//! client keeps a session token per group (the highest index it has written or read), which
//! [`Consistency::Session`] uses by default for read-your-writes on followers.

#![warn(missing_docs)]

mod client;
mod error;
mod options;
mod pipe;
mod topology;

pub use client::Client;
pub use error::{Error, Result};
pub use options::{ClientOptions, Condition, Consistency, GetResult, SetOptions, WriteResult};
pub use raftcache_core::Topology;
pub use raftcache_proto::admin::{GroupStatus, StatusResponse};
pub use topology::TopologyView;
