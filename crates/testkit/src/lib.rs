//! # raftcache-testkit
//!
//! The one helper that runs real `raftcache` node processes for the integration tests, the
//! fault-injection suite and the bench.
//!
//! ## WHAT IT DOES
//!
//! [`Cluster::start`] picks free loopback ports (bind `127.0.0.1:0`, read the port, release it),
//! makes a temp dir with one data dir and one log file per node, spawns `raftcache serve` for
//! every node with the same `--initial-cluster`, and waits until every group — the metadata
//! group 0 and the data groups `1..=groups` — has a leader that every live replica agrees on.
//! Afterwards a test can [`kill`](Cluster::kill) (SIGKILL), [`stop`](Cluster::stop) (SIGTERM and
//! wait), [`pause`](Cluster::pause)/[`resume`](Cluster::resume) (SIGSTOP/SIGCONT) and
//! [`restart`](Cluster::restart) (same port, same data dir) any node, and ask for statuses,
//! leaders and digests. [`Cluster::prepare`] + [`Cluster::launch`] split the start for callers
//! that need the node addresses before any node runs (per-node flags such as `--peer-addr`
//! through proxies: [`Cluster::set_node_args`]). A harness with a cluster layout of its own can
//! still share the process handling: [`NodeProcess`] is one node's process and log.
//!
//! ## GUARANTEES
//!
//! - No orphans: dropping a [`Cluster`] SIGKILLs and reaps every node it started, also while a
//!   test panics. (A test process that is itself SIGKILLed cannot clean up; nodes then outlive
//!   it.)
//! - Evidence on failure: when a cluster is dropped during a panic, the tail of every node's log
//!   is printed (the test harness shows it with the failure), and with
//!   [`ClusterOptions::keep_dir_on_failure`] or `RAFTCACHE_KEEP_TEST_DIRS=1` the temp dir with
//!   data and full logs is kept and its path printed.
//! - Signals are sent with the `kill` command, so the kit needs no libc bindings.
//!
//! ## THE BINARY
//!
//! `RAFTCACHE_BIN` if set; otherwise `raftcache` in the cargo target dir the running test
//! executable lives in (walking up from [`std::env::current_exe`]), then `target/debug` and
//! `target/release` of any ancestor directory. Build it with
//! `cargo build -p raftcache-server --bin raftcache`.
//!
//! ## CAVEATS
//!
//! - A port is free when picked and taken by the node a moment later; another process could
//!   take it in between. On loopback in a test run this does not happen in practice.
//! - Node logs go to `RUST_LOG=info` unless the caller's environment sets `RUST_LOG`.

#![warn(missing_docs)]

mod binary;
mod cluster;
mod ctl;
mod node;
mod options;
mod ready;

pub use binary::{find_bin, raftcache_bin};
pub use cluster::Cluster;
pub use ctl::CtlOutput;
pub use node::{NodeProcess, NodeState};
pub use options::{ClusterOptions, Durability};
pub use raftcache_client::{Client, ClientOptions, GroupStatus, StatusResponse};
