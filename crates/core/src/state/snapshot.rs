//! The snapshot form of [`CacheState`]: serde impls and the bincode encoding.
//!
//! Only the primary maps are written; indexes and memory accounting are rebuilt on load. The
//! encoding starts with [`FORMAT`] so a later layout can be told apart instead of misread.
use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::entries::Entries;
use super::fences::{Fence, Fences};
use super::sessions::{Session, Sessions};
use super::{CacheState, StateConfig};
use crate::error::{Error, Result};
use crate::key::CacheKey;
use crate::limits::SESSION_WINDOW;

/// Layout number of the snapshot form. Bump it when the fields below change.
const FORMAT: u32 = 1;

/// Borrowed view for encoding; must list the same fields in the same order as [`Owned`].
#[derive(Serialize)]
struct Borrowed<'a> {
    format: u32,
    config: &'a StateConfig,
    now_ms: u64,
    last_index: u64,
    entries: &'a Entries,
    fences: &'a BTreeMap<CacheKey, Fence>,
    sessions: &'a BTreeMap<u64, Session>,
}

#[derive(Deserialize)]
struct Owned {
    format: u32,
    config: StateConfig,
    now_ms: u64,
    last_index: u64,
    entries: Entries,
    fences: BTreeMap<CacheKey, Fence>,
    sessions: BTreeMap<u64, Session>,
}

impl Serialize for CacheState {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        Borrowed {
            format: FORMAT,
            config: &self.config,
            now_ms: self.now_ms,
            last_index: self.last_index,
            entries: &self.entries,
            fences: self.fences.map(),
            sessions: self.sessions.map(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for CacheState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Owned::deserialize(deserializer)?.into_state().map_err(D::Error::custom)
    }
}

impl Owned {
    /// Checks what any log would guarantee, then rebuilds the indexes.
    fn into_state(self) -> std::result::Result<CacheState, String> {
        if self.format != FORMAT {
            return Err(format!("snapshot format {} (this build reads {FORMAT})", self.format));
        }
        let last = self.last_index;
        if let Some(e) = self.entries.iter().find(|e| e.version() == 0 || e.version() > last) {
            return Err(format!(
                "entry {}/{} has version {} with last index {last}",
                e.ns(),
                String::from_utf8_lossy(e.key()),
                e.version()
            ));
        }
        if let Some((key, f)) =
            self.fences.iter().find(|(_, f)| f.version == 0 || f.version > last || f.at_ms > self.now_ms)
        {
            return Err(format!("fence of {key} is {f:?} with last index {last} at {} ms", self.now_ms));
        }
        if let Some((client, s)) = self.sessions.iter().find(|(_, s)| {
            s.last_index > last || s.last_ms > self.now_ms || s.results.is_empty() || s.results.len() > SESSION_WINDOW
        }) {
            return Err(format!(
                "session of client {client} (last index {}, {} results) is impossible at index {last}",
                s.last_index,
                s.results.len()
            ));
        }
        Ok(CacheState {
            config: self.config,
            now_ms: self.now_ms,
            last_index: last,
            entries: self.entries,
            fences: Fences::from_map(self.fences),
            sessions: Sessions::from_map(self.sessions),
        })
    }
}

impl CacheState {
    /// Encodes the state for a snapshot (bincode 2, standard config).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Encoding into a Vec fails only if a Serialize impl fails, and none of ours can.
        bincode::serde::encode_to_vec(self, bincode::config::standard()).expect("encoding a CacheState cannot fail")
    }

    /// Writes the same bytes as [`CacheState::to_bytes`] into `w`, without holding them all.
    pub fn write_to<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        bincode::serde::encode_into_std_write(self, &mut w, bincode::config::standard()).map(|_| ()).map_err(
            |e| match e {
                bincode::error::EncodeError::Io { inner, .. } => inner,
                other => std::io::Error::other(other.to_string()),
            },
        )
    }

    /// Decodes a snapshot written by [`CacheState::to_bytes`].
    ///
    /// Any malformed input — truncated, trailing bytes, bad lengths, invalid keys, data no log
    /// could produce — is [`Error::Corrupt`]; decoding never panics or over-allocates.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (state, read): (Self, usize) = bincode::serde::borrow_decode_from_slice(bytes, bincode::config::standard())
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        if read != bytes.len() {
            return Err(Error::Corrupt(format!("{} trailing bytes after the state", bytes.len() - read)));
        }
        Ok(state)
    }
}
