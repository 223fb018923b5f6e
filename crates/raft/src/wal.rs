//! One write-ahead log per node for the Raft logs of all its groups.
//!
//! Every group's entries, votes, commit marks, truncations and purges are records appended to
//! one file, so a single `fdatasync` makes all groups' appends durable at once (group commit),
//! and an append costs a `memcpy` under a lock plus a share of one `write` and one sync — where
//! a sled tree per group cost a quarter of a node's CPU in sled's own IO threads under a write
//! load (see the issue 4 notes).
//!
//! ## Files
//!
//! `wal/<id:016x>.wal`, ids increasing. A segment starts with [`MAGIC`], then records:
//! `[body length: u32 LE][crc32 of body: u32 LE][body: bincode Record]`. Appends go to the
//! newest segment; once it holds [`WalOptions::segment_bytes`] a new one starts, and it starts
//! with a `Meta` record per group (vote, commit mark, purge point), so that an older segment is
//! needed only for its entries: it is deleted once every group has purged every entry it holds.
//!
//! ## Crashes
//!
//! Records reach the file in the order they were appended; a sync covers everything before it.
//! On open, every segment is read in order and replayed. A record cut short or failing its
//! checksum at the end of the newest segment is what a crash in the middle of a write leaves:
//! the file is cut there (those records were never acknowledged: an acknowledgement waits for
//! the sync). The same damage anywhere else is corruption, and opening fails naming the file
//! and offset. A segment is created only after everything before it is synced, and an old
//! segment is deleted only after the newer segment's header is synced.
//!
//! ## Preallocation
//!
//! An `fdatasync` after an append that grew the file also writes the file's inode (its size),
//! a second synchronous IO: on this project's machines 225 µs a sync against 155 µs for the same
//! write into a zero-filled file. So once a segment holds a sixteenth of
//! [`WalOptions::segment_bytes`], a thread writes the next segment's file full of zeros
//! ([`SPARE`], synced, outside the appends' path), and the next roll-over renames it into place;
//! a segment that was not preallocated (the first, or one created while no spare was ready)
//! rolls over as soon as a spare is. In a preallocated segment the records end where an
//! all-zero frame header begins (a record's body is never empty). On open, bytes after that end
//! of the newest segment (records written but not synced before a crash, behind one that never
//! reached the disk) are zeroed; in an older segment they are corruption. A spare renamed into
//! place but still without its header is what a crash right after the rename leaves; it is
//! treated like a segment without a complete header.
//!
//! ## Memory
//!
//! Each group keeps the position of every entry it holds and, for its newest entries, the
//! decoded entry itself (replication and apply read the tail right after it is appended). The
//! cached entries of all groups share a byte budget; older entries are read back from the file.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::{Entry, LogId, Vote};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode};
use crate::types::TypeConfig;

/// The first bytes of every segment (format version 1).
pub const MAGIC: &[u8; 8] = b"RCWAL001";
const FRAME_HEADER: usize = 8;
/// Without waiters, buffered records are written and synced at least this often.
const BACKGROUND_SYNC: Duration = Duration::from_millis(500);
/// Records nobody waits for (commit marks, appends without a waiter) wake the sync thread only
/// once this many bytes of them are buffered; until then they go out with the next pass a
/// waiter asks for, or with the background sync.
const LAZY_BYTES: usize = 64 << 10;
/// The zero-filled file the next segment is renamed from (see the module docs).
pub const SPARE: &str = "next-segment.spare";

/// What is appended. Generic over the entry so that appends encode a borrowed entry and replay
/// decodes an owned one with the same layout.
#[derive(Serialize, Deserialize)]
enum Record<E> {
    Entry {
        group: u64,
        entry: E,
    },
    Truncate {
        group: u64,
        since: u64,
    },
    Purge {
        group: u64,
        upto: LogId<u64>,
    },
    Vote {
        group: u64,
        vote: Vote<u64>,
    },
    Committed {
        group: u64,
        committed: Option<LogId<u64>>,
    },
    /// A group's whole non-entry state; the header of every segment but the first.
    Meta {
        group: u64,
        vote: Option<Vote<u64>>,
        committed: Option<LogId<u64>>,
        last_purged: Option<LogId<u64>>,
    },
}

/// Tuning of a [`Wal`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Start a new segment once the current one holds this many bytes.
    pub segment_bytes: u64,
    /// Bytes of decoded entries kept in memory across all groups.
    pub cache_bytes: usize,
    /// Write each next segment's file full of zeros ahead of time (see the module docs).
    pub preallocate: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self { segment_bytes: 64 << 20, cache_bytes: 32 << 20, preallocate: true }
    }
}

/// The next segment's preallocated file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spare {
    /// None and none asked for.
    Absent,
    /// Asked of the preallocation thread (maybe being written).
    Wanted,
    /// [`SPARE`] is written and synced.
    Ready,
    /// Writing it failed; asked again after the next roll-over.
    Failed,
}

/// A group's log state other than its entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogMeta {
    /// The last vote saved.
    pub vote: Option<Vote<u64>>,
    /// The last commit mark saved.
    pub committed: Option<LogId<u64>>,
    /// Entries up to this one are gone (part of a snapshot).
    pub last_purged: Option<LogId<u64>>,
}

/// Called once the records appended before it are durable (or could not be made so).
pub type Waiter = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Where an entry's record is.
struct Slot {
    log_id: LogId<u64>,
    seg: u64,
    offset: u64,
    len: u32,
    cached: Option<Entry<TypeConfig>>,
}

impl Slot {
    fn end(&self) -> (u64, u64) {
        (self.seg, self.offset + u64::from(self.len))
    }
}

/// The log of one group as the WAL holds it.
#[derive(Default)]
struct GroupLog {
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
    last_purged: Option<LogId<u64>>,
    /// The index of the last purge known to be on disk; segments are deleted by this one.
    durable_purged: Option<u64>,
    /// Entries by consecutive index.
    slots: VecDeque<Slot>,
    /// Entries from this index on are cached, the ones before it are not.
    cached_from: u64,
    /// During replay: the entry after which one or more entries were missing, if the entries
    /// replayed so far had a gap (see `replay_segment`).
    gap_after: Option<u64>,
}

impl GroupLog {
    fn first_index(&self) -> Option<u64> {
        self.slots.front().map(|s| s.log_id.index)
    }

    fn position(&self, index: u64) -> Option<usize> {
        let first = self.first_index()?;
        let pos = usize::try_from(index.checked_sub(first)?).ok()?;
        (pos < self.slots.len()).then_some(pos)
    }

    /// Drops the entries from `since` on; returns the cached bytes freed.
    fn truncate(&mut self, since: u64) -> usize {
        let mut freed = 0;
        while self.slots.back().is_some_and(|s| s.log_id.index >= since) {
            let s = self.slots.pop_back().expect("checked non-empty");
            freed += s.cached.map_or(0, |_| s.len as usize);
        }
        self.cached_from = self.cached_from.min(since);
        freed
    }

    /// Drops the entries up to `upto` and records the purge point; returns the cached bytes freed.
    fn purge(&mut self, upto: LogId<u64>) -> usize {
        if self.last_purged.is_some_and(|p| p.index >= upto.index) {
            return 0;
        }
        self.last_purged = Some(upto);
        let mut freed = 0;
        while self.slots.front().is_some_and(|s| s.log_id.index <= upto.index) {
            let s = self.slots.pop_front().expect("checked non-empty");
            freed += s.cached.map_or(0, |_| s.len as usize);
        }
        self.cached_from = self.cached_from.max(upto.index + 1);
        freed
    }

    /// Whether an entry at `index` may be added: `Ok(false)` if it is at or below the purge
    /// point (already part of a snapshot: skipped), an error if it would leave a gap.
    fn accepts(&self, index: u64) -> Result<bool, String> {
        if self.last_purged.is_some_and(|p| index <= p.index) {
            return Ok(false);
        }
        let prev = self.slots.back().map(|s| s.log_id.index).or(self.last_purged.map(|p| p.index));
        match prev {
            // An entry at or below the last one replaces it and everything after it.
            Some(prev) if index > prev + 1 => Err(format!("entry {index} does not follow entry {prev}")),
            _ => Ok(true),
        }
    }

    /// Adds an entry's slot (one that [`GroupLog::accepts`]) after the existing ones, dropping
    /// any at or after its index. Returns the cached bytes freed.
    fn push(&mut self, slot: Slot) -> usize {
        let index = slot.log_id.index;
        let freed = self.truncate(index);
        if slot.cached.is_none() {
            self.cached_from = index + 1;
        }
        self.slots.push_back(slot);
        freed
    }

    /// Forgets this group's oldest cached entries while `cached` exceeds `budget`; only entries
    /// already written (before `written`) can be read back, so only those are forgotten.
    fn evict(&mut self, cached: &mut usize, budget: usize, written: (u64, u64)) {
        while *cached > budget {
            let Some(pos) = self.position(self.cached_from) else { break };
            let s = &mut self.slots[pos];
            if s.end() > written {
                break;
            }
            if s.cached.take().is_some() {
                *cached -= s.len as usize;
            }
            self.cached_from += 1;
        }
    }

    fn has_state(&self) -> bool {
        self.vote.is_some() || self.last_purged.is_some() || !self.slots.is_empty()
    }
}

struct Segment {
    file: Arc<File>,
    /// Highest entry index of each group stored in this segment.
    max_index: HashMap<u64, u64>,
}

/// Bytes waiting to be written at `offset` of segment `seg`.
struct Chunk {
    seg: u64,
    file: Arc<File>,
    offset: u64,
    bytes: Vec<u8>,
}

struct State {
    groups: HashMap<u64, GroupLog>,
    segments: BTreeMap<u64, Segment>,
    /// The segment receiving appends, its header's length, and its length counting buffered
    /// bytes.
    active: u64,
    active_header: u64,
    active_len: u64,
    /// The active segment's file length before any buffered bytes: writes below it do not grow
    /// the file.
    active_capacity: u64,
    spare: Spare,
    pending: Vec<Chunk>,
    /// Bytes in `pending`.
    pending_bytes: usize,
    waiters: Vec<Waiter>,
    /// The sync thread waits for work and nobody has woken it yet (see [`Wal::queue_and_wake`]).
    sync_idle: bool,
    /// Everything before this position is written to its file (maybe not yet synced).
    written: (u64, u64),
    /// Everything before this position is synced.
    synced: (u64, u64),
    cached_bytes: usize,
    /// The first write or sync error; the WAL refuses everything after it.
    failed: Option<String>,
    stop: bool,
}

struct Shared {
    dir: PathBuf,
    opts: WalOptions,
    state: Mutex<State>,
    work: Condvar,
    /// Wakes the preallocation thread.
    prep: Condvar,
}

/// A node's write-ahead log. Cheap to clone. When the last clone drops, the sync thread writes
/// and syncs what is buffered and stops, and the drop waits for it: a WAL opened again on the
/// same directory never races the old one's last writes.
#[derive(Clone)]
pub struct Wal {
    shared: Arc<Shared>,
    _stopper: Arc<Stopper>,
}

struct Stopper {
    shared: Arc<Shared>,
    sync_thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Stopper {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.work.notify_all();
        self.shared.prep.notify_all();
        if let Some(t) = self.sync_thread.take() {
            // A waiter run by the sync thread could hold the last clone; it cannot join itself.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("wal lock poisoned")
    }

    /// Deletes every segment older than the synced one whose entries are all durably purged.
    fn delete_unneeded(&self) -> io::Result<()> {
        let doomed: Vec<u64> = {
            let mut st = self.lock();
            let synced_seg = st.synced.0;
            let doomed: Vec<u64> = st
                .segments
                .iter()
                .filter(|(id, _)| **id < synced_seg)
                .filter(|(_, seg)| {
                    seg.max_index
                        .iter()
                        .all(|(g, max)| st.groups.get(g).and_then(|g| g.durable_purged).is_some_and(|p| p >= *max))
                })
                .map(|(id, _)| *id)
                .collect();
            for id in &doomed {
                st.segments.remove(id);
            }
            doomed
        };
        for id in &doomed {
            fs::remove_file(segment_path(&self.dir, *id))?;
        }
        if !doomed.is_empty() {
            tracing::debug!(segments = ?doomed, "deleted purged WAL segments");
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.wal"))
}

fn corrupt(path: &Path, offset: u64, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{} at offset {offset}: {what}", path.display()))
}

/// Frames `record` as it goes to disk.
fn frame<E: Serialize>(record: &Record<E>) -> Vec<u8> {
    let body = encode(record);
    let mut out = Vec::with_capacity(FRAME_HEADER + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The record framed at the start of `bytes` and its framed length; `Err` names what is wrong.
fn unframe(bytes: &[u8]) -> Result<(Record<Entry<TypeConfig>>, usize), String> {
    if bytes.len() < FRAME_HEADER {
        return Err(format!("record header cut short ({} bytes)", bytes.len()));
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let body = bytes.get(FRAME_HEADER..FRAME_HEADER + len).ok_or_else(|| format!("record of {len} bytes cut short"))?;
    if crc32fast::hash(body) != crc {
        return Err("record checksum mismatch".into());
    }
    let record = decode(body).map_err(|e| format!("undecodable record: {e}"))?;
    Ok((record, FRAME_HEADER + len))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Opens the WAL in `dir` (created if missing), replaying every segment.
    pub fn open(dir: &Path, opts: WalOptions) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut ids = Vec::new();
        for e in fs::read_dir(dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".wal").and_then(|h| u64::from_str_radix(h, 16).ok()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        // A spare left by the previous run may be half written; a new one is made when needed.
        remove_if_present(&dir.join(SPARE))?;
        // The sync thread writes to a new segment only after syncing the older ones, so empty
        // newest segments are all a crash can leave behind them; the one before is the newest.
        while let Some(&id) = ids.last() {
            let path = segment_path(dir, id);
            if fs::metadata(&path)?.len() > 0 {
                break;
            }
            fs::remove_file(&path)?;
            ids.pop();
        }
        let mut state = State {
            groups: HashMap::new(),
            segments: BTreeMap::new(),
            active: 0,
            active_header: 0,
            active_len: 0,
            active_capacity: 0,
            spare: Spare::Absent,
            pending: Vec::new(),
            pending_bytes: 0,
            waiters: Vec::new(),
            sync_idle: false,
            written: (0, 0),
            synced: (0, 0),
            cached_bytes: 0,
            failed: None,
            stop: false,
        };
        for (i, &id) in ids.iter().enumerate() {
            let newest = i + 1 == ids.len();
            let (len, capacity) = replay_segment(&mut state, dir, id, newest)?;
            state.active = id;
            state.active_header = MAGIC.len() as u64;
            state.active_len = len;
            state.active_capacity = capacity;
        }
        if ids.is_empty() {
            let file = create_segment(dir, 1)?;
            file.write_all_at(MAGIC, 0)?;
            file.sync_all()?;
            sync_dir(dir)?;
            state.segments.insert(1, Segment { file: Arc::new(file), max_index: HashMap::new() });
            state.active = 1;
            state.active_header = MAGIC.len() as u64;
            state.active_len = MAGIC.len() as u64;
            state.active_capacity = MAGIC.len() as u64;
        }
        state.written = (state.active, state.active_len);
        state.synced = state.written;
        for (id, g) in &mut state.groups {
            if let (Some(after), Some(first)) = (g.gap_after, g.first_index()) {
                if g.last_purged.is_none_or(|p| p.index + 1 < first) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "{}: group {id} misses the entries after {after} up to {first} (no purge covers them)",
                            dir.display()
                        ),
                    ));
                }
            }
            g.gap_after = None;
            g.durable_purged = g.last_purged.map(|p| p.index);
            g.cached_from = g.slots.back().map_or(0, |s| s.log_id.index + 1);
        }
        let preallocate = opts.preallocate;
        let shared = Arc::new(Shared {
            dir: dir.to_owned(),
            opts,
            state: Mutex::new(state),
            work: Condvar::new(),
            prep: Condvar::new(),
        });
        let worker = shared.clone();
        let sync_thread = std::thread::Builder::new().name("wal-sync".into()).spawn(move || sync_loop(&worker))?;
        if preallocate {
            let worker = shared.clone();
            std::thread::Builder::new().name("wal-prealloc".into()).spawn(move || prepare_loop(&worker))?;
        }
        Ok(Self { _stopper: Arc::new(Stopper { shared: shared.clone(), sync_thread: Some(sync_thread) }), shared })
    }

    /// Whether `group` has a vote, entries or a purge point.
    pub fn has_state(&self, group: u64) -> bool {
        self.shared.lock().groups.get(&group).is_some_and(GroupLog::has_state)
    }

    /// `group`'s vote, commit mark and purge point.
    pub fn meta(&self, group: u64) -> LogMeta {
        let st = self.shared.lock();
        st.groups.get(&group).map_or_else(LogMeta::default, |g| LogMeta {
            vote: g.vote,
            committed: g.committed,
            last_purged: g.last_purged,
        })
    }

    /// `group`'s last entry's id, or its purge point if it holds no entries.
    pub fn last_log_id(&self, group: u64) -> Option<LogId<u64>> {
        let st = self.shared.lock();
        let g = st.groups.get(&group)?;
        g.slots.back().map(|s| s.log_id).or(g.last_purged)
    }

    /// Appends `entries` of `group`; `done` (if any) runs once they are durable.
    pub fn append(
        &self,
        group: u64,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
        done: Option<Waiter>,
    ) -> io::Result<()> {
        let framed: Vec<_> = entries
            .into_iter()
            .map(|e| {
                let bytes = frame(&Record::Entry { group, entry: &e });
                (bytes, e)
            })
            .collect();
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        check_failed(st)?;
        for (bytes, entry) in framed {
            let index = entry.log_id.index;
            // Checked before the bytes are buffered: a record on disk that replay would refuse
            // would keep the node from starting.
            if !st.groups.entry(group).or_default().accepts(index).map_err(io::Error::other)? {
                continue;
            }
            let len = bytes.len() as u32;
            let (seg, offset) = self.reserve(st, bytes)?;
            let slot = Slot { log_id: entry.log_id, seg, offset, len, cached: Some(entry) };
            let freed = st.groups.get_mut(&group).expect("group entry made above").push(slot);
            st.cached_bytes = st.cached_bytes - freed + len as usize;
            let max = st.segments.get_mut(&seg).expect("reserved segment exists").max_index.entry(group).or_default();
            *max = (*max).max(index);
        }
        self.evict(st, group);
        self.queue_and_wake(guard, done);
        Ok(())
    }

    /// Appends a non-entry record of `group`, applying it to the in-memory state first.
    fn record(&self, group: u64, record: Record<&Entry<TypeConfig>>, done: Option<Waiter>) -> io::Result<()> {
        let bytes = frame(&record);
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        check_failed(st)?;
        let g = st.groups.entry(group).or_default();
        let freed = match record {
            Record::Truncate { since, .. } => g.truncate(since),
            Record::Purge { upto, .. } => g.purge(upto),
            Record::Vote { vote, .. } => {
                g.vote = Some(vote);
                0
            }
            Record::Committed { committed, .. } => {
                g.committed = committed;
                0
            }
            Record::Entry { .. } | Record::Meta { .. } => unreachable!("entries and metas are appended elsewhere"),
        };
        st.cached_bytes -= freed;
        self.reserve(st, bytes)?;
        self.queue_and_wake(guard, done);
        Ok(())
    }

    /// Records `group`'s vote; `done` runs once it is durable.
    pub fn save_vote(&self, group: u64, vote: Vote<u64>, done: Waiter) -> io::Result<()> {
        self.record(group, Record::Vote { group, vote }, Some(done))
    }

    /// Records `group`'s commit mark (synced with the next sync, not waited for).
    pub fn save_committed(&self, group: u64, committed: Option<LogId<u64>>) -> io::Result<()> {
        self.record(group, Record::Committed { group, committed }, None)
    }

    /// Drops `group`'s entries from `since` on; `done` runs once that is durable.
    pub fn truncate(&self, group: u64, since: u64, done: Waiter) -> io::Result<()> {
        self.record(group, Record::Truncate { group, since }, Some(done))
    }

    /// Drops `group`'s entries up to `upto`. Once the purge record is durable, deletes the
    /// segments no group needs any more: deleting them earlier, a crash could bring back the
    /// older purge point with the entries after it gone.
    pub fn purge(&self, group: u64, upto: LogId<u64>) -> io::Result<()> {
        let shared = self.shared.clone();
        let done = Box::new(move |r: Result<(), String>| {
            if r.is_ok() {
                if let Some(g) = shared.lock().groups.get_mut(&group) {
                    g.durable_purged = g.durable_purged.max(Some(upto.index));
                }
                if let Err(e) = shared.delete_unneeded() {
                    tracing::warn!(error = %e, "cannot delete a purged WAL segment");
                }
            }
        });
        self.record(group, Record::Purge { group, upto }, Some(done))
    }

    /// Runs `done` once everything appended so far is durable.
    pub fn sync_then(&self, done: Waiter) {
        let st = self.shared.lock();
        if let Some(e) = &st.failed {
            let e = e.clone();
            drop(st);
            return done(Err(e));
        }
        self.queue_and_wake(st, Some(done));
    }

    /// Waits until everything appended so far is durable.
    pub async fn sync(&self) -> Result<(), String> {
        until_durable(|done| {
            self.sync_then(done);
            Ok(())
        })
        .await
    }

    /// Writes a `Meta` record of `group` (used to import a log kept elsewhere before).
    pub fn set_meta(
        &self,
        group: u64,
        vote: Option<Vote<u64>>,
        committed: Option<LogId<u64>>,
        last_purged: Option<LogId<u64>>,
    ) -> io::Result<()> {
        let bytes = frame(&Record::<&Entry<TypeConfig>>::Meta { group, vote, committed, last_purged });
        let mut guard = self.shared.lock();
        let st = &mut *guard;
        check_failed(st)?;
        let g = st.groups.entry(group).or_default();
        g.vote = vote;
        g.committed = committed;
        let freed = last_purged.map_or(0, |p| g.purge(p));
        st.cached_bytes -= freed;
        self.reserve(st, bytes)?;
        Ok(())
    }

    /// `group`'s entries with indexes in `start..end` that it holds, in order.
    pub fn read(&self, group: u64, start: u64, end: u64) -> io::Result<Vec<Entry<TypeConfig>>> {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        {
            let st = self.shared.lock();
            let Some(g) = st.groups.get(&group) else { return Ok(Vec::new()) };
            let Some(first) = g.first_index() else { return Ok(Vec::new()) };
            let Some(mut pos) = g.position(start.max(first)) else { return Ok(Vec::new()) };
            while let Some(s) = g.slots.get(pos).filter(|s| s.log_id.index < end) {
                match &s.cached {
                    Some(e) => out.push(Some(e.clone())),
                    None => {
                        let file = st.segments.get(&s.seg).map(|seg| seg.file.clone());
                        missing.push((out.len(), s.seg, file, s.offset, s.len));
                        out.push(None);
                    }
                }
                pos += 1;
            }
        }
        for (at, seg, file, offset, len) in missing {
            let path = segment_path(&self.shared.dir, seg);
            let file = file.ok_or_else(|| corrupt(&path, offset, "segment missing"))?;
            let mut buf = vec![0; len as usize];
            file.read_exact_at(&mut buf, offset)?;
            match unframe(&buf).map_err(|e| corrupt(&path, offset, e))?.0 {
                Record::Entry { group: g, entry } if g == group => out[at] = Some(entry),
                _ => return Err(corrupt(&path, offset, "not an entry of this group")),
            }
        }
        Ok(out.into_iter().map(|e| e.expect("every slot read")).collect())
    }

    /// Queues `done` (if any) for the next sync, releases the lock, and wakes the sync thread if
    /// that is needed. Only a waiter, or enough buffered bytes, wakes it, and only if it is idle
    /// and nobody woke it yet: a busy sync thread looks for more work before it waits, and a
    /// condvar's notify is a system call even when nobody waits on it. Commit marks, written for
    /// every entry on every node, so ride with the next entry's sync instead of costing a pass (a
    /// wake-up and a `write`) of their own.
    fn queue_and_wake(&self, mut st: MutexGuard<'_, State>, done: Option<Waiter>) {
        let urgent = done.is_some();
        if let Some(w) = done {
            st.waiters.push(w);
        }
        let wake = st.sync_idle && (urgent || st.pending_bytes >= LAZY_BYTES);
        if wake {
            st.sync_idle = false;
        }
        drop(st);
        if wake {
            self.shared.work.notify_one();
        }
    }

    /// Buffers `bytes` at the end of the active segment (starting a new one if it is full);
    /// returns where they will be.
    fn reserve(&self, st: &mut State, bytes: Vec<u8>) -> io::Result<(u64, u64)> {
        let opts = &self.shared.opts;
        let header_only = st.active_len <= st.active_header;
        let end = st.active_len + bytes.len() as u64;
        // Full; or a preallocated file is ready and this one would have to grow.
        let full = end > opts.segment_bytes;
        let grows = st.spare == Spare::Ready && end > st.active_capacity;
        if (full || grows) && !header_only {
            self.roll_over(st)?;
        }
        let (seg, offset) = (st.active, st.active_len);
        st.active_len += bytes.len() as u64;
        st.pending_bytes += bytes.len();
        if opts.preallocate && st.spare == Spare::Absent && st.active_len - st.active_header >= opts.segment_bytes / 16
        {
            st.spare = Spare::Wanted;
            self.shared.prep.notify_one();
        }
        match st.pending.last_mut() {
            Some(c) if c.seg == seg => c.bytes.extend_from_slice(&bytes),
            _ => {
                let file = st.segments[&seg].file.clone();
                st.pending.push(Chunk { seg, file, offset, bytes });
            }
        }
        Ok((seg, offset))
    }

    /// Starts a new segment whose header restates every group's vote, commit mark and purge
    /// point. The sync thread creates nothing: the file exists (empty) from here on.
    fn roll_over(&self, st: &mut State) -> io::Result<()> {
        let id = st.active + 1;
        let dir = &self.shared.dir;
        let (file, capacity) = match std::mem::replace(&mut st.spare, Spare::Absent) {
            Spare::Ready => match use_spare(dir, id) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot use the preallocated WAL segment; creating an empty one");
                    (create_segment(dir, id)?, 0)
                }
            },
            // Still being written: it is renamed at the roll-over after it is ready.
            Spare::Wanted => {
                st.spare = Spare::Wanted;
                (create_segment(dir, id)?, 0)
            }
            Spare::Absent | Spare::Failed => (create_segment(dir, id)?, 0),
        };
        let file = Arc::new(file);
        let mut bytes = MAGIC.to_vec();
        let mut groups: Vec<_> = st.groups.iter().collect();
        groups.sort_unstable_by_key(|(id, _)| **id);
        for (&group, g) in groups {
            bytes.extend(frame(&Record::<&Entry<TypeConfig>>::Meta {
                group,
                vote: g.vote,
                committed: g.committed,
                last_purged: g.last_purged,
            }));
        }
        st.active = id;
        st.active_header = bytes.len() as u64;
        st.active_len = bytes.len() as u64;
        st.active_capacity = capacity;
        st.segments.insert(id, Segment { file: file.clone(), max_index: HashMap::new() });
        st.pending_bytes += bytes.len();
        st.pending.push(Chunk { seg: id, file, offset: 0, bytes });
        Ok(())
    }

    /// Forgets cached entries (oldest first, `group`'s first) while over the budget. Runs on
    /// every append once the cache is full, so it allocates nothing.
    fn evict(&self, st: &mut State, group: u64) {
        let budget = self.shared.opts.cache_bytes;
        let State { groups, cached_bytes, written, .. } = st;
        if let Some(g) = groups.get_mut(&group) {
            g.evict(cached_bytes, budget, *written);
        }
        for (_, g) in groups.iter_mut().filter(|(id, _)| **id != group) {
            if *cached_bytes <= budget {
                return;
            }
            g.evict(cached_bytes, budget, *written);
        }
    }

    /// Segment ids on disk (for tests and diagnostics).
    pub fn segments(&self) -> Vec<u64> {
        self.shared.lock().segments.keys().copied().collect()
    }

    #[cfg(test)]
    fn spare_ready(&self) -> bool {
        self.shared.lock().spare == Spare::Ready
    }
}

/// Runs `start` with a waiter and waits for that waiter's outcome.
pub async fn until_durable(start: impl FnOnce(Waiter) -> io::Result<()>) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    start(Box::new(move |r| {
        let _ = tx.send(r);
    }))
    .map_err(|e| e.to_string())?;
    rx.await.map_err(|_| "the WAL stopped".to_owned())?
}

fn check_failed(st: &State) -> io::Result<()> {
    match &st.failed {
        Some(e) => Err(io::Error::other(format!("the WAL failed earlier: {e}"))),
        None => Ok(()),
    }
}

fn create_segment(dir: &Path, id: u64) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).create_new(true).open(segment_path(dir, id))
}

/// Removes `path`; a file that is not there is no error.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Renames the spare into segment `id`; returns it and its length.
fn use_spare(dir: &Path, id: u64) -> io::Result<(File, u64)> {
    let path = segment_path(dir, id);
    if path.exists() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
    }
    fs::rename(dir.join(SPARE), &path)?;
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// Bytes written between two syncs by [`write_paced`].
pub(crate) const PACED_SYNC_BYTES: u64 = 1 << 20;

/// Fills `0..len` of `file` through `write(from, to)` a piece of [`PACED_SYNC_BYTES`] at a time,
/// each piece synced and followed by as long idle as it took, so that a large background write
/// never fills the device's queue ahead of the appends' own syncs. Half the device's speed is
/// left to them.
pub(crate) fn write_paced(file: &File, len: u64, mut write: impl FnMut(u64, u64) -> io::Result<()>) -> io::Result<()> {
    let mut at = 0;
    while at < len {
        let started = Instant::now();
        let end = (at + PACED_SYNC_BYTES).min(len);
        write(at, end)?;
        file.sync_data()?;
        at = end;
        std::thread::sleep(started.elapsed());
    }
    Ok(())
}

/// Writes zeros over `from..to` of `file`.
fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(to.saturating_sub(from)) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(CHUNK) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// The preallocation thread: writes [`SPARE`] full of zeros and syncs it whenever asked.
fn prepare_loop(shared: &Shared) {
    loop {
        {
            let mut st = shared.lock();
            while st.spare != Spare::Wanted && !st.stop {
                st = shared.prep.wait(st).expect("wal lock poisoned");
            }
            if st.stop {
                return;
            }
        }
        let path = shared.dir.join(SPARE);
        let made = (|| {
            remove_if_present(&path)?;
            let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
            // Synced a piece at a time, and idle after each piece for as long as it took: 64 MiB
            // of zeros flushed at once filled the device's queue, and the appends' own syncs
            // waited behind it (writes stalled ~380 ms, on every node at once, each time a
            // spare was made). The spare is wanted long before it is needed (see above).
            write_paced(&file, shared.opts.segment_bytes, |from, to| write_zeros(&file, from, to))?;
            file.sync_all()
        })();
        if made.is_err() {
            // A part-written spare (a full disk, say) would only hold space the log needs.
            let _ = fs::remove_file(&path);
        }
        let mut st = shared.lock();
        st.spare = match made {
            Ok(()) => Spare::Ready,
            Err(e) => {
                tracing::warn!(error = %e, "cannot preallocate the next WAL segment; segments grow as they fill");
                Spare::Failed
            }
        };
    }
}

/// Replays segment `id` into `st`; returns its valid length and its file's length. A damaged
/// tail of the newest segment is zeroed; damage anywhere else is an error.
fn replay_segment(st: &mut State, dir: &Path, id: u64, newest: bool) -> io::Result<(u64, u64)> {
    let path = segment_path(dir, id);
    let bytes = fs::read(&path)?;
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    let mut segment = Segment { file: Arc::new(file), max_index: HashMap::new() };
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // A segment is created empty (or renamed from a zero-filled spare) and gets its magic
        // with its first write: only the newest one can lack it, after a crash right then.
        let head = &bytes[..bytes.len().min(MAGIC.len())];
        if !newest || !head.iter().zip(MAGIC).all(|(b, m)| b == m || *b == 0) {
            return Err(corrupt(&path, 0, "not a raftcache WAL segment"));
        }
        tracing::warn!(segment = %path.display(), "WAL segment without a complete header (crash while creating it); rewriting it");
        segment.file.set_len(0)?;
        segment.file.write_all_at(MAGIC, 0)?;
        segment.file.sync_all()?;
        st.segments.insert(id, segment);
        return Ok((MAGIC.len() as u64, MAGIC.len() as u64));
    }
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        if bytes[pos..bytes.len().min(pos + FRAME_HEADER)].iter().all(|b| *b == 0) {
            // The end of a preallocated segment's records; zeros must follow.
            let Some(at) = bytes[pos..].iter().position(|b| *b != 0) else { break };
            if !newest {
                return Err(corrupt(&path, (pos + at) as u64, "bytes after the end of the segment's records"));
            }
            tracing::warn!(segment = %path.display(), offset = pos, "zeroing what follows the WAL's end (records written, never synced, behind one lost in a crash)");
            write_zeros(&segment.file, pos as u64, bytes.len() as u64)?;
            segment.file.sync_all()?;
            break;
        }
        let (record, len) = match unframe(&bytes[pos..]) {
            Ok(r) => r,
            Err(e) if newest => {
                tracing::warn!(segment = %path.display(), offset = pos, error = %e, dropped = bytes.len() - pos,
                    "zeroing the WAL's torn tail (a crash in the middle of a write)");
                write_zeros(&segment.file, pos as u64, bytes.len() as u64)?;
                segment.file.sync_all()?;
                break;
            }
            Err(e) => return Err(corrupt(&path, pos as u64, e)),
        };
        let offset = pos as u64;
        pos += len;
        match record {
            Record::Entry { group, entry } => {
                let index = entry.log_id.index;
                let g = st.groups.entry(group).or_default();
                // An entry at or below the purge point (purged after it was written) is skipped.
                // A gap before an entry is what deleting a segment leaves when the purge that
                // allowed it comes later in the log than the entry (an older segment kept for
                // another group holds this group's entries from before the gap, and the newer
                // segment's header predates the purge). The entries before the gap are dropped;
                // `Wal::open` checks that a purge covered the gap by the end.
                match g.accepts(index) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(_) => {
                        g.gap_after = g.slots.back().map(|s| s.log_id.index).or(g.last_purged.map(|p| p.index));
                        g.slots.clear();
                    }
                }
                g.push(Slot { log_id: entry.log_id, seg: id, offset, len: len as u32, cached: None });
                let max = segment.max_index.entry(group).or_default();
                *max = (*max).max(index);
            }
            Record::Truncate { group, since } => {
                st.groups.entry(group).or_default().truncate(since);
            }
            Record::Purge { group, upto } => {
                st.groups.entry(group).or_default().purge(upto);
            }
            Record::Vote { group, vote } => st.groups.entry(group).or_default().vote = Some(vote),
            Record::Committed { group, committed } => st.groups.entry(group).or_default().committed = committed,
            Record::Meta { group, vote, committed, last_purged } => {
                let g = st.groups.entry(group).or_default();
                g.vote = vote;
                g.committed = committed;
                if let Some(p) = last_purged {
                    g.purge(p);
                }
            }
        }
    }
    st.segments.insert(id, segment);
    Ok((pos.min(bytes.len()) as u64, bytes.len() as u64))
}

/// A write-and-sync pass slower than this is logged (at most once a second, with how many more
/// there were): every append of the node waits on it, and a follower that answers an append later
/// than openraft's 50 ms heartbeat interval makes the leader send it again.
const SLOW_PASS: Duration = Duration::from_millis(30);

/// Logs a repeated event at most once a second, counting the ones it leaves out.
#[derive(Default)]
struct Throttled {
    last: Option<Instant>,
    left_out: u64,
}

impl Throttled {
    /// Calls `log` with the number left out since the last call, unless one ran in the second
    /// before `now`.
    fn note(&mut self, now: Instant, log: impl FnOnce(u64)) {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            self.left_out += 1;
            return;
        }
        log(std::mem::take(&mut self.left_out));
        self.last = Some(now);
    }
}

/// The sync thread: writes buffered records in order, syncs when someone waits (or every
/// [`BACKGROUND_SYNC`]), then answers the waiters.
fn sync_loop(shared: &Shared) {
    let mut unsynced: Vec<(u64, Arc<File>)> = Vec::new();
    let mut last_sync = Instant::now();
    let mut slow = Throttled::default();
    loop {
        let (chunks, waiters, stopping) = {
            let mut st = shared.lock();
            loop {
                let buffered = !unsynced.is_empty() || !st.pending.is_empty();
                let due = buffered && last_sync.elapsed() >= BACKGROUND_SYNC;
                if !st.waiters.is_empty() || st.pending_bytes >= LAZY_BYTES || due || st.stop {
                    break;
                }
                st.sync_idle = true;
                st = shared.work.wait_timeout(st, BACKGROUND_SYNC).expect("wal lock poisoned").0;
                st.sync_idle = false;
            }
            st.pending_bytes = 0;
            (std::mem::take(&mut st.pending), std::mem::take(&mut st.waiters), st.stop)
        };
        let mut end = None;
        let mut res: io::Result<()> = Ok(());
        let pass = Instant::now();
        for c in &chunks {
            if c.offset == 0 {
                // A new segment: everything in the older ones is synced before it gets a byte,
                // so a crash never leaves a hole in an older segment behind a newer one.
                res = sync_files(&mut unsynced).and_then(|_| sync_dir(&shared.dir));
                if res.is_err() {
                    break;
                }
            }
            if let Err(e) = c.file.write_all_at(&c.bytes, c.offset) {
                res = Err(e);
                break;
            }
            if unsynced.last().map(|(s, _)| *s) != Some(c.seg) {
                unsynced.push((c.seg, c.file.clone()));
            }
            end = Some((c.seg, c.offset + c.bytes.len() as u64));
        }
        // Stopping (the last handle dropped): whatever is buffered is written and synced.
        let must_sync = stopping || !waiters.is_empty() || last_sync.elapsed() >= BACKGROUND_SYNC;
        let written = pass.elapsed();
        if res.is_ok() && must_sync {
            res = sync_files(&mut unsynced);
            last_sync = Instant::now();
        }
        let took = pass.elapsed();
        if took >= SLOW_PASS {
            slow.note(pass + took, |more| {
                let bytes: usize = chunks.iter().map(|c| c.bytes.len()).sum();
                tracing::warn!(
                    write_ms = written.as_millis() as u64,
                    total_ms = took.as_millis() as u64,
                    bytes,
                    synced = must_sync,
                    more_in_the_last_second = more,
                    "slow WAL write and sync"
                );
            });
        }
        let outcome = res.map_err(|e| e.to_string());
        {
            let mut st = shared.lock();
            if let Some(end) = end {
                st.written = st.written.max(end);
            }
            match &outcome {
                Ok(()) if unsynced.is_empty() => st.synced = st.written,
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(error = %e, "WAL write failed; the node's groups stop accepting appends");
                    st.failed.get_or_insert_with(|| e.clone());
                }
            }
        }
        for w in waiters {
            w(outcome.clone());
        }
        if stopping {
            return;
        }
    }
}

fn sync_files(files: &mut Vec<(u64, Arc<File>)>) -> io::Result<()> {
    for (_, f) in files.iter() {
        f.sync_data()?;
    }
    files.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::{CommittedLeaderId, EntryPayload};
    use raftcache_core::{CacheKey, Command, Condition, Request};

    use super::*;

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64, value_len: usize) -> Entry<TypeConfig> {
        let key = CacheKey::new("t", Bytes::from(format!("k{index}"))).unwrap();
        let cmd = Command::Set { key, value: vec![index as u8; value_len].into(), ttl_ms: None, cond: Condition::None };
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(Request { now_ms: index, client: None, cmd }),
        }
    }

    fn sync(wal: &Wal) {
        let (tx, rx) = std::sync::mpsc::channel();
        wal.sync_then(Box::new(move |r| tx.send(r).unwrap()));
        rx.recv().unwrap().unwrap();
    }

    /// The entries of `group` in `start..end`, encoded (entries have no `PartialEq`).
    fn read(wal: &Wal, group: u64, start: u64, end: u64) -> Vec<Vec<u8>> {
        wal.read(group, start, end).unwrap().iter().map(encode).collect()
    }

    fn expected(term: u64, range: std::ops::Range<u64>, value_len: usize) -> Vec<Vec<u8>> {
        range.map(|i| encode(&entry(term, i, value_len))).collect()
    }

    fn small() -> WalOptions {
        WalOptions { segment_bytes: 4096, cache_bytes: 2048, preallocate: false }
    }

    fn open(dir: &Path) -> Wal {
        Wal::open(dir, small()).unwrap()
    }

    /// Appends group 1's entries `indexes` (term 1, values of `value_len` bytes) to a new WAL in
    /// `dir`, syncs and closes it; returns its segments.
    fn write_closed(dir: &Path, indexes: std::ops::RangeInclusive<u64>, value_len: usize) -> Vec<u64> {
        let wal = open(dir);
        wal.append(1, indexes.map(|i| entry(1, i, value_len)), None).unwrap();
        sync(&wal);
        wal.segments()
    }

    #[test]
    fn a_repeated_warning_is_logged_once_a_second_with_the_count_left_out() {
        let mut t = Throttled::default();
        let t0 = Instant::now();
        let mut logged = Vec::new();
        for ms in [0, 10, 500, 999, 1000, 1001, 2500] {
            t.note(t0 + Duration::from_millis(ms), |more| logged.push((ms, more)));
        }
        assert_eq!(logged, [(0, 0), (1000, 3), (2500, 1)]);
    }

    #[test]
    fn groups_logs_survive_reopen_across_segments_and_cache_eviction() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        for i in 1..=60 {
            wal.append(1, [entry(1, i, 200)], None).unwrap();
            wal.append(2, [entry(3, i * 2 - 1, 10), entry(3, i * 2, 10)], None).unwrap();
        }
        wal.save_committed(1, Some(log_id(1, 50))).unwrap();
        sync(&wal);
        wal.save_vote(2, Vote::new(3, 2), Box::new(|r| r.unwrap())).unwrap();
        sync(&wal);
        assert!(wal.segments().len() > 3, "60 × 230 bytes roll over 4 KiB segments: {:?}", wal.segments());
        // The oldest entries were evicted from the 2 KiB cache and come back from the files.
        assert_eq!(read(&wal, 1, 0, 100), expected(1, 1..61, 200));
        assert_eq!(read(&wal, 2, 5, 9), expected(3, 5..9, 10));
        drop(wal);

        let wal = open(dir.path());
        assert_eq!(read(&wal, 1, 0, 100), expected(1, 1..61, 200));
        assert_eq!(read(&wal, 2, 0, 200), expected(3, 1..121, 10));
        assert_eq!(wal.meta(1), LogMeta { committed: Some(log_id(1, 50)), ..LogMeta::default() });
        assert_eq!(wal.meta(2).vote, Some(Vote::new(3, 2)));
        assert_eq!(wal.last_log_id(2), Some(log_id(3, 120)));
        assert!(!wal.has_state(3));
        // Appends continue where the log ends.
        wal.append(1, [entry(1, 61, 200)], None).unwrap();
        sync(&wal);
        drop(wal);
        assert_eq!(read(&open(dir.path()), 1, 59, 100), expected(1, 59..62, 200));
    }

    #[test]
    fn truncation_and_purge_survive_reopen_and_purged_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        // The vote lives in the first segment; once that is deleted, in the newer ones' headers.
        wal.save_vote(1, Vote::new(2, 1), Box::new(|r| r.unwrap())).unwrap();
        wal.append(2, [entry(1, 1, 10)], None).unwrap();
        wal.append(1, (1..=40).map(|i| entry(1, i, 200)), None).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        wal.truncate(1, 31, Box::new(move |r| tx.send(r).unwrap())).unwrap();
        rx.recv().unwrap().unwrap();
        wal.append(1, (31..=45).map(|i| entry(2, i, 200)), None).unwrap();
        sync(&wal);
        let before = wal.segments();
        wal.purge(1, log_id(1, 30)).unwrap();
        sync(&wal);
        assert_eq!(wal.segments(), before, "group 2's entry 1 keeps the first segment");
        wal.purge(2, log_id(1, 1)).unwrap();
        sync(&wal);
        wal.purge(1, log_id(2, 40)).unwrap();
        sync(&wal);
        let after = wal.segments();
        assert!(after.len() < before.len(), "purged segments are deleted: {before:?} → {after:?}");
        assert_eq!(after.first(), before.iter().find(|s| **s >= after[0]), "the oldest ones go");
        let on_disk = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(on_disk, after.len(), "files match the segment list");
        drop(wal);

        let wal = open(dir.path());
        assert_eq!(read(&wal, 1, 0, 100), expected(2, 41..46, 200));
        let meta = LogMeta { vote: Some(Vote::new(2, 1)), committed: None, last_purged: Some(log_id(2, 40)) };
        assert_eq!(wal.meta(1), meta);
        assert!(!wal.segments().contains(&1), "the vote's first segment is gone");
        assert_eq!(wal.last_log_id(2), Some(log_id(1, 1)), "purge point of an emptied log");
        assert!(read(&wal, 2, 0, 10).is_empty());
    }

    /// The layout a fault run left behind: an old segment kept for another group's entries holds
    /// this group's entries before a deleted segment, and the purge that allowed the deletion
    /// comes after this group's next entries, whose segment header predates it.
    #[test]
    fn a_segment_deleted_before_its_purge_record_replays() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        wal.append(2, [entry(1, 1, 10)], None).unwrap(); // never purged: keeps segment 1
        wal.append(1, (1..=60).map(|i| entry(1, i, 200)), None).unwrap();
        sync(&wal);
        let before = wal.segments();
        wal.purge(1, log_id(1, 45)).unwrap();
        sync(&wal);
        let after = wal.segments();
        assert!(after.contains(&1) && after.len() < before.len(), "{before:?} → {after:?}");
        drop(wal);

        let wal = open(dir.path());
        assert_eq!(read(&wal, 1, 0, 100), expected(1, 46..61, 200));
        assert_eq!(wal.meta(1).last_purged, Some(log_id(1, 45)));
        assert_eq!(read(&wal, 2, 0, 10), expected(1, 1..2, 10));
    }

    /// Without a purge to cover it, a gap in a group's entries is corruption.
    #[test]
    fn a_gap_no_purge_covers_is_refused_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let segments = write_closed(dir.path(), 1..=60, 200);
        fs::remove_file(segment_path(dir.path(), segments[1])).unwrap();
        let err = Wal::open(dir.path(), small()).err().expect("a hole is refused");
        assert!(err.to_string().contains("group 1 misses the entries after"), "{err}");
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_elsewhere_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let segments = write_closed(dir.path(), 1..=30, 200);
        let newest = segment_path(dir.path(), *segments.last().unwrap());
        let len = fs::metadata(&newest).unwrap().len();
        // A crash in the middle of writing the next record: half of it reached the file.
        let half = frame(&Record::Entry { group: 1, entry: &entry(1, 31, 200) });
        OpenOptions::new().append(true).open(&newest).unwrap().write_all_at(&half[..half.len() / 2], len).unwrap();
        let wal = open(dir.path());
        assert_eq!(read(&wal, 1, 0, 100), expected(1, 1..31, 200), "the torn record is dropped");
        let tail = fs::read(&newest).unwrap().split_off(len as usize);
        assert!(!tail.is_empty() && tail.iter().all(|b| *b == 0), "and zeroed in the file");
        wal.append(1, [entry(1, 31, 200)], None).unwrap();
        sync(&wal);
        drop(wal);
        assert_eq!(read(&open(dir.path()), 1, 0, 100), expected(1, 1..32, 200));

        // The same damage in an older segment is corruption.
        let oldest = segment_path(dir.path(), segments[0]);
        let file = OpenOptions::new().write(true).open(&oldest).unwrap();
        file.write_all_at(b"\xff\xff", MAGIC.len() as u64 + 9).unwrap();
        let err = Wal::open(dir.path(), small()).err().expect("corruption is refused");
        assert!(err.to_string().contains(&oldest.display().to_string()), "{err}");
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    fn preallocating() -> WalOptions {
        WalOptions { segment_bytes: 16 * 1024, cache_bytes: 2048, preallocate: true }
    }

    /// Appends group 1's entries from `next` on (200-byte values), one per call, until the spare
    /// is ready; returns the next index.
    fn append_until_spare(wal: &Wal, mut next: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !wal.spare_ready() {
            assert!(Instant::now() < deadline, "no spare segment after {next} entries");
            wal.append(1, [entry(1, next, 200)], None).unwrap();
            next += 1;
            sync(wal);
            std::thread::sleep(Duration::from_millis(2));
        }
        next
    }

    #[test]
    fn segments_are_preallocated_and_their_zero_tails_replay() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), preallocating()).unwrap();
        let next = append_until_spare(&wal, 1);
        assert!(dir.path().join(SPARE).exists());
        // The first segment grew as it filled; the next append moves to the spare.
        wal.append(1, [entry(1, next, 200)], None).unwrap();
        sync(&wal);
        assert_eq!(wal.segments(), vec![1, 2]);
        let second = segment_path(dir.path(), 2);
        assert_eq!(fs::metadata(&second).unwrap().len(), 16 * 1024, "the spare's full length");
        // Fill most of it and one more segment: all within preallocated files.
        let mut last = next;
        for i in next + 1..next + 100 {
            wal.append(1, [entry(1, i, 200)], None).unwrap();
            sync(&wal);
            last = i;
            std::thread::sleep(Duration::from_millis(1));
        }
        let segments = wal.segments();
        assert!(segments.len() >= 3, "{segments:?}");
        for id in &segments[1..] {
            let len = fs::metadata(segment_path(dir.path(), *id)).unwrap().len();
            assert_eq!(len, 16 * 1024, "segment {id} grew beyond its preallocation");
        }
        drop(wal);

        let wal = Wal::open(dir.path(), preallocating()).unwrap();
        assert_eq!(read(&wal, 1, 0, 1000), expected(1, 1..last + 1, 200));
        assert!(!dir.path().join(SPARE).exists() || wal.spare_ready(), "a leftover spare is removed on open");
        wal.append(1, [entry(1, last + 1, 200)], None).unwrap();
        sync(&wal);
        drop(wal);
        assert_eq!(read(&Wal::open(dir.path(), preallocating()).unwrap(), 1, 0, 1000), expected(1, 1..last + 2, 200));
    }

    #[test]
    fn bytes_after_a_preallocated_segments_end_are_zeroed_in_the_newest_and_refused_in_older() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), preallocating()).unwrap();
        let next = append_until_spare(&wal, 1);
        wal.append(1, [entry(1, next, 200)], None).unwrap();
        sync(&wal);
        let end = wal.shared.lock().active_len;
        drop(wal);
        // A crash: a record written after one that never reached the disk.
        let newest = segment_path(dir.path(), 2);
        let stray = frame(&Record::Entry { group: 1, entry: &entry(1, next + 2, 200) });
        OpenOptions::new().write(true).open(&newest).unwrap().write_all_at(&stray, end + 300).unwrap();
        let wal = Wal::open(dir.path(), preallocating()).unwrap();
        assert_eq!(read(&wal, 1, 0, 1000), expected(1, 1..next + 1, 200), "the stray record is not replayed");
        assert!(fs::read(&newest).unwrap()[end as usize..].iter().all(|b| *b == 0), "and is zeroed");
        // Appends overwrite the zeros; a later open ends where they end.
        wal.append(1, [entry(1, next + 1, 200)], None).unwrap();
        sync(&wal);
        drop(wal);
        assert_eq!(read(&Wal::open(dir.path(), preallocating()).unwrap(), 1, 0, 1000), expected(1, 1..next + 2, 200));

        // The same bytes in an older segment are corruption.
        fs::write(segment_path(dir.path(), 3), MAGIC).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&newest)
            .unwrap()
            .write_all_at(&stray, 16 * 1024 - stray.len() as u64)
            .unwrap();
        let err = Wal::open(dir.path(), preallocating()).err().expect("corruption is refused");
        assert!(err.to_string().contains(&newest.display().to_string()), "{err}");
        assert!(err.to_string().contains("after the end"), "{err}");
    }

    #[test]
    fn a_spare_renamed_before_its_header_was_written_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let newest = *write_closed(dir.path(), 1..=3, 10).last().unwrap();
        // roll_over renamed the zero-filled spare; the crash came before the header's write.
        fs::write(segment_path(dir.path(), newest + 1), vec![0u8; 4096]).unwrap();
        let wal = open(dir.path());
        assert_eq!(read(&wal, 1, 0, 10), expected(1, 1..4, 10));
        wal.append(1, [entry(1, 4, 10)], None).unwrap();
        sync(&wal);
        drop(wal);
        assert_eq!(read(&open(dir.path()), 1, 0, 10), expected(1, 1..5, 10));
    }

    #[test]
    fn an_empty_segment_left_by_a_crash_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let newest = *write_closed(dir.path(), 1..=3, 10).last().unwrap();
        // roll_over creates the file before the sync thread writes its header.
        create_segment(dir.path(), newest + 1).unwrap();
        let wal = open(dir.path());
        assert_eq!(wal.segments(), vec![newest]);
        assert_eq!(read(&wal, 1, 0, 10), expected(1, 1..4, 10));
    }

    #[test]
    fn a_gap_in_a_groups_log_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        wal.append(1, [entry(1, 1, 10)], None).unwrap();
        let err = wal.append(1, [entry(1, 3, 10)], None).unwrap_err();
        assert!(err.to_string().contains("does not follow entry 1"), "{err}");
        wal.append(1, [entry(1, 2, 10)], None).unwrap();
        sync(&wal);
        drop(wal);
        // The refused entry never reached the file: the log reopens, and reopens whole.
        assert_eq!(read(&open(dir.path()), 1, 0, 10), expected(1, 1..3, 10));
    }

    /// A copy of `dir`'s files as they are now: what a crash at this moment would leave.
    fn copy_of(dir: &Path) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
        }
        copy
    }

    #[test]
    fn a_commit_mark_rides_with_the_next_sync_and_the_last_drop_writes_what_is_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let wal = open(dir.path());
        wal.append(1, [entry(1, 1, 10), entry(1, 2, 10)], None).unwrap();
        sync(&wal);
        // Nobody waits for a commit mark: it goes out with the next sync someone asks for.
        wal.save_committed(1, Some(log_id(1, 1))).unwrap();
        wal.append(1, [entry(1, 3, 10)], None).unwrap();
        sync(&wal);
        let crashed = open(copy_of(dir.path()).path());
        assert_eq!(crashed.meta(1).committed, Some(log_id(1, 1)));
        assert_eq!(read(&crashed, 1, 0, 10), expected(1, 1..4, 10));
        // Records nobody waited for, then the last handle drops: they are on disk when it returns.
        wal.save_committed(1, Some(log_id(1, 3))).unwrap();
        wal.append(1, [entry(1, 4, 10)], None).unwrap();
        drop(wal);
        let wal = open(dir.path());
        assert_eq!(wal.meta(1).committed, Some(log_id(1, 3)));
        assert_eq!(read(&wal, 1, 0, 10), expected(1, 1..5, 10));
    }
}
