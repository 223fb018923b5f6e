//! t10: the Wing–Gong/Lowe checker agrees with a brute-force checker on thousands of small
//! random histories — linearizable ones (simulated correct executions, with operations of
//! unknown outcome) and corrupted ones.

use std::collections::BTreeMap;

use proptest::prelude::*;
use raftcache_jepsen::checker::brute::brute_force;
use raftcache_jepsen::checker::linearizable::{model_op, settle_info};
use raftcache_jepsen::checker::sim::{corrupt, linearizable_history, SimOptions};
use raftcache_jepsen::checker::wgl::{search, KeyOp, Search};
use raftcache_jepsen::checker::{integrity, ops};

/// (brute force verdict, WGL verdict) of a simulated history.
fn both(o: &SimOptions, corrupt_seed: Option<u64>) -> (bool, bool) {
    let mut events = linearizable_history(o);
    if let Some(s) = corrupt_seed {
        corrupt(&mut events, s);
    }
    let ops = ops::pair(&events).expect("simulated histories are well-formed");
    let (versions, _) = integrity::check(&ops);
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    let mut all: Vec<(usize, KeyOp)> = Vec::new();
    let mut per_key: BTreeMap<usize, Vec<KeyOp>> = BTreeMap::new();
    for op in &ops {
        let Some(m) = model_op(op, &versions) else { continue };
        let n = keys.len();
        let k = *keys.entry(op.key.clone()).or_insert(n);
        all.push((k, m));
        per_key.entry(k).or_default().push(m);
    }
    let brute = brute_force(&all, &versions);
    // The checker's own path: settle the unknown outcomes reads reveal, then search each key.
    let wgl = per_key.into_values().all(|ops| {
        let pruned: Vec<KeyOp> =
            settle_info(ops.into_iter().map(|o| (o, ())).collect(), &versions).into_iter().map(|(o, _)| o).collect();
        search(&pruned, &versions, 10_000_000) == Search::Linearizable
    });
    (brute, wgl)
}

fn small(seed: u64, ops: usize, keys: usize, processes: usize, info: bool) -> SimOptions {
    SimOptions { ops, keys, processes, info_rate: if info { 0.3 } else { 0.0 }, latency: 10, seed }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn wgl_agrees_with_brute_force(
        seed in any::<u64>(),
        ops in 1usize..=9,
        keys in 1usize..=2,
        processes in 1usize..=4,
        info in any::<bool>(),
        corruption in proptest::option::of(any::<u64>()),
    ) {
        let o = small(seed, ops, keys, processes, info);
        let (brute, wgl) = both(&o, corruption);
        prop_assert_eq!(brute, wgl, "options {:?}, corruption {:?}", o, corruption);
        if corruption.is_none() {
            prop_assert!(wgl, "a simulated correct execution must be linearizable: {:?}", o);
        }
    }
}

/// The random histories exercise both verdicts, not just one.
#[test]
fn both_verdicts_are_exercised() {
    let (mut yes, mut no) = (0, 0);
    for seed in 0..2000u64 {
        let o = small(seed, 8, 1 + (seed % 2) as usize, 3, seed % 3 == 0);
        let (brute, wgl) = both(&o, Some(seed * 7 + 1));
        assert_eq!(brute, wgl, "{o:?}");
        if wgl {
            yes += 1;
        } else {
            no += 1;
        }
    }
    eprintln!("corrupted histories: {yes} still linearizable, {no} not");
    assert!(yes > 100 && no > 100, "{yes} linearizable, {no} not: the generator should produce both");
}
