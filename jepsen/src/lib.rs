//! # raftcache-jepsen
//!
//! raftcache's fault-injection suite, built the way Jepsen and etcd's robustness tests work: a
//! real cluster of `raftcache` processes, concurrent clients that record every operation into a
//! history, a nemesis that injects faults, and checkers that decide from the history alone
//! whether the cluster kept its promises.
//!
//! ## A RUN
//!
//! 1. [`cluster`] starts N nodes on loopback; every node-to-node link goes through a proxy of the
//!    harness ([`cluster::proxy`]) so links can be cut, black-holed or slowed one by one.
//! 2. [`workload`] clients run the register, fence and session workloads and record each
//!    operation in the [`history`].
//! 3. The [`nemesis`] kills, pauses, partitions, delays and skews clocks, at random from the
//!    run's seed, and records a timeline.
//! 4. When the time is up every fault is healed, a liveness probe checks that every group serves
//!    again within 10 s, and every key is read one last time.
//! 5. The [`checker`]s judge the history; [`report`] writes `jepsen/results/<time>-<seed>/`.
//!
//! ## GUARANTEES CHECKED
//!
//! Linearizability of LINEARIZABLE and FOLLOWER_LINEARIZABLE reads with writes, compare-and-set
//! and deletes (per key, with operations of unknown outcome allowed to have happened or not);
//! fence safety of invalidations against slow conditional loaders; read-your-writes and
//! monotonic SESSION reads; EVENTUAL reads within their staleness bound; integrity (no phantom,
//! duplicated or failed-yet-visible writes); liveness after faults; no node crashing on its own.
//!
//! ## CAVEATS
//!
//! - Timing is real: a seed reproduces the fault plan and the clients' choices, not the exact
//!   interleaving. Keep the results directory of a failing run: it holds all the evidence.
//! - A pass is evidence, not proof: only the interleavings that happened were checked.
//! - Clock skew is bounded below the fence retention window; fences are time-based, so a skew
//!   beyond the window would break them by design.

#![warn(missing_docs)]

pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod report;
pub mod runner;
pub mod workload;

pub use runner::{run, RunOptions, RunSummary};
