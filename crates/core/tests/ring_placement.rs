//! Properties of the hash ring (balance, minimal movement) and of group placement (distinct
//! replicas, preferred leaders spread evenly).
use std::collections::BTreeMap;

use proptest::prelude::*;
use raftcache_core::{place_groups, CacheKey, GroupId, HashRing, META_GROUP};

/// splitmix64: a fixed, dependency-free stream of pseudo-random keys.
fn random_keys(n: usize, mut seed: u64) -> Vec<CacheKey> {
    let mut next = move || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..n)
        .map(|_| {
            let r = next();
            let ns = ["users", "orders", "sessions"][(r % 3) as usize];
            let len = 1 + (r >> 8) as usize % 24;
            let key: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            CacheKey::new(ns, key).unwrap()
        })
        .collect()
}

fn counts(ring: &HashRing, keys: &[CacheKey]) -> BTreeMap<GroupId, usize> {
    let mut counts = BTreeMap::new();
    for k in keys {
        *counts.entry(ring.group_for(k)).or_default() += 1;
    }
    counts
}

#[test]
fn sixteen_groups_are_balanced() {
    let keys = random_keys(100_000, 1);
    let groups: Vec<GroupId> = (1..=16).collect();
    let counts = counts(&HashRing::new(&groups), &keys);
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), groups, "every group owns keys");
    let fair = keys.len() / groups.len();
    for (g, n) in &counts {
        assert!(*n * 2 <= fair * 3, "group {g} owns {n} keys; fair share is {fair}: {counts:?}");
        assert!(*n * 2 >= fair, "group {g} owns only {n} keys; fair share is {fair}: {counts:?}");
    }
}

#[test]
fn adding_a_group_moves_only_keys_to_it() {
    let keys = random_keys(100_000, 2);
    let before = HashRing::new(&(1..=16).collect::<Vec<_>>());
    let after = HashRing::new(&(1..=17).collect::<Vec<_>>());
    let mut moved = 0;
    for k in &keys {
        let (old, new) = (before.group_for(k), after.group_for(k));
        if old != new {
            assert_eq!(new, 17, "key {k} moved from {old} to {new}, not to the new group");
            moved += 1;
        }
    }
    let expected = keys.len() / 17;
    assert!(
        moved * 10 >= expected * 7 && moved * 10 <= expected * 13,
        "{moved} keys moved; about {expected} (1/17) expected"
    );
}

#[test]
fn removing_a_group_moves_only_its_keys() {
    let keys = random_keys(20_000, 3);
    let before = HashRing::new(&(1..=8).collect::<Vec<_>>());
    let after = HashRing::new(&[1, 2, 3, 5, 6, 7, 8]);
    for k in &keys {
        let old = before.group_for(k);
        if old != 4 {
            assert_eq!(after.group_for(k), old, "key {k} moved though its group stayed");
        }
    }
}

#[test]
fn group_for_bytes_agrees_with_group_for() {
    let ring = HashRing::new(&[1, 2, 3, 4, 5]);
    for k in random_keys(1_000, 4) {
        assert_eq!(ring.group_for_bytes(&k.ring_bytes()), ring.group_for(&k));
        assert_eq!(ring.try_group_for_bytes(&k.ring_bytes()), Some(ring.group_for(&k)));
    }
}

proptest! {
    #[test]
    fn placement_is_distinct_and_leaders_spread(
        nodes in prop::collection::btree_set(1..1_000u64, 1..12),
        groups in 0..64u64,
        replicas in 1..6usize,
    ) {
        let nodes: Vec<u64> = nodes.into_iter().collect();
        // Listing order must not matter.
        let mut shuffled = nodes.clone();
        shuffled.reverse();
        let p = place_groups(&shuffled, groups, replicas);
        prop_assert_eq!(&p, &place_groups(&nodes, groups, replicas));

        prop_assert_eq!(p.len() as u64, groups + 1);
        prop_assert_eq!(&p[&META_GROUP], &nodes);
        let r = replicas.min(nodes.len());
        let mut leads: BTreeMap<u64, usize> = nodes.iter().map(|n| (*n, 0)).collect();
        let mut holds: BTreeMap<u64, usize> = leads.clone();
        for g in 1..=groups {
            let reps = &p[&g];
            prop_assert_eq!(reps.len(), r, "group {}", g);
            let mut distinct = reps.clone();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), r, "group {} has a repeated replica: {:?}", g, reps);
            prop_assert!(reps.iter().all(|n| nodes.contains(n)));
            *leads.get_mut(&reps[0]).unwrap() += 1;
            for n in reps {
                *holds.get_mut(n).unwrap() += 1;
            }
        }
        let spread = |m: &BTreeMap<u64, usize>| m.values().max().unwrap() - m.values().min().unwrap();
        prop_assert!(spread(&leads) <= 1, "preferred leaders: {:?}", leads);
        prop_assert!(spread(&holds) <= r, "replicas held: {:?}", holds);
        if groups % nodes.len() as u64 == 0 {
            prop_assert_eq!(spread(&holds), 0, "replicas held: {:?}", holds);
        }
    }
}
