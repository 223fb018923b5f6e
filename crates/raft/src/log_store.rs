//! The Raft log of one group: its view of the node's [`Wal`].

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use crate::codec::decode;
use crate::config::Durability;
use crate::types::TypeConfig;
use crate::wal::{until_durable, Wal};

fn read_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::read_logs(&std::io::Error::other(e.to_string())).into()
}

fn write_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::write_logs(&std::io::Error::other(e.to_string())).into()
}

fn vote_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::write_vote(&std::io::Error::other(e.to_string())).into()
}

/// The log store of one group. Cheap to clone: clones share the WAL.
#[derive(Clone)]
pub struct WalLogStore {
    wal: Wal,
    group: u64,
    durability: Durability,
    /// This node's id when the store belongs to a running group (see `read_vote`).
    owner: Option<u64>,
    /// The highest commit index openraft has handed to `save_committed` since start (0 before).
    /// openraft saves it before applying the entries up to it, so on a leader it covers every
    /// write that was acknowledged (a write is acknowledged once applied).
    committed: Arc<AtomicU64>,
}

impl WalLogStore {
    /// The log of `group` in `wal`.
    pub fn new(wal: Wal, group: u64, durability: Durability) -> Self {
        Self { wal, group, durability, owner: None, committed: Arc::default() }
    }

    /// Marks the store as `node`'s own, so that a leadership this node held before a restart is
    /// not restored (see `read_vote`).
    pub fn owned_by(mut self, node: u64) -> Self {
        self.owner = Some(node);
        self
    }

    /// The highest commit index saved since this process started (see the field).
    pub fn committed_index(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Whether this group has ever stored a vote or a log entry (it was initialized before).
    pub fn has_state(&self) -> bool {
        self.wal.has_state(self.group)
    }

    /// Moves a log that an earlier version kept in sled (trees `g{group}/log` and `g{group}/meta`)
    /// into the WAL, then drops those trees. Returns how many entries moved. If the WAL already
    /// holds this group (a crash after the move, before the trees were dropped), the trees are
    /// only dropped. A data dir without the trees is left as it is (no tree is created to look).
    pub async fn import_sled(&self, db: &sled::Db) -> Result<usize, String> {
        let names = [format!("g{}/log", self.group), format!("g{}/meta", self.group)];
        let present = db.tree_names();
        if !names.iter().any(|n| present.iter().any(|p| p.as_ref() == n.as_bytes())) {
            return Ok(0);
        }
        let log = db.open_tree(&names[0]).map_err(|e| e.to_string())?;
        let meta = db.open_tree(&names[1]).map_err(|e| e.to_string())?;
        let mut moved = 0;
        if !self.wal.has_state(self.group) {
            let get = |key: &[u8]| -> Result<Option<sled::IVec>, String> { meta.get(key).map_err(|e| e.to_string()) };
            let vote: Option<Vote<u64>> = get(b"vote")?.map(|v| decode(&v)).transpose().map_err(|e| e.to_string())?;
            let committed: Option<Option<LogId<u64>>> =
                get(b"committed")?.map(|v| decode(&v)).transpose().map_err(|e| e.to_string())?;
            let purged: Option<LogId<u64>> =
                get(b"last_purged")?.map(|v| decode(&v)).transpose().map_err(|e| e.to_string())?;
            self.wal.set_meta(self.group, vote, committed.flatten(), purged).map_err(|e| e.to_string())?;
            let mut batch = Vec::new();
            for kv in log.iter() {
                let (_, v) = kv.map_err(|e| e.to_string())?;
                let entry: Entry<TypeConfig> = decode(&v).map_err(|e| format!("undecodable sled log entry: {e}"))?;
                if purged.is_some_and(|p| entry.log_id.index <= p.index) {
                    continue;
                }
                batch.push(entry);
                if batch.len() == 1024 {
                    moved += batch.len();
                    self.wal.append(self.group, std::mem::take(&mut batch), None).map_err(|e| e.to_string())?;
                }
            }
            moved += batch.len();
            self.wal.append(self.group, batch, None).map_err(|e| e.to_string())?;
            self.wal.sync().await?;
        }
        drop((log, meta));
        for name in &names {
            db.drop_tree(name).map_err(|e| e.to_string())?;
        }
        db.flush_async().await.map_err(|e| e.to_string())?;
        Ok(moved)
    }
}

impl RaftLogReader<TypeConfig> for WalLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        self.wal.read(self.group, start, end).map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for WalLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged = self.wal.meta(self.group).last_purged;
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: self.wal.last_log_id(self.group) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        until_durable(|done| self.wal.save_vote(self.group, *vote, done)).await.map_err(vote_err)
    }

    /// The stored vote, except that this node's own committed (leader) vote comes back
    /// uncommitted.
    ///
    /// openraft reads the vote only at start-up and, given a committed vote for itself, resumes
    /// as leader in the old term without proposing a new blank entry. Its read index is then
    /// `max(first entry of the term, committed)`, and `committed` restarts wherever the last
    /// (unsynced) `save_committed` left it: a linearizable read could miss writes acknowledged
    /// before the restart. Returned uncommitted, the vote still stops this node from voting for
    /// another candidate in that term, and the node wins leadership only through a new election,
    /// whose blank entry makes every earlier write part of the read index.
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.wal.meta(self.group).vote.map(|v| match self.owner {
            Some(me) if v.is_committed() && v.leader_id().voted_for() == Some(me) => {
                Vote::new(v.leader_id().get_term(), me)
            }
            _ => v,
        }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        // Not synced on its own: losing it only means re-learning the commit index from a leader.
        self.wal.save_committed(self.group, committed).map_err(write_err)?;
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::AcqRel);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.wal.meta(self.group).committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        match self.durability {
            // Return at once and let the sync thread complete the callback: openraft keeps
            // handling heartbeats and votes while the disk works, and one sync covers the appends
            // of every group.
            Durability::Fsync => {
                let done =
                    Box::new(move |r: Result<(), String>| callback.log_io_completed(r.map_err(std::io::Error::other)));
                self.wal.append(self.group, entries, Some(done)).map_err(write_err)
            }
            Durability::Async => {
                self.wal.append(self.group, entries, None).map_err(write_err)?;
                callback.log_io_completed(Ok(()));
                Ok(())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        until_durable(|done| self.wal.truncate(self.group, log_id.index, done)).await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // Not synced: a crash before the next sync leaves entries that were to be purged, never
        // a gap.
        self.wal.purge(self.group, log_id).map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::codec::encode;
    use crate::wal::WalOptions;

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    #[tokio::test]
    async fn a_log_kept_in_sled_by_an_earlier_version_moves_into_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        // The layout the sled log store wrote: entries by big-endian index, meta by name.
        let log = db.open_tree("g5/log").unwrap();
        let meta = db.open_tree("g5/meta").unwrap();
        for i in 3..=9 {
            let e = Entry::<TypeConfig> { log_id: log_id(2, i), payload: EntryPayload::Blank };
            log.insert(i.to_be_bytes(), encode(&e)).unwrap();
        }
        meta.insert(b"vote", encode(&Vote::<u64>::new_committed(2, 1))).unwrap();
        meta.insert(b"committed", encode(&Some(log_id(2, 8)))).unwrap();
        meta.insert(b"last_purged", encode(&log_id(2, 4))).unwrap();

        let wal = Wal::open(&dir.path().join("wal"), WalOptions::default()).unwrap();
        let store = WalLogStore::new(wal.clone(), 5, Durability::Fsync);
        drop((log, meta));
        let trees = |db: &sled::Db| db.tree_names().iter().filter(|n| n.starts_with(b"g")).count();
        assert_eq!(store.import_sled(&db).await.unwrap(), 5, "entries 5..=9 move; 3 and 4 were purged");
        assert_eq!(trees(&db), 0, "the sled trees are dropped");
        assert_eq!(store.import_sled(&db).await.unwrap(), 0, "a second start has nothing to move");
        assert_eq!(trees(&db), 0, "and creates no tree to look");
        // A crash after the move, before the meta tree was dropped: the next start only drops it.
        db.open_tree("g5/meta").unwrap().insert(b"vote", encode(&Vote::<u64>::new_committed(1, 3))).unwrap();
        assert_eq!(store.import_sled(&db).await.unwrap(), 0, "the WAL already holds the group");
        assert_eq!(trees(&db), 0);
        drop((store, wal));

        let wal = Wal::open(&dir.path().join("wal"), WalOptions::default()).unwrap();
        let mut store = WalLogStore::new(wal, 5, Durability::Fsync);
        let state = store.get_log_state().await.unwrap();
        assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(log_id(2, 4)), Some(log_id(2, 9))));
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new_committed(2, 1)));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(2, 8)));
        let ids: Vec<u64> = store.try_get_log_entries(0..).await.unwrap().iter().map(|e| e.log_id.index).collect();
        assert_eq!(ids, vec![5, 6, 7, 8, 9]);
    }

    #[tokio::test]
    async fn a_nodes_own_committed_vote_comes_back_uncommitted() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        let mut own = WalLogStore::new(wal.clone(), 1, Durability::Fsync).owned_by(1);
        own.save_vote(&Vote::new_committed(4, 1)).await.unwrap();
        assert_eq!(own.read_vote().await.unwrap(), Some(Vote::new(4, 1)));
        let mut other = WalLogStore::new(wal, 1, Durability::Fsync).owned_by(2);
        assert_eq!(other.read_vote().await.unwrap(), Some(Vote::new_committed(4, 1)));
    }
}
