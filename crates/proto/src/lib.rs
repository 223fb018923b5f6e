//! Generated gRPC types and services of raftcache (`proto/*.proto`). Nothing else lives here
//! but the generated code; conversions to domain types live beside the code that uses them.
#![allow(missing_docs, clippy::all)]

/// Public cache API.
pub mod cache {
    tonic::include_proto!("raftcache.v1");
}

/// Node-to-node Raft transport.
pub mod raft {
    tonic::include_proto!("raftcache.raft.v1");
}

/// Operator API.
pub mod admin {
    tonic::include_proto!("raftcache.admin.v1");
}
