//! The Wing–Gong linearizability search with Lowe's memoisation, for the history of one key.
//!
//! Every operation becomes a call entry and (unless its outcome is unknown) a return entry in a
//! doubly linked list ordered by time. The search walks the list: at a call it tries to
//! linearize that operation now (step the model, unlink call and return, push a backtrack
//! point); at a return whose operation is not yet linearized it has gone too far and backtracks.
//! A set of (linearized operations, model state) pairs already explored prunes the search
//! (Lowe, "Testing for linearizability", 2017): reaching a known pair again cannot succeed
//! where it failed before.
//!
//! Operations whose outcome is unknown (`info`) have no return entry: they never force a
//! backtrack, and the search succeeds once every other operation is linearized, leaving any
//! unlinearized `info` operations out — they never took effect.

use std::collections::HashSet;

use super::model::{ModelOp, RegState, VersionMap};

/// One operation of a key's history, as the search sees it.
#[derive(Clone, Copy, Debug)]
pub struct KeyOp {
    /// What it did.
    pub op: ModelOp,
    /// Invoke time.
    pub call: u64,
    /// Completion time; ignored when `info`.
    pub ret: u64,
    /// Outcome unknown: may be linearized anywhere after `call`, or never.
    pub info: bool,
}

/// The verdict of the search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Search {
    /// A linearization exists.
    Linearizable,
    /// None exists; where the deepest attempt got stuck.
    NotLinearizable(Stuck),
    /// The step budget ran out first.
    Unknown {
        /// Steps taken.
        steps: u64,
    },
}

/// Where the deepest attempt of a failed search got stuck.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// How many operations it had linearized.
    pub depth: usize,
    /// The operation (index into the input) whose completion came before it could be
    /// linearized.
    pub op: usize,
    /// The model state at that point.
    pub state: RegState,
    /// Operations (indices) that were still open there.
    pub open: Vec<usize>,
}

const NIL: usize = usize::MAX;

struct Bits(Vec<u64>);

impl Bits {
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// Searches for a linearization of `ops` (one key) from the empty state, giving up after
/// `budget` steps.
pub fn search(ops: &[KeyOp], versions: &VersionMap, budget: u64) -> Search {
    // Entries: (time, 0 = call / 1 = return, op). Calls sort before returns at equal times, so
    // operations that touch in time count as concurrent.
    let mut entries: Vec<(u64, u8, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, o) in ops.iter().enumerate() {
        entries.push((o.call, 0, i));
        if !o.info {
            entries.push((o.ret.max(o.call), 1, i));
        }
    }
    entries.sort_unstable();
    let m = entries.len();
    let head = m;
    let mut next = vec![NIL; m + 1];
    let mut prev = vec![NIL; m + 1];
    let mut order = head;
    for (i, p) in prev.iter_mut().take(m).enumerate() {
        next[order] = i;
        *p = order;
        order = i;
    }
    let op_of: Vec<usize> = entries.iter().map(|e| e.2).collect();
    let is_call: Vec<bool> = entries.iter().map(|e| e.1 == 0).collect();
    let mut ret_of = vec![NIL; ops.len()];
    for (i, e) in entries.iter().enumerate() {
        if e.1 == 1 {
            ret_of[e.2] = i;
        }
    }

    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, n) = (prev[e], next[e]);
        next[p] = n;
        if n != NIL {
            prev[n] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, e: usize| {
        let (p, n) = (prev[e], next[e]);
        next[p] = e;
        if n != NIL {
            prev[n] = e;
        }
    };

    let mut remaining = ops.iter().filter(|o| !o.info).count();
    let mut lin = Bits(vec![0; ops.len().div_ceil(64)]);
    let mut cache: HashSet<(Vec<u64>, RegState)> = HashSet::new();
    let mut stack: Vec<(usize, RegState)> = Vec::new();
    let mut state = RegState::default();
    let mut entry = next[head];
    let mut steps = 0u64;
    let mut deepest: Option<Stuck> = None;

    while remaining > 0 {
        steps += 1;
        if steps > budget {
            return Search::Unknown { steps };
        }
        debug_assert_ne!(entry, NIL, "a required return entry must stop the walk");
        let op = op_of[entry];
        if is_call[entry] {
            if let Some(after) = state.step(&ops[op].op, versions) {
                lin.set(op);
                if cache.insert((lin.0.clone(), after)) {
                    stack.push((entry, state));
                    state = after;
                    unlink(&mut next, &mut prev, entry);
                    if ret_of[op] != NIL {
                        unlink(&mut next, &mut prev, ret_of[op]);
                    }
                    if !ops[op].info {
                        remaining -= 1;
                    }
                    entry = next[head];
                    continue;
                }
                lin.clear(op);
            }
            entry = next[entry];
            continue;
        }
        // A return entry of an operation not yet linearized: backtrack.
        if deepest.as_ref().is_none_or(|d| stack.len() > d.depth) {
            let mut open = Vec::new();
            let mut e = next[head];
            while e != NIL && e != entry {
                if is_call[e] {
                    open.push(op_of[e]);
                }
                e = next[e];
            }
            deepest = Some(Stuck { depth: stack.len(), op, state, open });
        }
        let Some((call, before)) = stack.pop() else {
            return Search::NotLinearizable(deepest.expect("recorded above"));
        };
        let undone = op_of[call];
        state = before;
        lin.clear(undone);
        if ret_of[undone] != NIL {
            relink(&mut next, &mut prev, ret_of[undone]);
        }
        relink(&mut next, &mut prev, call);
        if !ops[undone].info {
            remaining += 1;
        }
        entry = next[call];
    }
    Search::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op: ModelOp, call: u64, ret: u64) -> KeyOp {
        KeyOp { op, call, ret, info: false }
    }

    #[test]
    fn concurrent_write_explains_read() {
        let vm = VersionMap::from([(1, 5)]);
        let ops = [
            op(ModelOp::Write { value: 1, version: Some(5) }, 0, 10),
            op(ModelOp::Read { value: Some(1) }, 1, 2),
            op(ModelOp::Read { value: None }, 0, 1),
        ];
        assert_eq!(search(&ops, &vm, 1000), Search::Linearizable);
    }

    #[test]
    fn stale_read_after_write_is_caught() {
        let vm = VersionMap::from([(1, 5)]);
        let ops = [op(ModelOp::Write { value: 1, version: Some(5) }, 0, 10), op(ModelOp::Read { value: None }, 11, 12)];
        match search(&ops, &vm, 1000) {
            Search::NotLinearizable(s) => assert_eq!(s.op, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn info_write_may_or_may_not_happen() {
        let vm = VersionMap::new();
        let w = KeyOp { op: ModelOp::Write { value: 1, version: None }, call: 0, ret: 0, info: true };
        let seen = [w, op(ModelOp::Read { value: Some(1) }, 20, 21)];
        assert_eq!(search(&seen, &vm, 1000), Search::Linearizable);
        let unseen = [w, op(ModelOp::Read { value: None }, 20, 21)];
        assert_eq!(search(&unseen, &vm, 1000), Search::Linearizable);
        // But once seen, it cannot un-happen.
        let flicker = [w, op(ModelOp::Read { value: Some(1) }, 20, 21), op(ModelOp::Read { value: None }, 22, 23)];
        assert!(matches!(search(&flicker, &vm, 1000), Search::NotLinearizable(_)));
    }
}
