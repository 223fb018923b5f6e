//! openraft's storage conformance suite on the sled log store and the cache state machine,
//! in both durability modes.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raftcache_core::StateConfig;
use raftcache_raft::{Durability, Flusher, SledLogStore, StateMachineStore, TypeConfig};

struct Builder(Durability);

impl StoreBuilder<TypeConfig, SledLogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, SledLogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::open(dir.path()).expect("open sled");
        let flusher = Flusher::new(db.clone());
        let log = SledLogStore::open(&db, flusher, 7, self.0).expect("open log store");
        let sm = StateMachineStore::open(&db, &dir.path().join("snapshots"), 7, StateConfig::default())?;
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_store_passes_openraft_suite_fsync() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder(Durability::Fsync))
}

#[test]
fn sled_store_passes_openraft_suite_async() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder(Durability::Async))
}
