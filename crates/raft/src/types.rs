use std::io::Cursor;

openraft::declare_raft_types!(
    /// openraft type configuration of every raftcache group.
    pub TypeConfig:
        D = raftcache_core::Request,
        R = raftcache_core::Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A group's Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;

/// A node as openraft knows it: its address.
pub type NodeInfo = openraft::BasicNode;
