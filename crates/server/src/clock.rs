//! The leader's clock for stamping log entries.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch, never below `floor` (the group's applied
/// leader time), so stamps stay monotonic even if this node's clock is behind a previous
/// leader's.
pub fn stamp_ms(floor: u64) -> u64 {
    wall_ms().max(floor)
}

/// This node's wall clock in ms since the Unix epoch.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
