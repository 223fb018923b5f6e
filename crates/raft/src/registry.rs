//! The groups this node hosts.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::group::Group;

/// Every group replica on this node, by group id. Fixed once the node has started.
#[derive(Clone, Default)]
pub struct GroupRegistry {
    groups: Arc<BTreeMap<u64, Arc<Group>>>,
}

impl GroupRegistry {
    /// A registry of `groups`.
    pub fn new(groups: impl IntoIterator<Item = Arc<Group>>) -> Self {
        Self { groups: Arc::new(groups.into_iter().map(|g| (g.id, g)).collect()) }
    }

    /// The local replica of `group`, if this node hosts one.
    pub fn get(&self, group: u64) -> Option<&Arc<Group>> {
        self.groups.get(&group)
    }

    /// All local replicas, by ascending group id.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Group>> {
        self.groups.values()
    }
}
