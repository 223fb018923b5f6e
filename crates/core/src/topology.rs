use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ring::HashRing;

/// A node's id, unique in the cluster, never reused.
pub type NodeId = u64;
/// A Raft group's id. Group [`META_GROUP`] holds the metadata; data groups are `1..=groups`.
pub type GroupId = u64;
/// The metadata group.
pub const META_GROUP: GroupId = 0;

/// The cluster's layout: nodes, their addresses, and which nodes replicate each group.
/// Fixed at bootstrap in this version; `epoch` increases whenever it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Increases with every change.
    pub epoch: u64,
    /// Node id → `host:port`.
    pub nodes: BTreeMap<NodeId, String>,
    /// Group id → replica node ids; the first is the preferred leader. Includes [`META_GROUP`].
    pub groups: BTreeMap<GroupId, Vec<NodeId>>,
}

impl Topology {
    /// The data groups (all groups but [`META_GROUP`]), ascending.
    pub fn data_groups(&self) -> Vec<GroupId> {
        self.groups.keys().copied().filter(|g| *g != META_GROUP).collect()
    }

    /// The ring over the data groups.
    pub fn ring(&self) -> HashRing {
        HashRing::new(&self.data_groups())
    }

    /// Groups that `node` replicates, ascending.
    pub fn groups_of(&self, node: NodeId) -> Vec<GroupId> {
        self.groups.iter().filter(|(_, r)| r.contains(&node)).map(|(g, _)| *g).collect()
    }
}
