//! The register model the linearizability checker runs: one key of raftcache.
//!
//! A key holds a value or nothing. Every write the harness makes has a unique value, and the
//! server gives each applied write a version (its Raft log index) that is unique for the key
//! and increases along the log (writes of other keys batched into the same entry share it). So
//! a value identifies its write, and the checker knows a value's version whenever an ok write
//! or any ok read reported it ([`VersionMap`]). A compare-and-set conditions on a version; an absent key has version 0 (the register workload never
//! invalidates, so no fence raises it).
//!
//! **Contract with the workload**: a compare-and-set expects 0 or the version of a value that
//! was acknowledged or read — never a version learned some other way (such as the "current
//! version" of a refused compare-and-set, which may belong to a value nobody observed). Values
//! and versions are unique, so when the register holds a value whose version was never
//! reported, a compare-and-set's condition cannot hold, and the model can stay deterministic.
//!
//! Besides values, the state keeps `floor`: the highest version known to have been applied to
//! the key. An operation that acknowledged version `v` can only be placed where `v > floor`,
//! which catches a log that reorders acknowledged writes even when the values would fit.

use std::collections::{HashMap, HashSet};

/// Value → the version the server gave it, for every value whose version was reported.
#[derive(Clone, Debug, Default)]
pub struct VersionMap {
    of_value: HashMap<u64, u64>,
    versions: HashSet<u64>,
}

impl VersionMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The version of `value`, if reported.
    pub fn get(&self, value: &u64) -> Option<&u64> {
        self.of_value.get(value)
    }

    /// Records `value`'s version.
    pub fn insert(&mut self, value: u64, version: u64) {
        self.of_value.insert(value, version);
        self.versions.insert(version);
    }

    /// Whether `version` is the reported version of some value.
    pub fn is_reported(&self, version: u64) -> bool {
        self.versions.contains(&version)
    }

    /// The part of the map for `values` (versions are unique per group, not across groups, so
    /// "is this version reported" must be asked of one key's values).
    pub fn restricted(&self, values: impl IntoIterator<Item = u64>) -> VersionMap {
        let mut m = VersionMap::new();
        for v in values {
            if let Some(version) = self.of_value.get(&v) {
                m.insert(v, *version);
            }
        }
        m
    }

    /// Number of values with a reported version.
    pub fn len(&self) -> usize {
        self.of_value.len()
    }

    /// Whether no version is known.
    pub fn is_empty(&self) -> bool {
        self.of_value.is_empty()
    }
}

impl<const N: usize> From<[(u64, u64); N]> for VersionMap {
    fn from(pairs: [(u64, u64); N]) -> Self {
        let mut m = Self::new();
        for (value, version) in pairs {
            m.insert(value, version);
        }
        m
    }
}

/// The state of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RegState {
    /// The live value, if any.
    pub value: Option<u64>,
    /// Highest version known to have been applied to the key (0: none).
    pub floor: u64,
}

/// What a compare-and-set reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// The condition held; the write got `version` (unknown for an unobserved `info`).
    Applied {
        /// The new version.
        version: Option<u64>,
    },
    /// The condition did not hold; the server saw `current` as the key's version.
    Rejected {
        /// The version the server reported.
        current: Option<u64>,
    },
    /// `info`: if it took effect, it applied exactly when the condition held.
    Unknown,
}

/// One operation as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelOp {
    /// A strict read that saw `value`.
    Read {
        /// What it saw.
        value: Option<u64>,
    },
    /// A set of `value`; `version` if acknowledged or observed.
    Write {
        /// The value.
        value: u64,
        /// Its version, if known.
        version: Option<u64>,
    },
    /// A delete; `version` (its log index) if acknowledged.
    Delete {
        /// Its log index, if known.
        version: Option<u64>,
    },
    /// A set of `new` if the key's version is `expected`.
    Cas {
        /// The condition.
        expected: u64,
        /// The value written when it holds.
        new: u64,
        /// What the server said.
        outcome: CasOutcome,
    },
}

impl RegState {
    /// The key's version in this state: 0 when absent, `None` when the value's version was
    /// never reported (a write whose outcome was unknown and that no read saw).
    pub fn version(&self, versions: &VersionMap) -> Option<u64> {
        match self.value {
            None => Some(0),
            Some(v) => versions.get(&v).copied(),
        }
    }

    fn set(self, value: Option<u64>, version: Option<u64>) -> Option<RegState> {
        match version {
            Some(v) if v <= self.floor => None,
            Some(v) => Some(RegState { value, floor: v }),
            None => Some(RegState { value, floor: self.floor }),
        }
    }

    /// The state after `op`, or `None` if `op` cannot happen in this state. Deterministic.
    pub fn step(self, op: &ModelOp, versions: &VersionMap) -> Option<RegState> {
        match *op {
            ModelOp::Read { value } => (self.value == value).then_some(self),
            ModelOp::Write { value, version } => self.set(Some(value), version),
            ModelOp::Delete { version } => self.set(None, version),
            ModelOp::Cas { expected, new, outcome } => {
                let current = self.version(versions);
                match outcome {
                    CasOutcome::Applied { version } => {
                        if current != Some(expected) {
                            return None;
                        }
                        self.set(Some(new), version.or_else(|| versions.get(&new).copied()))
                    }
                    CasOutcome::Rejected { current: reported } => match (current, reported) {
                        (Some(c), _) if c == expected => None,
                        (Some(c), Some(r)) if c != r => None,
                        // The register holds a value whose version was never reported (so it
                        // is not the expected one): the server's figure must be such a version.
                        (None, Some(r)) if r == 0 || versions.is_reported(r) => None,
                        _ => Some(self),
                    },
                    CasOutcome::Unknown if current == Some(expected) => {
                        self.set(Some(new), versions.get(&new).copied())
                    }
                    CasOutcome::Unknown => Some(self),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_the_server_rules() {
        let vm = VersionMap::from([(10, 4), (11, 6)]);
        let s = RegState::default();
        assert_eq!(s.step(&ModelOp::Read { value: None }, &vm), Some(s));
        assert_eq!(s.step(&ModelOp::Read { value: Some(10) }, &vm), None);
        let s1 = s.step(&ModelOp::Write { value: 10, version: Some(4) }, &vm).unwrap();
        assert_eq!(s1, RegState { value: Some(10), floor: 4 });
        // Versions only grow along the log.
        assert_eq!(s1.step(&ModelOp::Write { value: 12, version: Some(3) }, &vm), None);
        let cas = |outcome| ModelOp::Cas { expected: 4, new: 11, outcome };
        assert_eq!(s1.step(&cas(CasOutcome::Applied { version: Some(6) }), &vm).unwrap().value, Some(11));
        assert_eq!(s1.step(&cas(CasOutcome::Rejected { current: Some(4) }), &vm), None);
        assert_eq!(s.step(&cas(CasOutcome::Rejected { current: Some(0) }), &vm), Some(s));
        assert_eq!(s.step(&cas(CasOutcome::Rejected { current: Some(9) }), &vm), None);
        assert_eq!(s.step(&cas(CasOutcome::Unknown), &vm), Some(s));
        assert_eq!(s1.step(&cas(CasOutcome::Unknown), &vm).unwrap().value, Some(11));
        let gone = s1.step(&ModelOp::Delete { version: Some(7) }, &vm).unwrap();
        assert_eq!(gone, RegState { value: None, floor: 7 });
        assert_eq!(gone.version(&vm), Some(0));
    }
}
