//! Results: one record per measurement, in the shape `bench/results/*/summary.json` uses
//! (`{"runs": [Record, …]}`), and the one place a histogram becomes percentiles.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in µs between these bounds, 3 significant digits.
pub const LATENCY_MIN_US: u64 = 1;
/// 60 s: anything slower is clamped (the clients time out well before).
pub const LATENCY_MAX_US: u64 = 60_000_000;

/// An empty latency histogram with the bounds every measurement uses.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LATENCY_MIN_US, LATENCY_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// One measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// raftcache, etcd or redis.
    pub system: String,
    /// write, read or mixed.
    pub workload: String,
    /// linearizable, follower, session, eventual or n/a (writes, and Redis).
    pub consistency: String,
    /// uniform or zipf.
    pub keys: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Value size.
    pub value_bytes: usize,
    /// Completed operations per second over the measured window.
    pub ops_per_sec: f64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Failed operations in the window.
    pub errors: u64,
    /// Busy CPU time of the whole machine (every process, the load generator included) per
    /// successful operation over the window, µs: what an operation costs, where ops/s only says
    /// how many fit. `None` where `/proc/stat` cannot be read, or in records from before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_op: Option<f64>,
}

/// What was measured, before the numbers are in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    /// See [`Record::system`].
    pub system: &'static str,
    /// See [`Record::workload`].
    pub workload: &'static str,
    /// See [`Record::consistency`].
    pub consistency: &'static str,
    /// See [`Record::keys`].
    pub keys: &'static str,
    /// See [`Record::clients`].
    pub clients: usize,
    /// See [`Record::value_bytes`].
    pub value_bytes: usize,
}

impl Record {
    /// The record of `ok` successful operations with latencies `h` (µs) and `errors` failures
    /// over `elapsed`.
    pub fn new(labels: &Labels, ok: u64, errors: u64, elapsed: Duration, h: &Histogram<u64>) -> Self {
        Self {
            system: labels.system.into(),
            workload: labels.workload.into(),
            consistency: labels.consistency.into(),
            keys: labels.keys.into(),
            clients: labels.clients,
            value_bytes: labels.value_bytes,
            ops_per_sec: if elapsed.is_zero() { 0.0 } else { ok as f64 / elapsed.as_secs_f64() },
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            errors,
            cpu_us_per_op: None,
        }
    }

    /// A one-line human summary.
    pub fn line(&self) -> String {
        let cpu = self.cpu_us_per_op.map_or(String::new(), |c| format!("  cpu {c:.0} µs/op"));
        format!(
            "{:<9} {:<6} {:<12} {:<7} c={:<4} {:>9.0} ops/s  p50 {:>6} µs  p99 {:>7} µs  p99.9 {:>7} µs  errors {}{cpu}",
            self.system,
            self.workload,
            self.consistency,
            self.keys,
            self.clients,
            self.ops_per_sec,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.errors
        )
    }
}

/// Busy and total ticks of all CPUs, from the first line of `/proc/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq.
    pub busy: u64,
    /// Every field: the above, idle, iowait, and time stolen by the hypervisor.
    pub total: u64,
    /// The CPUs those ticks are summed over: the `cpuN` lines. Not this process's affinity or
    /// quota (`available_parallelism`): a generator pinned to one core of two still sees, and
    /// must scale by, the whole machine's ticks.
    pub cpus: u32,
}

impl CpuTimes {
    /// The machine's counters now; `None` without a readable `/proc/stat`.
    pub fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().next()?.strip_prefix("cpu ")?;
        let f: Vec<u64> = line.split_whitespace().map(|x| x.parse().ok()).collect::<Option<_>>()?;
        // guest and guest_nice (f[8], f[9]) are already counted in user and nice.
        let (busy, total) = (f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?, f.iter().take(8).sum());
        let is_cpu_n = |l: &&str| l.strip_prefix("cpu").is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()));
        let cpus = stat.lines().filter(is_cpu_n).count().max(1) as u32;
        Some(Self { busy, total, cpus })
    }

    /// The ticks between `earlier` and `self` (over `self`'s CPUs).
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            busy: self.busy.saturating_sub(earlier.busy),
            total: self.total.saturating_sub(earlier.total),
            cpus: self.cpus,
        }
    }

    /// As a difference over `elapsed`: busy CPU µs per one of `ops` operations.
    pub fn per_op(&self, elapsed: Duration, ops: u64) -> Option<f64> {
        if ops == 0 || self.total == 0 {
            return None;
        }
        let busy_cpu_us = self.busy as f64 / self.total as f64 * f64::from(self.cpus) * elapsed.as_secs_f64() * 1e6;
        Some(busy_cpu_us / ops as f64)
    }
}

/// `summary.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// One record per measurement, in the order they ran.
    pub runs: Vec<Record>,
}

impl Summary {
    /// Reads `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a summary ({{\"runs\": [...]}})", path.display()))
    }

    /// Writes `path` whole (through a temp file, so a reader never sees half of it).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    }
}

/// A record with the given labels and numbers (p50 = p99 / 2, p99.9 = 2 × p99), for tests.
#[cfg(test)]
pub(crate) fn test_record(
    system: &str,
    workload: &str,
    consistency: &str,
    clients: usize,
    ops: f64,
    p99: u64,
) -> Record {
    Record {
        system: system.into(),
        workload: workload.into(),
        consistency: consistency.into(),
        keys: "uniform".into(),
        clients,
        value_bytes: 256,
        ops_per_sec: ops,
        p50_us: p99 / 2,
        p99_us: p99,
        p999_us: p99 * 2,
        errors: 0,
        cpu_us_per_op: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Labels {
        Labels {
            system: "raftcache",
            workload: "read",
            consistency: "eventual",
            keys: "zipf",
            clients: 16,
            value_bytes: 256,
        }
    }

    #[test]
    fn percentiles_and_rate_come_from_the_histogram() {
        let mut h = latency_histogram();
        for us in 1..=1000u64 {
            h.record(us).unwrap();
        }
        let r = Record::new(&labels(), 1000, 3, Duration::from_secs(4), &h);
        assert_eq!(r.ops_per_sec, 250.0);
        assert!((499..=501).contains(&r.p50_us), "{}", r.p50_us);
        assert!((989..=991).contains(&r.p99_us), "{}", r.p99_us);
        assert!((998..=1000).contains(&r.p999_us), "{}", r.p999_us);
        assert_eq!(r.errors, 3);
    }

    #[test]
    fn json_has_exactly_the_summary_fields() {
        let mut r = Record::new(&labels(), 0, 0, Duration::ZERO, &latency_histogram());
        assert!(!serde_json::to_string(&r).unwrap().contains("cpu_us_per_op"), "left out when unknown");
        r.cpu_us_per_op = Some(12.5);
        let v = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|s| s.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "clients",
                "consistency",
                "cpu_us_per_op",
                "errors",
                "keys",
                "ops_per_sec",
                "p50_us",
                "p999_us",
                "p99_us",
                "system",
                "value_bytes",
                "workload"
            ]
        );
        assert_eq!(v["system"], "raftcache");
        assert_eq!(v["clients"], 16);
        assert_eq!(v["cpu_us_per_op"], 12.5);
        // Records written before the field existed still load.
        let old = r#"{"system":"etcd","workload":"write","consistency":"n/a","keys":"uniform","clients":1,
            "value_bytes":256,"ops_per_sec":1.0,"p50_us":1,"p99_us":1,"p999_us":1,"errors":0}"#;
        assert_eq!(serde_json::from_str::<Record>(old).unwrap().cpu_us_per_op, None);
    }

    #[test]
    fn busy_cpu_comes_from_the_change_in_proc_stat() {
        // user nice system idle iowait irq softirq steal: busy is user+nice+system+irq+softirq.
        const CPU_A: &str = "cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3\ncpu1 1 2 3\nintr 5\n";
        const CPU_B: &str = "cpu  160 0 80 850 20 0 15 75 0 0\ncpu0 1 2 3\ncpu1 1 2 3\nctxt 9\ncpus 1\n";
        let (a, b) = (CpuTimes::parse(CPU_A).unwrap(), CpuTimes::parse(CPU_B).unwrap());
        assert_eq!(a, CpuTimes { busy: 155, total: 1000, cpus: 2 });
        // 100 of 200 ticks busy, 2 CPUs, 3 s: 3 CPU-seconds over 1,000 operations = 3,000 µs each.
        let per_op = b.since(&a).per_op(Duration::from_secs(3), 1000).unwrap();
        assert!((per_op - 3000.0).abs() < 1e-9, "{per_op}");
        assert_eq!(b.since(&a).per_op(Duration::from_secs(3), 0), None);
        // The same share of four CPUs is twice the CPU time, whatever this process may run on.
        let four = |s: &str| s.replace("cpu1 1 2 3\n", "cpu1 1 2 3\ncpu2 0\ncpu3 0\n");
        let (a4, b4) = (CpuTimes::parse(&four(CPU_A)).unwrap(), CpuTimes::parse(&four(CPU_B)).unwrap());
        assert_eq!(b4.since(&a4).per_op(Duration::from_secs(3), 1000), Some(6000.0));
        assert!(CpuTimes::parse("intr 1 2 3\n").is_none());
    }

    #[test]
    fn summary_round_trips_and_bad_files_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.json");
        let s = Summary { runs: vec![Record::new(&labels(), 10, 0, Duration::from_secs(1), &latency_histogram())] };
        s.save(&path).unwrap();
        assert_eq!(Summary::load(&path).unwrap(), s);
        std::fs::write(&path, "[1,2]").unwrap();
        let e = format!("{:#}", Summary::load(&path).unwrap_err());
        assert!(e.contains("is not a summary"), "{e}");
    }
}
