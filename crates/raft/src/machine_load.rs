//! How busy the CPUs this node can use are, as a share (thousandths) of the time since the last
//! reading (at least [`WINDOW`], at most [`STALE`]): the larger of
//! - the machine's: its CPUs' time running anything (user, system, interrupts; not idle or
//!   waiting for IO), from `/proc/stat`;
//! - this process's: its CPU time (`CLOCK_PROCESS_CPUTIME_ID`, every thread) against the CPUs it
//!   may use ([`cpu_capacity_milli`]: its affinity mask, or less under a cgroup CPU quota, to the
//!   thousandth of a CPU). In a container `/proc/stat` is the host's, so a node held to its quota
//!   on an otherwise idle host would look idle by the first alone. The quota is taken as it is,
//!   not rounded to whole CPUs as `std::thread::available_parallelism` does: a node held to half
//!   a CPU that uses all of it is fully busy, and one allowed 2.5 CPUs that uses two is not.
//!
//! The write linger (see `proposer.rs`) batches only when CPU is scarce.

use std::path::Path;
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
    let sampler = sampler.get_or_insert_with(|| Sampler::new(cpu_capacity_milli()));
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
    /// CPUs this process may use, in thousandths.
    cpu_milli: u64,
    last: Option<(Instant, Reading)>,
    share: Option<u32>,
}

impl Sampler {
    fn new(cpu_milli: u64) -> Self {
        Self { cpu_milli: cpu_milli.max(1), last: None, share: None }
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
                    // CPU time used against CPU time allowed, both in CPU-nanoseconds × 1000.
                    let allowed = now.duration_since(at).as_nanos() * self.cpu_milli as u128;
                    (allowed > 0).then(|| (a.saturating_sub(b).as_nanos() * 1_000_000 / allowed).min(1000) as u32)
                });
                tracing::debug!(?machine, ?process, cpu_milli = self.cpu_milli, "busy share (thousandths)");
                machine.max(process)
            }
            _ => None,
        };
        self.last = (reading.stat.is_some() || reading.cpu.is_some()).then_some((now, reading));
        self.share
    }
}

/// The CPUs this process may use, in thousandths of a CPU: the CPUs its affinity mask allows
/// (else `available_parallelism`), or fewer under a cgroup CPU quota, v1 or v2, the smallest
/// quota on the way from its cgroup up to the hierarchy's root.
fn cpu_capacity_milli() -> u64 {
    let cpus =
        affinity_cpus().or_else(|| std::thread::available_parallelism().ok().map(|n| n.get() as u64)).unwrap_or(1);
    let quota = match (std::fs::read_to_string("/proc/self/cgroup"), std::fs::read_to_string("/proc/self/mountinfo")) {
        (Ok(cgroup), Ok(mountinfo)) => cgroup_quota_milli(&cgroup, &mountinfo, |p| std::fs::read_to_string(p).ok()),
        _ => None,
    };
    quota.map_or(cpus * 1000, |q| q.min(cpus * 1000)).max(1)
}

/// CPUs in this process's affinity mask.
fn affinity_cpus() -> Option<u64> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, and sched_getaffinity writes at most its
    // size into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
            .then(|| libc::CPU_COUNT(&set) as u64)
            .filter(|&n| n > 0)
    }
}

/// The smallest CPU quota (thousandths of a CPU) on the path of this process's cgroups, given
/// `/proc/self/cgroup`, `/proc/self/mountinfo` and a reader of cgroup files; `None` if none is
/// set. A v1 `cpu` hierarchy's limit is `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: none), a
/// v2 one's `cpu.max` ("max 100000": none). Inside a container the hierarchy is mounted at the
/// container's own cgroup, which mountinfo's root field says; the walk stops at the mount.
fn cgroup_quota_milli(cgroup: &str, mountinfo: &str, read: impl Fn(&Path) -> Option<String>) -> Option<u64> {
    let mut least: Option<u64> = None;
    for line in cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else { continue };
        let v2 = id == "0" && controllers.is_empty();
        if !v2 && !controllers.split(',').any(|c| c == "cpu") {
            continue;
        }
        let Some((root, mount)) = cgroup_mount(mountinfo, v2) else { continue };
        let relative = path.strip_prefix(root).unwrap_or("").trim_start_matches('/');
        let mut dir = Path::new(mount).join(relative);
        loop {
            let quota = if v2 { read(&dir.join("cpu.max")).and_then(|m| v2_quota(&m)) } else { v1_quota(&dir, &read) };
            if let Some(q) = quota {
                least = Some(least.map_or(q, |l| l.min(q)));
            }
            if dir == Path::new(mount) || !dir.pop() {
                break;
            }
        }
    }
    least
}

/// Root and mount point of the v2 hierarchy, or of the v1 hierarchy holding the `cpu`
/// controller, from `/proc/self/mountinfo`.
fn cgroup_mount(mountinfo: &str, v2: bool) -> Option<(&str, &str)> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs = fs.split(' ');
        let (fstype, _source, options) = (fs.next()?, fs.next()?, fs.next().unwrap_or(""));
        let wanted =
            if v2 { fstype == "cgroup2" } else { fstype == "cgroup" && options.split(',').any(|o| o == "cpu") };
        let mut m = mount.split(' ').skip(3);
        wanted.then(|| Some((m.next()?, m.next()?))).flatten()
    })
}

/// A v1 cgroup's quota at `dir`, if it sets one.
fn v1_quota(dir: &Path, read: &impl Fn(&Path) -> Option<String>) -> Option<u64> {
    let quota: i64 = read(&dir.join("cpu.cfs_quota_us"))?.trim().parse().ok()?;
    let period: u64 = read(&dir.join("cpu.cfs_period_us"))?.trim().parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as u64 * 1000 / period)
}

/// A v2 `cpu.max`'s quota, if it sets one.
fn v2_quota(max: &str) -> Option<u64> {
    let mut f = max.split_whitespace();
    let (quota, period) = (f.next()?.parse::<u64>().ok()?, f.next()?.parse::<u64>().ok()?);
    (period > 0).then(|| quota * 1000 / period)
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
        let mut s = Sampler::new(2000);
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
        let mut quota = Sampler::new(1000);
        quota.next(t0, reading(Some((0, 0)), Some(0)));
        assert_eq!(quota.next(t0 + WINDOW, reading(Some((2, 10)), Some(90))), Some(900));
        // Held to half a CPU, 45 ms of its 50.
        let mut half = Sampler::new(500);
        half.next(t0, reading(Some((0, 0)), Some(0)));
        assert_eq!(half.next(t0 + WINDOW, reading(Some((2, 10)), Some(45))), Some(900));
        // The same 90 ms on two CPUs is 45%, below the machine's 60%.
        let mut two = Sampler::new(2000);
        two.next(t0, reading(Some((0, 0)), Some(0)));
        assert_eq!(two.next(t0 + WINDOW, reading(Some((6, 10)), Some(90))), Some(600));
        // Without /proc/stat the process's share stands alone; it never exceeds 1000.
        let mut no_stat = Sampler::new(1000);
        no_stat.next(t0, reading(None, Some(0)));
        assert_eq!(no_stat.next(t0 + WINDOW, reading(None, Some(150))), Some(1000));
        assert!(process_cpu().is_some_and(|c| c > Duration::ZERO), "this test's own process has run");
    }

    /// A reader of the given (path, contents) pairs.
    fn files(files: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let files: Vec<(String, String)> = files.iter().map(|(p, c)| (p.to_string(), c.to_string())).collect();
        move |p| files.iter().find(|(f, _)| Path::new(f) == p).map(|(_, c)| c.clone())
    }

    /// A cgroup v1 host with the v2 hierarchy beside it (as Docker's cgroupfs hosts have).
    const HYBRID_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_v1_quota_is_read_in_thousandths_of_a_cpu_from_the_cgroup_up() {
        let cgroup = "2:cpuacct:/\n1:cpu:/svc/node\n0::/\n";
        let fs = files(&[
            ("/sys/fs/cgroup/cpu/svc/node/cpu.cfs_quota_us", "-1\n"),
            ("/sys/fs/cgroup/cpu/svc/node/cpu.cfs_period_us", "100000\n"),
            ("/sys/fs/cgroup/cpu/svc/cpu.cfs_quota_us", "150000\n"),
            ("/sys/fs/cgroup/cpu/svc/cpu.cfs_period_us", "100000\n"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(cgroup_quota_milli(cgroup, HYBRID_MOUNTS, &fs), Some(1500), "the parent's 1.5 CPUs");
        let none = files(&[
            ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(cgroup_quota_milli("1:cpu:/\n0::/\n", HYBRID_MOUNTS, &none), None, "no quota anywhere");
        assert_eq!(cgroup_quota_milli(cgroup, "", &fs), None, "no cgroup mount");
    }

    #[test]
    fn inside_a_container_the_hierarchy_is_mounted_at_its_own_cgroup() {
        // Docker on cgroup v1 without a cgroup namespace: /proc/self/cgroup names the
        // container's cgroup, which is the root of the container's mount.
        let mounts = "1203 1201 0:29 /docker/abc /sys/fs/cgroup/cpu ro,nosuid - cgroup cgroup rw,cpu\n";
        let cgroup = "1:cpu:/docker/abc\n";
        let fs = files(&[
            ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "50000\n"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        ]);
        assert_eq!(cgroup_quota_milli(cgroup, mounts, &fs), Some(500));
    }

    #[test]
    fn a_v2_quota_is_the_smallest_cpu_max_on_the_way_up() {
        let mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let cgroup = "0::/kubepods/pod1/c1\n";
        let fs = files(&[
            ("/sys/fs/cgroup/kubepods/pod1/c1/cpu.max", "max 100000\n"),
            ("/sys/fs/cgroup/kubepods/pod1/cpu.max", "25000 100000\n"),
            ("/sys/fs/cgroup/kubepods/cpu.max", "300000 100000\n"),
        ]);
        assert_eq!(cgroup_quota_milli(cgroup, mounts, &fs), Some(250), "the pod's quarter of a CPU");
        // A hybrid host's v2 hierarchy has no cpu controller: no cpu.max anywhere.
        assert_eq!(cgroup_quota_milli("0::/\n", HYBRID_MOUNTS, files(&[])), None);
        assert_eq!(v2_quota("max 100000"), None);
        assert_eq!(v2_quota("150000 100000\n"), Some(1500));
    }

    #[test]
    fn this_process_may_use_at_least_part_of_a_cpu_and_no_more_than_its_affinity_allows() {
        let milli = cpu_capacity_milli();
        let cpus = affinity_cpus().expect("sched_getaffinity works on Linux");
        assert!(milli > 0 && milli <= cpus * 1000, "{milli} thousandths of {cpus} CPUs");
    }
}
