//! Applies N sets of new keys (100-byte values) to one `CacheState` and lists the slowest
//! applies: what growing a group's state costs a single apply, under the state lock.
//!
//! `cargo run --release -p raftcache-core --example grow -- [N, default 4000000]`
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftcache_core::{CacheKey, CacheState, Command, Condition, Request};

fn main() {
    let n: u64 = match std::env::args().nth(1) {
        Some(a) => a.parse().expect("N must be a number of keys"),
        None => 4_000_000,
    };
    let value = Bytes::from(vec![b'v'; 100]);
    let mut state = CacheState::default();
    let mut slowest: Vec<(Duration, u64)> = Vec::new();
    let start = Instant::now();
    for i in 1..=n {
        let key = CacheKey::new("bench", Bytes::from(format!("key-{i:012}"))).expect("valid key");
        let cmd = Command::Set { key, value: value.clone(), ttl_ms: None, cond: Condition::None };
        let t = Instant::now();
        state.apply(i, &Request { now_ms: i, client: None, cmd });
        slowest.push((t.elapsed(), i));
        if slowest.len() > 64 {
            slowest.sort_unstable_by(|a, b| b.cmp(a));
            slowest.truncate(8);
        }
    }
    let encode = Instant::now();
    let bytes = state.to_bytes();
    println!("snapshot encoding: {} bytes in {:.2?}", bytes.len(), encode.elapsed());
    slowest.sort_unstable_by(|a, b| b.cmp(a));
    println!("{n} applies in {:.2?}; the slowest:", start.elapsed());
    for (took, i) in slowest.iter().take(8) {
        println!("  apply {i:>9} (a state of {:>9} keys before it): {took:.2?}", i - 1);
    }
}
