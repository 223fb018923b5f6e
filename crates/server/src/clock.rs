//! The leader's clock for stamping log entries.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch, never below `floor` (the group's applied
/// leader time), so stamps stay monotonic even if this node's clock is behind a previous
/// leader's.
pub fn stamp_ms(floor: u64) -> u64 {
    wall_ms().max(floor)
}

/// This node's wall clock in ms since the Unix epoch (plus the injected skew in fault tests).
pub fn wall_ms() -> u64 {
    let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    real.saturating_add_signed(skew::get())
}

/// Clock skew injected by the fault suite; always zero without the `fault-injection` feature.
pub mod skew {
    #[cfg(feature = "fault-injection")]
    static SKEW_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

    /// The current skew in ms.
    #[cfg(feature = "fault-injection")]
    pub fn get() -> i64 {
        SKEW_MS.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current skew in ms.
    #[cfg(not(feature = "fault-injection"))]
    pub fn get() -> i64 {
        0
    }

    /// Sets the skew.
    #[cfg(feature = "fault-injection")]
    pub fn set(ms: i64) {
        SKEW_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
    }
}
