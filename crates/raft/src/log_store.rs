//! The Raft log of one group in sled.
//!
//! Invariants of the trees (all written by this file only):
//! - `log`: key = big-endian `u64` index, value = bincode entry. Indexes are contiguous from
//!   `last_purged + 1` to the last entry; `truncate` and `purge` keep that true.
//! - `meta`: `vote`, `committed`, `last_purged` (bincode `LogId`/`Vote`). `last_purged` never
//!   decreases.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};

use crate::codec::{decode, encode};
use crate::config::Durability;
use crate::flusher::Flusher;
use crate::types::TypeConfig;

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The log store of one group. Cheap to clone: clones share the sled trees.
#[derive(Clone)]
pub struct SledLogStore {
    flusher: Flusher,
    log: sled::Tree,
    meta: sled::Tree,
    durability: Durability,
    /// This node's id when the store belongs to a running group (see `read_vote`).
    owner: Option<u64>,
    /// The highest commit index openraft has handed to `save_committed` since start (0 before).
    /// openraft saves it before applying the entries up to it, so on a leader it covers every
    /// write that was acknowledged (a write is acknowledged once applied).
    committed: Arc<AtomicU64>,
}

fn read_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::read_logs(&std::io::Error::other(e.to_string())).into()
}

fn write_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::write_logs(&std::io::Error::other(e.to_string())).into()
}

fn vote_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::write_vote(&std::io::Error::other(e.to_string())).into()
}

impl SledLogStore {
    /// Opens (or creates) the log trees of `group` in `db`.
    pub fn open(db: &sled::Db, flusher: Flusher, group: u64, durability: Durability) -> Result<Self, sled::Error> {
        Ok(Self {
            flusher,
            log: db.open_tree(format!("g{group}/log"))?,
            meta: db.open_tree(format!("g{group}/meta"))?,
            durability,
            owner: None,
            committed: Arc::default(),
        })
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
        self.meta.get(VOTE).ok().flatten().is_some() || !self.log.is_empty()
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError<u64>> {
        match self.meta.get(key).map_err(read_err)? {
            Some(v) => Ok(Some(decode(&v).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    async fn flush(&self) -> Result<(), String> {
        self.flusher.flush().await
    }
}

fn range_to_keys<RB: RangeBounds<u64>>(range: &RB) -> ([u8; 8], Bound<[u8; 8]>) {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => Bound::Included(e.to_be_bytes()),
        Bound::Excluded(e) => Bound::Excluded(e.to_be_bytes()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (start.to_be_bytes(), end)
}

impl RaftLogReader<TypeConfig> for SledLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let (start, end) = range_to_keys(&range);
        let mut out = Vec::new();
        for kv in self.log.range((Bound::Included(start), end)) {
            let (_, v) = kv.map_err(read_err)?;
            out.push(decode(&v).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for SledLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged: Option<LogId<u64>> = self.get_meta(LAST_PURGED)?;
        let last = match self.log.last().map_err(read_err)? {
            Some((_, v)) => Some(decode::<Entry<TypeConfig>>(&v).map_err(read_err)?.log_id),
            None => last_purged,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        self.meta.insert(VOTE, encode(vote)).map_err(vote_err)?;
        self.flush().await.map_err(vote_err)?;
        Ok(())
    }

    /// The stored vote, except that this node's own committed (leader) vote comes back
    /// uncommitted.
    ///
    /// openraft reads the vote only at start-up and, given a committed vote for itself, resumes
    /// as leader in the old term without proposing a new blank entry. Its read index is then
    /// `max(first entry of the term, committed)`, and `committed` restarts wherever the last
    /// (unflushed) `save_committed` left it: a linearizable read could miss writes acknowledged
    /// before the restart. Returned uncommitted, the vote still stops this node from voting for
    /// another candidate in that term, and the node wins leadership only through a new election,
    /// whose blank entry makes every earlier write part of the read index.
    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        let vote: Option<Vote<u64>> = self.get_meta(VOTE)?;
        Ok(vote.map(|v| match self.owner {
            Some(me) if v.is_committed() && v.leader_id().voted_for() == Some(me) => {
                Vote::new(v.leader_id().get_term(), me)
            }
            _ => v,
        }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError<u64>> {
        // Not flushed on its own: losing it only means re-learning the commit index from a leader.
        self.meta.insert(COMMITTED, encode(&committed)).map_err(write_err)?;
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::AcqRel);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.get_meta::<Option<LogId<u64>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for e in entries {
            batch.insert(&e.log_id.index.to_be_bytes(), encode(&e));
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        match self.durability {
            // Return at once and let the flusher complete the callback: openraft keeps handling
            // heartbeats and votes while the disk works, and one fsync covers many appends.
            Durability::Fsync => {
                self.flusher.flush_then(move |res| callback.log_io_completed(res.map_err(std::io::Error::other)))
            }
            Durability::Async => callback.log_io_completed(Ok(())),
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(log_id.index.to_be_bytes()..) {
            let (k, _) = kv.map_err(read_err)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        self.flush().await.map_err(write_err)?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        // Record the purge point first: a crash in between leaves extra entries, never a gap.
        self.meta.insert(LAST_PURGED, encode(&log_id)).map_err(write_err)?;
        let mut batch = sled::Batch::default();
        for kv in self.log.range(..=log_id.index.to_be_bytes()) {
            let (k, _) = kv.map_err(read_err)?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}
