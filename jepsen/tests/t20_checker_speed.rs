//! t20: the checker handles a 20,000-operation history. The time is measured and printed (a
//! benchmark, not an assertion); the test asserts only the verdicts.

use std::time::Instant;

use raftcache_jepsen::checker::sim::{linearizable_history, SimOptions};
use raftcache_jepsen::checker::{check, CheckParams, Validity};
use raftcache_jepsen::history::{EventType, Value, F};

fn lin_validity(events: &[raftcache_jepsen::history::Event]) -> (Validity, std::time::Duration) {
    let started = Instant::now();
    let results = check(events, CheckParams::default());
    let took = started.elapsed();
    let lin = results.iter().find(|r| r.name == "linearizability").expect("linearizability result");
    (lin.valid, took)
}

#[test]
fn twenty_thousand_operations() {
    for (keys, processes) in [(10usize, 20usize), (4, 16)] {
        let o = SimOptions {
            ops: 20_000,
            keys,
            processes,
            info_rate: 0.01,
            latency: 1_000_000,
            seed: 20_000 + keys as u64,
        };
        let events = linearizable_history(&o);
        let (valid, took) = lin_validity(&events);
        eprintln!("20,000 ops, {keys} keys, {processes} processes, 1% info: {valid:?} in {took:.2?}");
        assert_eq!(valid, Validity::Valid);

        // Make one read in the middle see a value whose write began only after the read ended.
        let mut bad = events.clone();
        let mid = bad.len() / 2;
        let (ri, read_key, read_end) = bad[mid..]
            .iter()
            .enumerate()
            .find(|(_, e)| e.kind == EventType::Ok && e.f == F::Read)
            .map(|(i, e)| (mid + i, e.key.clone(), e.time))
            .expect("a read");
        let (value, version) = bad
            .iter()
            .filter(|e| e.kind == EventType::Ok && e.f == F::Write && e.key == read_key)
            .find(|w| {
                let invoked = bad
                    .iter()
                    .rev()
                    .find(|i| i.kind == EventType::Invoke && i.process == w.process && i.time <= w.time)
                    .unwrap();
                invoked.time > read_end
            })
            .map(|w| (w.value, w.version))
            .expect("a later write");
        bad[ri].value = value.map(|v| Value::Int(v.int().unwrap()));
        bad[ri].version = version;
        let (valid, took) = lin_validity(&bad);
        eprintln!("same history with one read from the future: {valid:?} in {took:.2?}");
        assert_eq!(valid, Validity::Invalid);
    }
}
