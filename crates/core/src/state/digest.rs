//! A stable digest of the replicated state.
//!
//! Written field by field rather than hashing the snapshot encoding, so the digest depends on
//! the state alone — not on bincode's layout, which may change between versions — and needs no
//! buffer the size of the state. Every variable-length field is length-prefixed and every enum
//! tagged, so two different states cannot feed the hasher the same bytes. Maps are walked in
//! their sorted order, except the entries: their hashes are summed (see `digest`). Changing what
//! is fed here changes every digest: bump [`DOMAIN`].
use xxhash_rust::xxh3::Xxh3;

use super::CacheState;
use crate::command::{Rejection, Response};
use crate::key::CacheKey;

/// Prefix of the digest input; names the layout of what follows.
const DOMAIN: &[u8] = b"raftcache-state-digest-v2";

struct Hasher(Xxh3);

impl Hasher {
    fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }

    fn opt(&mut self, v: Option<u64>) {
        match v {
            None => self.u64(0),
            Some(v) => {
                self.u64(1);
                self.u64(v);
            }
        }
    }

    fn key(&mut self, k: &CacheKey) {
        self.bytes(k.ns.as_str().as_bytes());
        self.bytes(&k.key);
    }

    fn response(&mut self, r: &Response) {
        match r {
            Response::Written { version } => {
                self.u64(1);
                self.u64(*version);
            }
            Response::Deleted { version, existed } => {
                self.u64(2);
                self.u64(*version);
                self.u64(u64::from(*existed));
            }
            Response::Invalidated { fence } => {
                self.u64(3);
                self.u64(*fence);
            }
            Response::Expired { removed } => {
                self.u64(4);
                self.u64(u64::from(*removed));
            }
            Response::Rejected(rejection) => {
                self.u64(5);
                match rejection {
                    Rejection::ConditionFailed { current_version } => {
                        self.u64(1);
                        self.u64(*current_version);
                    }
                    Rejection::Fenced { fence } => {
                        self.u64(2);
                        self.u64(*fence);
                    }
                    Rejection::DuplicateTooOld => self.u64(3),
                }
            }
            Response::Blank => self.u64(6),
            Response::Batch(responses) => {
                self.u64(7);
                self.u64(responses.len() as u64);
                for r in responses {
                    self.response(r);
                }
            }
        }
    }
}

impl CacheState {
    /// Stable 64-bit digest (xxh3) of everything replicated: config, time, last index, entries,
    /// fences and client sessions. Replicas that applied the same log have equal digests, across
    /// builds and platforms; indexes and memory estimates do not take part.
    pub fn digest(&self) -> u64 {
        let mut h = Hasher(Xxh3::new());
        h.bytes(DOMAIN);
        h.u64(self.config.fence_retention_ms);
        h.u64(self.config.max_sessions as u64);
        h.u64(self.now_ms);
        h.u64(self.last_index);

        h.u64(self.entries.len() as u64);
        // Entries live in a hash set: each is hashed on its own and the hashes summed, which is
        // independent of order and needs no sort under the state's lock.
        let mut sum = 0u64;
        for e in self.entries.iter() {
            let mut eh = Hasher(Xxh3::new());
            eh.bytes(e.ns().as_bytes());
            eh.bytes(e.key());
            eh.bytes(e.value());
            eh.u64(e.version());
            eh.opt(e.expires_at_ms());
            sum = sum.wrapping_add(eh.0.digest());
        }
        h.u64(sum);

        h.u64(self.fences.map().len() as u64);
        for (key, fence) in self.fences.map() {
            h.key(key);
            h.u64(fence.version);
            h.u64(fence.at_ms);
        }

        h.u64(self.sessions.map().len() as u64);
        for (client, session) in self.sessions.map() {
            h.u64(*client);
            h.u64(session.last_index);
            h.u64(session.last_ms);
            h.u64(session.floor);
            h.u64(session.results.len() as u64);
            for (seq, response) in &session.results {
                h.u64(*seq);
                h.response(response);
            }
        }
        h.0.digest()
    }
}
