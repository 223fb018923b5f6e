//! Judging a set of node statuses: does every group have one agreed leader, and do the replicas
//! of a group hold the same state? Pure functions, so the wording of "not ready because …" is
//! in one place.

use std::collections::BTreeMap;

use raftcache_client::{GroupStatus, StatusResponse};

/// The replicas of each group among `statuses`: group → [(node, its status of the group)].
pub(crate) fn by_group(statuses: &[(u64, StatusResponse)]) -> BTreeMap<u64, Vec<(u64, GroupStatus)>> {
    let mut out: BTreeMap<u64, Vec<(u64, GroupStatus)>> = BTreeMap::new();
    for (node, s) in statuses {
        for g in &s.groups {
            out.entry(g.group).or_default().push((*node, g.clone()));
        }
    }
    out
}

/// The leader of `group` if one replica reports itself leader and every other reported replica
/// names it; otherwise why not.
pub(crate) fn agreed_leader(group: u64, replicas: &[(u64, GroupStatus)]) -> Result<u64, String> {
    if replicas.is_empty() {
        return Err(format!("group {group}: no live node reports it"));
    }
    let leader = replicas
        .iter()
        .filter(|(_, g)| g.role == "leader")
        .max_by_key(|(_, g)| g.term)
        .map(|(n, _)| *n)
        .ok_or_else(|| {
            let seen: Vec<String> =
                replicas.iter().map(|(n, g)| format!("n{n}:{} leader={} term={}", g.role, g.leader, g.term)).collect();
            format!("group {group}: no replica is leader ({})", seen.join(", "))
        })?;
    for (n, g) in replicas {
        if g.leader != leader {
            return Err(format!(
                "group {group}: node {n} ({}) names leader {} but node {leader} leads",
                g.role, g.leader
            ));
        }
    }
    Ok(leader)
}

/// Every group in `expected` has an agreed leader.
pub(crate) fn all_led(expected: &[u64], statuses: &[(u64, StatusResponse)]) -> Result<BTreeMap<u64, u64>, String> {
    let groups = by_group(statuses);
    let empty = Vec::new();
    expected.iter().map(|g| agreed_leader(*g, groups.get(g).unwrap_or(&empty)).map(|l| (*g, l))).collect()
}

/// The replicas of `group` have applied the same index and hold the same digest.
pub(crate) fn converged(group: u64, replicas: &[(u64, GroupStatus)]) -> Result<(), String> {
    let Some((_, first)) = replicas.first() else {
        return Err(format!("group {group}: no live node reports it"));
    };
    if replicas.iter().all(|(_, g)| g.applied_index == first.applied_index && g.digest == first.digest) {
        return Ok(());
    }
    let seen: Vec<String> = replicas
        .iter()
        .map(|(n, g)| format!("n{n}: applied={} digest={:016x} keys={}", g.applied_index, g.digest, g.keys))
        .collect();
    Err(format!("group {group}: replicas differ ({})", seen.join("; ")))
}
