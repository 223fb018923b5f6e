//! How busy the CPUs this node can use are, as a share (thousandths) of the time since the last
//! reading (at least [`WINDOW`], at most [`STALE`]): the larger of
//! - the machine's: its CPUs' time running anything (user, system, interrupts; not idle or
//!   waiting for IO), from `/proc/stat`;
//! - this process's: its CPU time (`CLOCK_PROCESS_CPUTIME_ID`, every thread) against the CPUs it
//!   may use (`std::thread::available_parallelism`, which counts a cgroup's CPU quota and the
//!   affinity mask). In a container `/proc/stat` is the host's, so a node held to its quota on an
//!   otherwise idle host would look idle by the first alone. The count is whole CPUs, a quota
//!   rounded down and at least one, so under a quota of less than one CPU this share never
//!   reaches the quota's own fraction and only the machine's can call the CPU scarce.
//!
//! The write linger (see `proposer.rs`) batches only when CPU is scarce.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shortest window a share is measured over: a call within this of the last reading gets
/// that reading's share.
const WINDOW: Duration = Duration::from_millis(100);
/// A reading older than this says nothing of now: the next call starts a new window.
const STALE: Duration = Duration::from_secs(1);

static SAMPLER: Mutex<Option<Sampler>> = Mutex::new(None);

/// The busy share over the last window, in thousandths; `None` when no window ended within
/// [`STALE`] (the first call after an idle spell) or where neither clock can be read.
///
/// Read on demand, at most once per [`WINDOW`], by whoever asks (the linger, under write load),
/// so an idle node reads nothing.
pub fn busy_permille() -> Option<u32> {
    let mut sampler = SAMPLER.lock().unwrap_or_else(|e| e.into_inner());
    let sampler = sampler.get_or_insert_with(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        Sampler::new(cpus)
    });
    let now = Instant::now();
    if sampler.last.is_some_and(|(at, _)| now.duration_since(at) < WINDOW) {
        return sampler.share;
    }
    sampler.next(now, Reading { stat: read_stat(), cpu: process_cpu() })
}

/// What one reading saw: the machine's (busy, busy + idle) jiffies, and this process's CPU time.
#[derive(Clone, Copy)]
struct Reading {
    stat: Option<(u64, u64)>,
    cpu: Option<Duration>,
}

/// The last reading and the share it gave.
struct Sampler {
    /// CPUs this process may use.
    cpus: u64,
    last: Option<(Instant, Reading)>,
    share: Option<u32>,
}

impl Sampler {
    fn new(cpus: u64) -> Self {
        Self { cpus: cpus.max(1), last: None, share: None }
    }

    /// Takes a reading made at `now` and returns the share since the last one, if that one is
    /// recent enough to stand for "now": the larger of the machine's and this process's, or
    /// whichever of them could be read.
    fn next(&mut self, now: Instant, reading: Reading) -> Option<u32> {
        let last = self.last.take();
        self.share = match last {
            Some((at, before)) if now.duration_since(at) <= STALE => {
                let machine = before.stat.zip(reading.stat).and_then(|(b, a)| share(b, a));
                let process = before.cpu.zip(reading.cpu).and_then(|(b, a)| {
                    let wall = now.duration_since(at).as_nanos() * self.cpus as u128;
                    (wall > 0).then(|| (a.saturating_sub(b).as_nanos() * 1000 / wall).min(1000) as u32)
                });
                tracing::debug!(?machine, ?process, cpus = self.cpus, "busy share (thousandths)");
                machine.max(process)
            }
            _ => None,
        };
        self.last = (reading.stat.is_some() || reading.cpu.is_some()).then_some((now, reading));
        self.share
    }
}

/// CPU time of every thread of this process so far.
fn process_cpu() -> Option<Duration> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
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

    fn reading(stat: Option<(u64, u64)>, cpu_ms: Option<u64>) -> Reading {
        Reading { stat, cpu: cpu_ms.map(Duration::from_millis) }
    }

    #[test]
    fn a_share_spans_two_recent_readings_and_a_stale_or_missing_one_gives_none() {
        let t0 = Instant::now();
        let mut s = Sampler::new(2);
        assert_eq!(s.next(t0, reading(Some((100, 1000)), None)), None, "one reading is no window");
        assert_eq!(s.next(t0 + WINDOW, reading(Some((150, 1100)), None)), Some(500));
        let later = t0 + WINDOW + STALE * 2;
        assert_eq!(s.next(later, reading(Some((160, 1300)), None)), None, "an idle spell's average is not now");
        assert_eq!(s.next(later + WINDOW, reading(Some((260, 1400)), None)), Some(1000));
        assert_eq!(s.next(later + WINDOW * 2, reading(None, None)), None, "unreadable");
        assert_eq!(s.next(later + WINDOW * 3, reading(Some((300, 1500)), None)), None, "a new window starts");
    }

    #[test]
    fn the_process_share_counts_against_the_cpus_it_may_use_and_the_larger_share_wins() {
        let t0 = Instant::now();
        // Held to one CPU (a cgroup quota) on a host whose /proc/stat reads 20% busy: the
        // process used 90 ms of its 100.
        let mut quota = Sampler::new(1);
        quota.next(t0, reading(Some((0, 0)), Some(0)));
        assert_eq!(quota.next(t0 + WINDOW, reading(Some((2, 10)), Some(90))), Some(900));
        // The same process time on two CPUs is 45%, below the machine's 60%.
        let mut two = Sampler::new(2);
        two.next(t0, reading(Some((0, 0)), Some(0)));
        assert_eq!(two.next(t0 + WINDOW, reading(Some((6, 10)), Some(90))), Some(600));
        // Without /proc/stat the process's share stands alone; it never exceeds 1000.
        let mut no_stat = Sampler::new(1);
        no_stat.next(t0, reading(None, Some(0)));
        assert_eq!(no_stat.next(t0 + WINDOW, reading(None, Some(150))), Some(1000));
        assert!(process_cpu().is_some_and(|c| c > Duration::ZERO), "this test's own process has run");
    }
}
