//! The openraft state machine of one group: a [`CacheState`] shared with the read path, and
//! its snapshots in sled.

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use raftcache_core::{CacheState, Response, StateConfig};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::flusher::Flusher;
use crate::types::{NodeInfo, TypeConfig};

const SNAP_META: &[u8] = b"meta";
const SNAP_DATA: &[u8] = b"data";

/// What a group has applied. Readers take the lock briefly and never across an `.await`.
#[derive(Debug)]
pub struct SmData {
    /// The cache contents.
    pub state: CacheState,
    /// The last applied log id; `state` reflects exactly the entries up to it.
    pub last_applied: Option<LogId<u64>>,
    /// The last membership config applied.
    pub last_membership: StoredMembership<u64, NodeInfo>,
}

impl SmData {
    /// The applied index, 0 before anything applied.
    pub fn applied_index(&self) -> u64 {
        self.last_applied.map(|l| l.index).unwrap_or(0)
    }
}

/// The stored form of a snapshot's metadata.
#[derive(Serialize, Deserialize)]
struct StoredSnapshotMeta {
    meta: SnapshotMeta<u64, NodeInfo>,
}

/// State machine of one group. Cheap to clone.
#[derive(Clone)]
pub struct StateMachineStore {
    data: Arc<RwLock<SmData>>,
    snaps: sled::Tree,
    flusher: Flusher,
    group: u64,
}

fn snap_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::write_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

fn read_snap_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::read_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

impl StateMachineStore {
    /// Opens the state machine of `group`, restoring the latest snapshot if there is one.
    pub fn open(db: &sled::Db, flusher: Flusher, group: u64, config: StateConfig) -> Result<Self, StorageError<u64>> {
        let snaps = db.open_tree(format!("g{group}/snap")).map_err(read_snap_err)?;
        let mut data =
            SmData { state: CacheState::new(config), last_applied: None, last_membership: StoredMembership::default() };
        if let (Some(m), Some(d)) =
            (snaps.get(SNAP_META).map_err(read_snap_err)?, snaps.get(SNAP_DATA).map_err(read_snap_err)?)
        {
            let m: StoredSnapshotMeta = decode(&m).map_err(read_snap_err)?;
            data.state = CacheState::from_bytes(&d).map_err(read_snap_err)?;
            data.last_applied = m.meta.last_log_id;
            data.last_membership = m.meta.last_membership;
            tracing::info!(group, applied = data.applied_index(), "restored snapshot");
        }
        Ok(Self { data: Arc::new(RwLock::new(data)), snaps, flusher, group })
    }

    /// The shared state, for the read path.
    pub fn data(&self) -> Arc<RwLock<SmData>> {
        self.data.clone()
    }

    /// The log id of the stored snapshot, if any.
    pub fn snapshot_index(&self) -> u64 {
        self.stored_snapshot_meta().ok().flatten().and_then(|m| m.last_log_id).map(|l| l.index).unwrap_or(0)
    }

    fn stored_snapshot_meta(&self) -> Result<Option<SnapshotMeta<u64, NodeInfo>>, StorageError<u64>> {
        match self.snaps.get(SNAP_META).map_err(read_snap_err)? {
            Some(m) => Ok(Some(decode::<StoredSnapshotMeta>(&m).map_err(read_snap_err)?.meta)),
            None => Ok(None),
        }
    }

    async fn store_snapshot(&self, meta: &SnapshotMeta<u64, NodeInfo>, bytes: &[u8]) -> Result<(), StorageError<u64>> {
        let mut batch = sled::Batch::default();
        batch.insert(SNAP_META, encode(&StoredSnapshotMeta { meta: meta.clone() }));
        batch.insert(SNAP_DATA, bytes);
        self.snaps.apply_batch(batch).map_err(snap_err)?;
        self.flusher.flush().await.map_err(snap_err)?;
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (bytes, last_applied, last_membership) = {
            let d = self.data.read().expect("state machine lock poisoned");
            (d.state.to_bytes(), d.last_applied, d.last_membership.clone())
        };
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, bytes.len()),
            None => format!("empty-{}", bytes.len()),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id };
        self.store_snapshot(&meta, &bytes).await?;
        tracing::info!(
            group = self.group,
            index = last_applied.map(|l| l.index),
            bytes = bytes.len(),
            "snapshot built"
        );
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, NodeInfo>), StorageError<u64>> {
        let d = self.data.read().expect("state machine lock poisoned");
        Ok((d.last_applied, d.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut d = self.data.write().expect("state machine lock poisoned");
        let mut out = Vec::new();
        for entry in entries {
            d.last_applied = Some(entry.log_id);
            let resp = match entry.payload {
                EntryPayload::Blank => Response::Blank,
                EntryPayload::Normal(ref req) => d.state.apply(entry.log_id.index, req),
                EntryPayload::Membership(ref m) => {
                    d.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    Response::Blank
                }
            };
            out.push(resp);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let state = CacheState::from_bytes(&bytes).map_err(read_snap_err)?;
        self.store_snapshot(meta, &bytes).await?;
        {
            let mut d = self.data.write().expect("state machine lock poisoned");
            d.state = state;
            d.last_applied = meta.last_log_id;
            d.last_membership = meta.last_membership.clone();
        }
        tracing::info!(group = self.group, index = meta.last_log_id.map(|l| l.index), "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let Some(meta) = self.stored_snapshot_meta()? else { return Ok(None) };
        let data = self.snaps.get(SNAP_DATA).map_err(read_snap_err)?.map(|d| d.to_vec()).unwrap_or_default();
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
