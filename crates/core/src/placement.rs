//! Group placement: which nodes replicate which group.
//!
//! The metadata group runs on every node, so any node can answer topology questions from its own
//! replica. Data group `g` gets `r = min(replicas, nodes)` consecutive nodes starting at node
//! `g - 1` (nodes sorted, wrapping). The first replica is the preferred leader, and since the
//! starting node advances by one per group, every node prefers to lead the same number of groups,
//! give or take one; with `groups` a multiple of the node count every node also holds the same
//! number of replicas.
use std::collections::BTreeMap;

use crate::topology::{GroupId, NodeId, META_GROUP};

/// Places group 0 on every node and data groups `1..=groups` round-robin on `replicas` nodes each.
///
/// `nodes` may come in any order and with duplicates; they are sorted and de-duplicated first, so
/// the placement depends only on the set. Replicas of a group are distinct; a group gets
/// `min(replicas, distinct nodes)` of them (none if either is zero — callers validate).
pub fn place_groups(nodes: &[NodeId], groups: u64, replicas: usize) -> BTreeMap<GroupId, Vec<NodeId>> {
    let mut nodes = nodes.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    let n = nodes.len();
    let r = replicas.min(n);

    let mut placement = BTreeMap::new();
    placement.insert(META_GROUP, nodes.clone());
    for g in 1..=groups {
        // (g - 1) mod n, computed in u64 so huge group counts cannot overflow a usize cast.
        let start = if n == 0 { 0 } else { ((g - 1) % n as u64) as usize };
        placement.insert(g, (0..r).map(|i| nodes[(start + i) % n]).collect());
    }
    placement
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_nodes_sixteen_groups() {
        let p = place_groups(&[30, 10, 20], 16, 3);
        assert_eq!(p[&META_GROUP], vec![10, 20, 30]);
        assert_eq!(p[&1], vec![10, 20, 30]);
        assert_eq!(p[&2], vec![20, 30, 10]);
        assert_eq!(p[&3], vec![30, 10, 20]);
        assert_eq!(p[&4], vec![10, 20, 30]);
        assert_eq!(p.len(), 17);
    }

    #[test]
    fn fewer_nodes_than_replicas() {
        let p = place_groups(&[5], 4, 3);
        assert!((1..=4).all(|g| p[&g] == vec![5]));
    }

    #[test]
    fn no_nodes_or_no_groups() {
        let p = place_groups(&[], 3, 3);
        assert!(p.values().all(Vec::is_empty));
        let p = place_groups(&[1, 2], 0, 3);
        assert_eq!(p.len(), 1);
        assert_eq!(p[&META_GROUP], vec![1, 2]);
    }

    #[test]
    fn duplicate_nodes_are_one_node() {
        assert_eq!(place_groups(&[2, 1, 2], 5, 2), place_groups(&[1, 2], 5, 2));
    }
}
