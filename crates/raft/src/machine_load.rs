//! How busy this machine's CPUs are: the share of the last [`WINDOW`] they spent running
//! anything (user, system, interrupts; not idle or waiting for IO), from `/proc/stat`. The write
//! linger (see `proposer.rs`) batches only when CPU is scarce.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::Duration;

/// How often the share is sampled.
const WINDOW: Duration = Duration::from_millis(100);
/// Not measured (yet, or no `/proc/stat`).
const UNKNOWN: u32 = u32::MAX;

static BUSY_PERMILLE: AtomicU32 = AtomicU32::new(UNKNOWN);
static STARTED: Once = Once::new();

/// The machine's busy share over the last window, in thousandths; `None` before the first
/// window ends or where `/proc/stat` cannot be read.
pub fn busy_permille() -> Option<u32> {
    match BUSY_PERMILLE.load(Ordering::Relaxed) {
        UNKNOWN => None,
        p => Some(p),
    }
}

/// Starts sampling on the current tokio runtime, once per process.
pub fn start() {
    STARTED.call_once(|| {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(sample());
        }
    });
}

async fn sample() {
    let Some(mut last) = read_stat() else { return };
    loop {
        tokio::time::sleep(WINDOW).await;
        let Some(now) = read_stat() else {
            // No longer readable: say so, rather than leave the last share standing.
            BUSY_PERMILLE.store(UNKNOWN, Ordering::Relaxed);
            return;
        };
        BUSY_PERMILLE.store(share(last, now).unwrap_or(UNKNOWN), Ordering::Relaxed);
        last = now;
    }
}

/// (busy, busy + idle) jiffies of all CPUs.
fn read_stat() -> Option<(u64, u64)> {
    parse_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal ...
    let (busy, idle) = (f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?, f.get(3)? + f.get(4)?);
    Some((busy, busy + idle))
}

/// Busy thousandths between two samples; `None` if no time passed.
fn share(before: (u64, u64), after: (u64, u64)) -> Option<u32> {
    let all = after.1.checked_sub(before.1).filter(|&a| a > 0)?;
    let busy = after.0.saturating_sub(before.0);
    Some((busy.min(all) * 1000 / all) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_share_counts_user_system_and_interrupts_against_idle_and_iowait() {
        let a = parse_stat("cpu  100 0 50 800 40 5 5 7 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(a, (160, 1000));
        let b = parse_stat("cpu  400 0 150 1000 40 25 25 9 0 0\n").unwrap();
        // 440 busy jiffies out of 640.
        assert_eq!(share(a, b), Some(687));
        assert_eq!(share(a, a), None, "no time passed");
        assert_eq!(parse_stat("intr 5\n"), None);
    }
}
