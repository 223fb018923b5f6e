//! openraft's storage conformance suite on the WAL log store and the cache state machine,
//! in both durability modes.
#![allow(clippy::result_large_err)] // openraft's suite returns its `StorageError` by value

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use raftcache_core::StateConfig;
use raftcache_raft::{Durability, StateMachineStore, TypeConfig, Wal, WalLogStore, WalOptions};

struct Builder(Durability);

impl StoreBuilder<TypeConfig, WalLogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, WalLogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::open(dir.path().join("db")).expect("open sled");
        // Tiny segments and cache: the suite's appends and purges cross segment boundaries and
        // read entries back from the files.
        let opts = WalOptions { segment_bytes: 4096, cache_bytes: 1024, preallocate: true };
        let log = WalLogStore::new(Wal::open(&dir.path().join("wal"), opts).expect("open the WAL"), 7, self.0);
        let sm = StateMachineStore::open(&db, &dir.path().join("snapshots"), 7, StateConfig::default())?;
        Ok((dir, log, sm))
    }
}

#[test]
fn wal_store_passes_openraft_suite_fsync() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder(Durability::Fsync))
}

#[test]
fn wal_store_passes_openraft_suite_async() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder(Durability::Async))
}
