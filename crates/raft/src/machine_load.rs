//! How busy this machine's CPUs are: the share of the time since the last reading (at least
//! [`WINDOW`], at most [`STALE`]) they spent running anything (user, system, interrupts; not idle
//! or waiting for IO), from `/proc/stat`. The write linger (see `proposer.rs`) batches only when
//! CPU is scarce.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest window a share is measured over: a call within this of the last reading gets
/// that reading's share.
const WINDOW: Duration = Duration::from_millis(100);
/// A reading older than this says nothing of now: the next call starts a new window.
const STALE: Duration = Duration::from_secs(1);

static SAMPLER: Mutex<Sampler> = Mutex::new(Sampler { last: None, share: None });

/// The machine's busy share over the last window, in thousandths; `None` when no window ended
/// within [`STALE`] (the first call after an idle spell) or where `/proc/stat` cannot be read.
///
/// Read on demand, at most once per [`WINDOW`], by whoever asks (the linger, under write load),
/// so an idle node reads nothing.
pub fn busy_permille() -> Option<u32> {
    let mut sampler = SAMPLER.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if sampler.last.is_some_and(|(at, _)| now.duration_since(at) < WINDOW) {
        return sampler.share;
    }
    sampler.next(now, read_stat())
}

/// The last reading of `/proc/stat` and the share it gave.
struct Sampler {
    last: Option<(Instant, (u64, u64))>,
    share: Option<u32>,
}

impl Sampler {
    /// Takes a reading made at `now` (`None`: unreadable) and returns the share since the last
    /// one, if that one is recent enough to stand for "now".
    fn next(&mut self, now: Instant, stat: Option<(u64, u64)>) -> Option<u32> {
        let last = self.last.take();
        self.share = match (last, stat) {
            (Some((at, before)), Some(after)) if now.duration_since(at) <= STALE => share(before, after),
            _ => None,
        };
        self.last = stat.map(|s| (now, s));
        self.share
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

    #[test]
    fn a_share_spans_two_recent_readings_and_a_stale_or_missing_one_gives_none() {
        let t0 = Instant::now();
        let mut s = Sampler { last: None, share: None };
        assert_eq!(s.next(t0, Some((100, 1000))), None, "one reading is no window");
        assert_eq!(s.next(t0 + WINDOW, Some((150, 1100))), Some(500));
        assert_eq!(s.next(t0 + WINDOW + STALE * 2, Some((160, 1300))), None, "an idle spell's average is not now");
        assert_eq!(s.next(t0 + WINDOW * 2 + STALE * 2, Some((260, 1400))), Some(1000));
        assert_eq!(s.next(t0 + WINDOW * 3 + STALE * 2, None), None, "unreadable");
        assert_eq!(s.next(t0 + WINDOW * 4 + STALE * 2, Some((300, 1500))), None, "a new window starts");
    }
}
