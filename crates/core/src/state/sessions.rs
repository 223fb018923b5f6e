//! Per-client memory of recent write results, for de-duplicating retries.
//!
//! A client numbers its writes; a retry carries the same number. Each client gets a window of
//! its most recent results (at most [`SESSION_WINDOW`]); a retry inside it replays the stored
//! response. A number below the window may have applied and been forgotten, so it is refused
//! rather than applied a second time. Numbers above the oldest remembered that are not in the
//! window never applied in this group (a client's numbers are spread over all groups, so gaps
//! are normal) and are new writes.
//!
//! Memory is bounded two ways, both decided by the log alone: at most `max_sessions` clients
//! (the one whose last write is oldest goes first), and a client silent for
//! [`SESSION_IDLE_MS`] of leader time is dropped. Both pick from the same end of one ordering:
//! sessions by the log index of their last write, which also orders them by the time of it.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::{ClientSeq, Response};
use crate::limits::{SESSION_IDLE_MS, SESSION_WINDOW};

/// Rough cost of a session record and of one remembered result.
const SESSION_OVERHEAD: usize = 96;
const RESULT_OVERHEAD: usize = 64;

/// What one client's recent writes did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Session {
    /// Log index of the client's most recent write (including replayed retries). Clients whose
    /// writes shared one batch entry share it.
    pub(crate) last_index: u64,
    /// Leader time of that write.
    pub(crate) last_ms: u64,
    /// seq → response, at most [`SESSION_WINDOW`] of the highest applied seqs; never empty.
    pub(crate) results: BTreeMap<u64, Response>,
    /// The highest seq dropped from `results`: a seq at or below it may have applied and its
    /// result is forgotten. Seqs above it and not in `results` never applied here (a client's
    /// writes to one group may arrive out of order, since it numbers them across all groups).
    pub(crate) floor: u64,
}

/// The outcome of looking up a client write.
#[derive(Debug)]
pub(crate) enum Dedup {
    /// Not seen before: apply it, then [`Sessions::record`] the response.
    New,
    /// A retry: answer with the stored response, apply nothing.
    Replay(Response),
    /// Below the window: may have applied, cannot tell.
    TooOld,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Sessions {
    by_client: BTreeMap<u64, Session>,
    /// `(last_index, client)`, exactly one per session in `by_client`: the oldest writer first.
    by_last_index: BTreeSet<(u64, u64)>,
    /// Sum of remembered results over all sessions.
    results: usize,
}

impl Sessions {
    /// Rebuilds the ordering from a map (snapshot restore).
    pub(crate) fn from_map(by_client: BTreeMap<u64, Session>) -> Self {
        let by_last_index = by_client.iter().map(|(client, s)| (s.last_index, *client)).collect();
        let results = by_client.values().map(|s| s.results.len()).sum();
        Self { by_client, by_last_index, results }
    }

    pub(crate) fn map(&self) -> &BTreeMap<u64, Session> {
        &self.by_client
    }

    pub(crate) fn len(&self) -> usize {
        self.by_client.len()
    }

    pub(crate) fn mem_bytes(&self) -> usize {
        self.by_client.len() * SESSION_OVERHEAD + self.results * RESULT_OVERHEAD
    }

    /// Drops clients that have not written for [`SESSION_IDLE_MS`] as of `now`.
    pub(crate) fn prune_idle(&mut self, now: u64) {
        while let Some((_, client)) = self.by_last_index.first() {
            let idle = self.by_client.get(client).is_none_or(|s| s.last_ms.saturating_add(SESSION_IDLE_MS) <= now);
            if !idle {
                break;
            }
            self.evict_oldest();
        }
    }

    /// Classifies the write `cs` proposed at `index`. A replay counts as activity of the client.
    pub(crate) fn check(&mut self, cs: ClientSeq, index: u64, now: u64) -> Dedup {
        let Some(session) = self.by_client.get_mut(&cs.client_id) else {
            return Dedup::New;
        };
        if let Some(response) = session.results.get(&cs.seq) {
            let response = response.clone();
            touch(&mut self.by_last_index, cs.client_id, session, index, now);
            return Dedup::Replay(response);
        }
        if cs.seq <= session.floor {
            Dedup::TooOld
        } else {
            Dedup::New
        }
    }

    /// Remembers `response` for `cs`, applied at `index` and leader time `now`; then evicts the
    /// least recently written clients beyond `max_sessions`.
    pub(crate) fn record(&mut self, cs: ClientSeq, index: u64, now: u64, response: Response, max_sessions: usize) {
        let session = self.by_client.entry(cs.client_id).or_insert_with(|| Session {
            last_index: index,
            last_ms: now,
            results: BTreeMap::new(),
            floor: 0,
        });
        touch(&mut self.by_last_index, cs.client_id, session, index, now);
        if session.results.insert(cs.seq, response).is_none() {
            self.results += 1;
        }
        while session.results.len() > SESSION_WINDOW {
            if let Some((seq, _)) = session.results.pop_first() {
                session.floor = session.floor.max(seq);
            }
            self.results -= 1;
        }
        while self.by_client.len() > max_sessions {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((_, client)) = self.by_last_index.pop_first() {
            if let Some(session) = self.by_client.remove(&client) {
                self.results -= session.results.len();
            }
        }
    }
}

/// Records that `client`, whose session is `session`, wrote at `index` and leader time `now`,
/// moving it in `order` (the `by_last_index` of its [`Sessions`]).
fn touch(order: &mut BTreeSet<(u64, u64)>, client: u64, session: &mut Session, index: u64, now: u64) {
    order.remove(&(session.last_index, client));
    session.last_index = index;
    session.last_ms = now;
    order.insert((index, client));
}
