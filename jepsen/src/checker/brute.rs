//! A brute-force linearizability checker, to validate [`super::wgl`] against in tests.
//!
//! It knows nothing of per-key decomposition, linked lists or memoisation: it tries every order
//! of the whole history's operations (all keys at once) that respects real time — an operation
//! may go next only if no other operation still to be placed completed before it was invoked —
//! and accepts when every operation with a known outcome is placed and each step is legal.
//! Operations with unknown outcomes may be placed anywhere after their invocation, or left out.
//! Exponential: keep histories to a dozen operations.

use super::model::{RegState, VersionMap};
use super::wgl::KeyOp;

/// Whether `ops` (each tagged with its key index) has a linearization.
///
/// # Panics
///
/// With more than 64 operations.
pub fn brute_force(ops: &[(usize, KeyOp)], versions: &VersionMap) -> bool {
    assert!(ops.len() <= 64, "brute force is for small histories");
    let keys = ops.iter().map(|(k, _)| k + 1).max().unwrap_or(0);
    let mut states = vec![RegState::default(); keys];
    let required: u64 = ops.iter().enumerate().filter(|(_, (_, o))| !o.info).fold(0, |m, (i, _)| m | (1 << i));
    place(ops, versions, 0, required, &mut states)
}

fn place(ops: &[(usize, KeyOp)], versions: &VersionMap, placed: u64, required: u64, states: &mut [RegState]) -> bool {
    if placed & required == required {
        return true;
    }
    for (i, (key, op)) in ops.iter().enumerate() {
        if placed & (1 << i) != 0 {
            continue;
        }
        let must_wait = ops
            .iter()
            .enumerate()
            .any(|(j, (_, other))| j != i && placed & (1 << j) == 0 && !other.info && other.ret < op.call);
        if must_wait {
            continue;
        }
        let before = states[*key];
        if let Some(after) = before.step(&op.op, versions) {
            states[*key] = after;
            if place(ops, versions, placed | (1 << i), required, states) {
                return true;
            }
            states[*key] = before;
        }
    }
    false
}
