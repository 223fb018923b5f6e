//! Results: one record per measurement, in the shape `bench/results/*/summary.json` uses.

use hdrhistogram::Histogram;
use serde::Serialize;

/// One measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    /// raftcache, etcd or redis.
    pub system: String,
    /// write, read or mixed.
    pub workload: String,
    /// linearizable, follower, session, eventual or n/a.
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
}

impl Record {
    /// Fills the latency fields from `h` (values in µs).
    pub fn with_latency(mut self, h: &Histogram<u64>) -> Self {
        self.p50_us = h.value_at_quantile(0.50);
        self.p99_us = h.value_at_quantile(0.99);
        self.p999_us = h.value_at_quantile(0.999);
        self
    }

    /// A one-line human summary.
    pub fn line(&self) -> String {
        format!(
            "{:<9} {:<6} {:<12} {:<7} c={:<4} {:>9.0} ops/s  p50 {:>6} µs  p99 {:>7} µs  p99.9 {:>7} µs  errors {}",
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
