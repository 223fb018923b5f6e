//! The openraft state machine of one group: a [`CacheState`] shared with the read path, and
//! its latest snapshot in a file of its own.
//!
//! Snapshots are files, not sled values: sled keeps what it stores in memory, and a snapshot is
//! the size of the whole state (about 126 bytes per key), so holding it in sled as well roughly
//! doubled what a key cost beyond the state itself.

use std::fs::{self, File};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use raftcache_core::{CacheState, Response, StateConfig};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::types::{NodeInfo, TypeConfig};

/// Where snapshots were kept before they moved to files; read once, for data dirs written then.
const LEGACY_SNAP_META: &[u8] = b"meta";
const LEGACY_SNAP_DATA: &[u8] = b"data";
/// First bytes of a snapshot file; the number names the layout that follows:
/// `[magic][meta length u32 LE][meta (bincode)][state (CacheState::to_bytes)]`.
const SNAP_MAGIC: &[u8; 8] = b"RCSNAP1\n";

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
    /// The group's snapshot file.
    snap_path: PathBuf,
    /// The metadata of the snapshot in `snap_path`, if there is one.
    snap_meta: Arc<Mutex<Option<SnapshotMeta<u64, NodeInfo>>>>,
    /// Held while a snapshot is written: a build (its own task) and an install (the state
    /// machine's task) must not write the same temporary file at once.
    writing: Arc<tokio::sync::Mutex<()>>,
    group: u64,
    /// Encode snapshots in a forked child (see [`encode_state`]).
    fork: bool,
}

fn snap_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::write_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

fn read_snap_err(e: impl ToString) -> StorageError<u64> {
    StorageIOError::read_snapshot(None, &std::io::Error::other(e.to_string())).into()
}

impl StateMachineStore {
    /// Opens the state machine of `group`, restoring the latest snapshot if there is one.
    /// Snapshots live in `snap_dir` (created if missing), one file per group.
    pub fn open(db: &sled::Db, snap_dir: &Path, group: u64, config: StateConfig) -> Result<Self, StorageError<u64>> {
        fs::create_dir_all(snap_dir).map_err(read_snap_err)?;
        let snap_path = snap_dir.join(format!("g{group}.snap"));
        let legacy = db.open_tree(format!("g{group}/snap")).map_err(read_snap_err)?;
        let mut data =
            SmData { state: CacheState::new(config), last_applied: None, last_membership: StoredMembership::default() };
        let stored = match read_snapshot_file(&snap_path)? {
            Some(found) => Some(found),
            None => match read_legacy_snapshot(&legacy)? {
                Some((meta, bytes)) => {
                    // Move it to its file, so that sending it to a follower finds it there.
                    write_snapshot_file(&snap_path, &meta, &bytes).map_err(snap_err)?;
                    legacy.clear().map_err(snap_err)?;
                    Some((meta, bytes))
                }
                None => None,
            },
        };
        let mut snap_meta = None;
        if let Some((meta, bytes)) = stored {
            data.state = CacheState::from_bytes(&bytes).map_err(read_snap_err)?;
            data.last_applied = meta.last_log_id;
            data.last_membership = meta.last_membership.clone();
            snap_meta = Some(meta);
            tracing::info!(group, applied = data.applied_index(), "restored snapshot");
        }
        Ok(Self {
            data: Arc::new(RwLock::new(data)),
            snap_path,
            snap_meta: Arc::new(Mutex::new(snap_meta)),
            writing: Arc::default(),
            group,
            fork: true,
        })
    }

    /// Whether snapshots are encoded in a forked child (the default) or in this process under
    /// the state lock.
    pub fn fork_snapshots(mut self, fork: bool) -> Self {
        self.fork = fork;
        self
    }

    /// The shared state, for the read path.
    pub fn data(&self) -> Arc<RwLock<SmData>> {
        self.data.clone()
    }

    /// The log id of the stored snapshot, if any.
    pub fn snapshot_index(&self) -> u64 {
        self.stored_snapshot_meta().and_then(|m| m.last_log_id).map(|l| l.index).unwrap_or(0)
    }

    fn stored_snapshot_meta(&self) -> Option<SnapshotMeta<u64, NodeInfo>> {
        self.snap_meta.lock().expect("snapshot meta lock poisoned").clone()
    }

    /// Makes `bytes` the group's snapshot, durably, before returning (openraft purges the log
    /// up to it next). Returns the bytes. A build older than the stored snapshot (one that
    /// started before an install finished) is not stored: the newer one covers more of the log.
    async fn store_snapshot(
        &self,
        meta: &SnapshotMeta<u64, NodeInfo>,
        bytes: Vec<u8>,
        built_here: bool,
    ) -> Result<Vec<u8>, StorageError<u64>> {
        let _writing = self.writing.lock().await;
        let older = self.stored_snapshot_meta().is_some_and(|stored| stored.last_log_id > meta.last_log_id);
        if built_here && older {
            tracing::info!(group = self.group, "a newer snapshot is stored already; not replacing it");
            return Ok(bytes);
        }
        let (path, file_meta) = (self.snap_path.clone(), meta.clone());
        let bytes = tokio::task::spawn_blocking(move || write_snapshot_file(&path, &file_meta, &bytes).map(|()| bytes))
            .await
            .map_err(snap_err)?
            .map_err(snap_err)?;
        *self.snap_meta.lock().expect("snapshot meta lock poisoned") = Some(meta.clone());
        Ok(bytes)
    }
}

/// Held while a snapshot file is written: one at a time in a process, so the node's groups,
/// which reach their snapshot points together, do not fill the device's queue together.
static ONE_SNAPSHOT_WRITER: Mutex<()> = Mutex::new(());

/// Writes a snapshot file next to `path`, syncs it, renames it over `path` and syncs the
/// directory, so a crash leaves either the old snapshot or the new one.
///
/// The state goes out paced, as the WAL's spare segment does ([`crate::wal::write_paced`]: a MiB
/// at a time, each piece synced and followed by as long idle as it took). Written at once and synced at the end, a
/// group's 20 MB filled the device's queue, and the WAL's syncs, on the same device, waited
/// behind it: 3 nodes, 3 groups, 64 clients writing new keys (3M-key space, 100-byte values),
/// writes fell to 2,000-6,000/s with a p99 of 40-80 ms for ~2 s each time the groups
/// snapshotted together. The file takes longer to write; nothing waits for it but the log's
/// purge.
fn write_snapshot_file(path: &Path, meta: &SnapshotMeta<u64, NodeInfo>, state: &[u8]) -> std::io::Result<()> {
    let meta = encode(&StoredSnapshotMeta { meta: meta.clone() });
    let tmp = path.with_extension("snap.tmp");
    let _one = ONE_SNAPSHOT_WRITER.lock().unwrap_or_else(|e| e.into_inner());
    let mut f = File::create(&tmp)?;
    let meta_len = u32::try_from(meta.len()).map_err(std::io::Error::other)?;
    f.write_all(SNAP_MAGIC)?;
    f.write_all(&meta_len.to_le_bytes())?;
    f.write_all(&meta)?;
    crate::wal::write_paced(&f, state.len() as u64, |from, to| (&f).write_all(&state[from as usize..to as usize]))?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A stored snapshot: its metadata and state bytes.
type StoredSnapshot = (SnapshotMeta<u64, NodeInfo>, Vec<u8>);

/// The snapshot in `path`; `None` if there is no file.
fn read_snapshot_file(path: &Path) -> Result<Option<StoredSnapshot>, StorageError<u64>> {
    let mut bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_snap_err(e)),
    };
    let corrupt = |what: &str| read_snap_err(format!("snapshot file {}: {what}", path.display()));
    let header = SNAP_MAGIC.len() + 4;
    if bytes.len() < header || &bytes[..SNAP_MAGIC.len()] != SNAP_MAGIC {
        return Err(corrupt("not a snapshot file of this format"));
    }
    let meta_len = u32::from_le_bytes(bytes[SNAP_MAGIC.len()..header].try_into().expect("4 bytes")) as usize;
    if bytes.len() - header < meta_len {
        return Err(corrupt("truncated metadata"));
    }
    let meta: StoredSnapshotMeta = decode(&bytes[header..header + meta_len]).map_err(|e| corrupt(&e.to_string()))?;
    bytes.drain(..header + meta_len);
    Ok(Some((meta.meta, bytes)))
}

/// A snapshot stored in sled by an earlier version, if any.
fn read_legacy_snapshot(legacy: &sled::Tree) -> Result<Option<StoredSnapshot>, StorageError<u64>> {
    match (legacy.get(LEGACY_SNAP_META).map_err(read_snap_err)?, legacy.get(LEGACY_SNAP_DATA).map_err(read_snap_err)?) {
        (Some(m), Some(d)) => {
            let m: StoredSnapshotMeta = decode(&m).map_err(read_snap_err)?;
            Ok(Some((m.meta, d.to_vec())))
        }
        _ => Ok(None),
    }
}

/// A group's state encoded for a snapshot.
struct Encoded {
    bytes: Vec<u8>,
    last_applied: Option<LogId<u64>>,
    last_membership: StoredMembership<u64, NodeInfo>,
    /// How long apply was held off: the fork, or the whole encode in this process.
    locked: Duration,
    /// The whole encode, fork to last byte.
    took: Duration,
}

/// The state's snapshot encoding and the log position and membership it reflects.
///
/// With `fork`, encodes in a forked child ([`crate::forked`]): the read lock is held only across
/// the fork, so apply and reads go on while the child encodes. If the child cannot be started or
/// fails, and without `fork`, encodes here under the lock, which stops apply meanwhile.
fn encode_state(data: &RwLock<SmData>, group: u64, fork: bool) -> Encoded {
    let start = Instant::now();
    let in_process = |why: Option<&dyn std::fmt::Display>| {
        if let Some(why) = why {
            tracing::warn!(group, error = %why, "encoding the snapshot in the node's process, under the state lock");
        }
        let d = data.read().expect("state machine lock poisoned");
        let locked = Instant::now();
        let bytes = d.state.to_bytes();
        let (last_applied, last_membership) = (d.last_applied, d.last_membership.clone());
        drop(d);
        Encoded { bytes, last_applied, last_membership, locked: locked.elapsed(), took: start.elapsed() }
    };
    if !fork {
        return in_process(None);
    }
    let turn = crate::forked::reserve();
    let d = data.read().expect("state machine lock poisoned");
    let locked = Instant::now();
    let (last_applied, last_membership) = (d.last_applied, d.last_membership.clone());
    let child = match crate::forked::spawn(turn, |w| d.state.write_to(w)) {
        Ok(child) => child,
        Err(e) => {
            drop(d);
            return in_process(Some(&e));
        }
    };
    drop(d);
    let locked = locked.elapsed();
    match child.finish() {
        Ok(bytes) => Encoded { bytes, last_applied, last_membership, locked, took: start.elapsed() },
        Err(e) => in_process(Some(&e)),
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        let (data, group, fork) = (self.data.clone(), self.group, self.fork);
        let Encoded { bytes, last_applied, last_membership, locked, took } =
            tokio::task::spawn_blocking(move || encode_state(&data, group, fork)).await.map_err(snap_err)?;
        let stored = Instant::now();
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, bytes.len()),
            None => format!("empty-{}", bytes.len()),
        };
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership, snapshot_id };
        let bytes = self.store_snapshot(&meta, bytes, true).await?;
        tracing::info!(
            group = self.group,
            index = last_applied.map(|l| l.index),
            bytes = bytes.len(),
            locked_ms = locked.as_millis() as u64,
            encode_ms = took.as_millis() as u64,
            store_ms = stored.elapsed().as_millis() as u64,
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
        self.store_snapshot(meta, bytes, false).await?;
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
        let path = self.snap_path.clone();
        let stored = tokio::task::spawn_blocking(move || read_snapshot_file(&path)).await.map_err(read_snap_err)??;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::CommittedLeaderId;
    use raftcache_core::{CacheKey, Command, Condition, Request};

    use super::*;

    fn state_with_one_key() -> (SnapshotMeta<u64, NodeInfo>, Vec<u8>) {
        state_at(5)
    }

    /// A state whose last entry, at `index`, set one key.
    fn state_at(index: u64) -> (SnapshotMeta<u64, NodeInfo>, Vec<u8>) {
        let mut state = CacheState::default();
        let key = CacheKey::new("t", Bytes::from_static(b"k")).unwrap();
        let cmd = Command::Set { key, value: Bytes::from_static(b"v"), ttl_ms: None, cond: Condition::None };
        state.apply(index, &Request { now_ms: 1, client: None, cmd });
        let meta = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: "s".into(),
        };
        (meta, state.to_bytes())
    }

    #[test]
    fn a_snapshot_in_sled_moves_to_its_file_and_is_restored() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let (meta, bytes) = state_with_one_key();
        let legacy = db.open_tree("g3/snap").unwrap();
        legacy.insert(LEGACY_SNAP_META, encode(&StoredSnapshotMeta { meta: meta.clone() })).unwrap();
        legacy.insert(LEGACY_SNAP_DATA, bytes.clone()).unwrap();

        let snaps = dir.path().join("snapshots");
        let sm = StateMachineStore::open(&db, &snaps, 3, StateConfig::default()).unwrap();
        assert_eq!(sm.snapshot_index(), 5);
        assert_eq!(sm.data().read().unwrap().state.len(), 1);
        assert!(legacy.is_empty(), "the sled copy is dropped once the file exists");
        let (file_meta, file_bytes) = read_snapshot_file(&snaps.join("g3.snap")).unwrap().expect("a file");
        assert_eq!((file_meta, file_bytes), (meta, bytes));

        // Reopening reads the file.
        drop(sm);
        let sm = StateMachineStore::open(&db, &snaps, 3, StateConfig::default()).unwrap();
        assert_eq!((sm.snapshot_index(), sm.data().read().unwrap().applied_index()), (5, 5));
    }

    #[test]
    fn a_built_snapshot_holds_the_state_at_its_log_position() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let mut sm = StateMachineStore::open(&db, &dir.path().join("snapshots"), 2, StateConfig::default()).unwrap();
        let digest = {
            let mut d = sm.data.write().unwrap();
            for i in 1..=2_000u64 {
                let key = CacheKey::new("t", Bytes::from(format!("k{i}"))).unwrap();
                let cmd =
                    Command::Set { key, value: Bytes::from(vec![b'v'; 100]), ttl_ms: None, cond: Condition::None };
                d.state.apply(i, &Request { now_ms: i, client: None, cmd });
            }
            d.last_applied = Some(LogId::new(CommittedLeaderId::new(1, 1), 2_000));
            d.state.digest()
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut built_bytes = Vec::new();
        for fork in [true, false] {
            sm = sm.fork_snapshots(fork);
            let snap = rt.block_on(sm.build_snapshot()).unwrap();
            assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(2_000));
            let built = CacheState::from_bytes(snap.snapshot.get_ref()).unwrap();
            assert_eq!((built.len(), built.digest()), (2_000, digest), "fork: {fork}");
            let (meta, stored) = read_snapshot_file(&sm.snap_path).unwrap().expect("a file");
            assert_eq!((meta, &stored), (snap.meta, snap.snapshot.get_ref()));
            built_bytes.push(stored);
        }
        assert_eq!(built_bytes[0], built_bytes[1], "the child and this process encode the same bytes");
    }

    #[test]
    fn a_state_of_several_pieces_is_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1.snap");
        let (meta, _) = state_with_one_key();
        // Two and a half pieces of bytes that differ from piece to piece, so a piece lost,
        // repeated or out of place shows.
        let piece = crate::wal::PACED_SYNC_BYTES as usize;
        let state: Vec<u8> = (0..piece * 5 / 2).map(|i| (i % 251) as u8 ^ (i / piece) as u8).collect();
        write_snapshot_file(&path, &meta, &state).unwrap();
        let (read_meta, read_state) = read_snapshot_file(&path).unwrap().expect("a file");
        assert_eq!(read_meta, meta);
        assert_eq!(read_state.len(), state.len());
        assert!(read_state == state, "the state read back differs from the one written");
        assert!(!path.with_extension("snap.tmp").exists(), "the temporary file was renamed into place");
    }

    #[test]
    fn a_damaged_snapshot_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g1.snap");
        let (meta, bytes) = state_with_one_key();
        write_snapshot_file(&path, &meta, &bytes).unwrap();
        let good = fs::read(&path).unwrap();
        assert!(read_snapshot_file(&path).unwrap().is_some());

        for (what, damaged) in [
            ("foreign file", b"not a snapshot at all".to_vec()),
            ("truncated metadata", good[..SNAP_MAGIC.len() + 6].to_vec()),
            ("empty", Vec::new()),
        ] {
            fs::write(&path, &damaged).unwrap();
            let err = read_snapshot_file(&path).expect_err(what).to_string();
            assert!(err.contains("g1.snap"), "{what}: {err}");
        }
        fs::remove_file(&path).unwrap();
        assert!(read_snapshot_file(&path).unwrap().is_none(), "no file, no snapshot");
    }

    #[test]
    fn a_build_older_than_the_stored_snapshot_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let snaps = dir.path().join("snapshots");
        let sm = StateMachineStore::open(&db, &snaps, 1, StateConfig::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (newer, newer_bytes) = state_at(10);
            sm.store_snapshot(&newer, newer_bytes, false).await.unwrap();
            let (older, older_bytes) = state_at(7);
            sm.store_snapshot(&older, older_bytes.clone(), true).await.unwrap();
            assert_eq!(sm.snapshot_index(), 10, "the older build was not stored");
            // An install always replaces: openraft sends only snapshots the follower needs.
            sm.store_snapshot(&older, older_bytes, false).await.unwrap();
            assert_eq!(sm.snapshot_index(), 7);
        });
        let (meta, _) = read_snapshot_file(&snaps.join("g1.snap")).unwrap().expect("a file");
        assert_eq!(meta.last_log_id.map(|l| l.index), Some(7));
    }
}
