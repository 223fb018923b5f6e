use std::collections::{BTreeMap, HashMap};

use raftcache_core::{CacheKey, GroupId, HashRing, NodeId, Topology};
use raftcache_proto::cache::TopologyResponse;

/// The client's view of the cluster: layout, ring and the leaders it last heard of.
#[derive(Clone, Debug)]
pub struct TopologyView {
    /// The layout.
    pub topology: Topology,
    /// Group → leader node, as last reported (may be stale).
    pub leaders: HashMap<GroupId, NodeId>,
    ring: HashRing,
}

impl TopologyView {
    pub(crate) fn from_proto(p: TopologyResponse) -> Self {
        let nodes: BTreeMap<_, _> = p.nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
        let groups: BTreeMap<_, _> = p.groups.iter().map(|g| (g.id, g.replicas.clone())).collect();
        let leaders = p.groups.iter().filter(|g| g.leader != 0).map(|g| (g.id, g.leader)).collect();
        let topology = Topology { epoch: p.epoch, nodes, groups };
        let ring = topology.ring();
        Self { topology, leaders, ring }
    }

    /// The group that owns `key`.
    pub fn group_for(&self, key: &CacheKey) -> GroupId {
        self.ring.group_for(key)
    }

    /// The address of `node`.
    pub fn addr(&self, node: NodeId) -> Option<&str> {
        self.topology.nodes.get(&node).map(String::as_str)
    }

    /// The replicas of `group`.
    pub fn replicas(&self, group: GroupId) -> &[NodeId] {
        self.topology.groups.get(&group).map(Vec::as_slice).unwrap_or(&[])
    }
}
