//! Closed-loop load: each simulated client issues one operation at a time, as fast as answers
//! come, for a warm-up and then a measured window. An operation counts when it completes inside
//! the window. Latencies (µs) go into one HDR histogram per client, merged at the end, and become
//! a [`Record`] in one place ([`Record::new`]).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use rand::SeedableRng;

use crate::adapter::{Adapter, Level, System};
use crate::record::{latency_histogram, CpuTimes, Labels, Record};
use crate::timeline::{self, Sample};
use crate::workload::{key_name, Generator, KeyDist, Mix, Op};

/// Largest value the bench sends (raftcache's default limit).
pub const MAX_VALUE_BYTES: usize = 8 << 20;

/// One measurement: what to run, against which system.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    /// System under test.
    pub system: System,
    /// Operation mix.
    pub workload: Mix,
    /// Key distribution.
    pub keys: KeyDist,
    /// Distinct keys.
    pub key_space: u64,
    /// Value size in bytes.
    pub value_bytes: usize,
    /// Simulated clients, each with one operation in flight.
    pub clients: usize,
    /// Read level (see [`System::read_level`]); `None` for Redis.
    pub level: Option<Level>,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it.
    pub warmup: Duration,
}

impl Spec {
    /// Refuses a spec that cannot run, saying why.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.clients == 0 {
            bail!("--clients must be at least 1");
        }
        if self.key_space == 0 {
            bail!("--key-space must be at least 1");
        }
        if self.value_bytes == 0 || self.value_bytes > MAX_VALUE_BYTES {
            bail!("--value-bytes must be 1..={MAX_VALUE_BYTES}, got {}", self.value_bytes);
        }
        if self.duration.is_zero() {
            bail!("--duration must be more than 0");
        }
        let checked = self.system.read_level(self.level)?;
        if checked != self.level {
            bail!("internal: level {:?} was not resolved for {}", self.level, self.system.name());
        }
        Ok(())
    }

    /// The labels its record carries. Writes have no read level: `n/a`.
    pub fn labels(&self) -> Labels {
        Labels {
            system: self.system.name(),
            workload: self.workload.name(),
            consistency: match self.level {
                Some(l) if self.workload.reads() => l.name(),
                _ => "n/a",
            },
            keys: self.keys.name(),
            clients: self.clients,
            value_bytes: self.value_bytes,
        }
    }

    /// A short name for progress lines.
    pub fn title(&self) -> String {
        let l = self.labels();
        format!("{} {} {} {} c={}", l.system, l.workload, l.consistency, l.keys, l.clients)
    }
}

/// What a measurement gave besides its record.
#[derive(Debug)]
pub struct Outcome {
    /// The record.
    pub record: Record,
    /// Reads in the window that found no value (after a preload: a lost or misrouted key).
    pub misses: u64,
    /// The first error an operation returned, if any.
    pub first_error: Option<String>,
    /// Every operation that completed in the window, when asked for (see [`measure_timed`]).
    pub samples: Vec<Sample>,
}

/// `raftcache-bench load`.
#[derive(Clone, Debug, Args)]
pub struct LoadArgs {
    /// System under test.
    #[arg(long, value_enum, default_value_t = System::Raftcache)]
    pub system: System,
    /// Comma-separated endpoints (default: the system's usual local ports).
    #[arg(long, value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Operation mix.
    #[arg(long, value_enum, default_value_t = Mix::Write)]
    pub workload: Mix,
    /// Key distribution.
    #[arg(long, value_enum, default_value_t = KeyDist::Uniform)]
    pub keys: KeyDist,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Concurrent clients (each with one operation in flight).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Read consistency (default linearizable; etcd: linearizable or eventual = serializable;
    /// Redis has none).
    #[arg(long, value_enum)]
    pub consistency: Option<Level>,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Do not write the key space before a read workload (it was loaded already).
    #[arg(long)]
    pub no_preload: bool,
    /// Append the record as one JSON line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write throughput, errors and p50/p99/max latency per interval of the measured window to
    /// this CSV file, and draw them against time into an SVG beside it (same name, `.svg`).
    #[arg(long)]
    pub timeline: Option<PathBuf>,
    /// The timeline's interval.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub timeline_interval: Duration,
}

/// `raftcache-bench load`: one measurement against a running system.
pub async fn run(a: LoadArgs) -> anyhow::Result<()> {
    let spec = Spec {
        system: a.system,
        workload: a.workload,
        keys: a.keys,
        key_space: a.key_space,
        value_bytes: a.value_bytes,
        clients: a.clients,
        level: a.system.read_level(a.consistency)?,
        duration: a.duration,
        warmup: a.warmup,
    };
    spec.validate()?;
    if a.timeline_interval.is_zero() {
        bail!("--timeline-interval must be more than 0");
    }
    let endpoints = if a.endpoints.is_empty() { a.system.default_endpoints() } else { a.endpoints };
    let adapters = connect(&spec, &endpoints).await?;
    if spec.workload.reads() && !a.no_preload {
        preload(&adapters, spec.key_space, spec.value_bytes, spec.clients).await?;
    }
    let out = measure_timed(&spec, &adapters, a.timeline.is_some()).await?;
    report_outcome(&out);
    if let Some(csv) = &a.timeline {
        let rows = timeline::rows(&out.samples, a.timeline_interval, spec.duration);
        timeline::write_csv(csv, &rows)?;
        let svg = timeline::svg_path(csv);
        timeline::draw(&svg, &format!("{} over time ({} s window)", spec.title(), spec.duration.as_secs_f64()), &rows)?;
        eprintln!("timeline: {} and {}", csv.display(), svg.display());
    }
    if let Some(path) = &a.json {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        writeln!(f, "{}", serde_json::to_string(&out.record)?)?;
    }
    Ok(())
}

/// Prints the record line, and what went wrong if anything did.
pub fn report_outcome(out: &Outcome) {
    println!("{}", out.record.line());
    if let Some(e) = &out.first_error {
        eprintln!("  {} operations failed; the first: {e}", out.record.errors);
    }
    if out.misses > 0 {
        eprintln!("  warning: {} reads found no value although the key space was loaded", out.misses);
    }
}

/// Opens the connections `spec`'s clients share (see [`System::connections_for`]).
pub async fn connect(spec: &Spec, endpoints: &[String]) -> anyhow::Result<Vec<Adapter>> {
    let n = spec.system.connections_for(spec.clients);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Adapter::connect(spec.system, endpoints, spec.level).await?);
    }
    Ok(out)
}

/// Attempts at one preload write before the run is abandoned.
const PRELOAD_ATTEMPTS: u32 = 5;

/// Sets `key` for a preload, trying again after a failure (an election under heavy load makes
/// the SDK give up on a write now and then; writing the same value again is harmless).
async fn set_retrying(a: &mut Adapter, key: &str, value: &Bytes) -> anyhow::Result<()> {
    let mut attempt = 1;
    loop {
        match a.set(key, value).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < PRELOAD_ATTEMPTS => {
                eprintln!("\r\x1b[Kpreloading {key}: attempt {attempt} failed ({e:#}); trying again");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("preloading {key} ({PRELOAD_ATTEMPTS} attempts)")),
        }
    }
}

/// Writes every key of `0..keys` once, with `clients` writers, so reads find values.
pub async fn preload(adapters: &[Adapter], keys: u64, value_bytes: usize, clients: usize) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let value = Bytes::from(vec![b'v'; value_bytes]);
    let next = Arc::new(AtomicU64::new(0));
    let ticker = {
        let next = next.clone();
        tokio::spawn(async move {
            loop {
                let done = next.load(Ordering::Relaxed).min(keys);
                let rate = done as f64 / t0.elapsed().as_secs_f64().max(1e-3);
                eprint!("\r\x1b[Kpreloading {keys} keys of {value_bytes} bytes: {done} ({rate:.0}/s)");
                let _ = std::io::stderr().flush();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|i| {
            let mut a = adapters[i % adapters.len()].clone();
            let (next, value) = (next.clone(), value.clone());
            tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= keys {
                        return anyhow::Ok(());
                    }
                    set_retrying(&mut a, &key_name(k), &value).await?;
                }
            })
        })
        .collect();
    let res = async {
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    }
    .await;
    ticker.abort();
    res?;
    eprintln!("\r\x1b[Kpreloaded {keys} keys of {value_bytes} bytes in {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Counters the client tasks share.
#[derive(Default)]
struct Shared {
    measuring: AtomicBool,
    stop: AtomicBool,
    /// Every completed operation, warm-up included (for the progress line).
    completed: AtomicU64,
    /// Successful operations in the measured window.
    ok: AtomicU64,
    errors: AtomicU64,
    misses: AtomicU64,
    first_error: OnceLock<String>,
    /// When the measured window began.
    window_start: OnceLock<Instant>,
}

/// Runs `spec` on connections from [`connect`] and returns its record.
pub async fn measure(spec: &Spec, adapters: &[Adapter]) -> anyhow::Result<Outcome> {
    measure_timed(spec, adapters, false).await
}

/// [`measure`], and with `timeline` also a [`Sample`] of every operation completed in the window.
pub async fn measure_timed(spec: &Spec, adapters: &[Adapter], timeline: bool) -> anyhow::Result<Outcome> {
    spec.validate()?;
    anyhow::ensure!(!adapters.is_empty(), "no connections to measure with");
    let gen = Arc::new(Generator::new(spec.workload, spec.keys, spec.key_space)?);
    let value = Bytes::from(vec![b'v'; spec.value_bytes]);
    let shared = Arc::new(Shared::default());
    let merged = Arc::new(Mutex::new(latency_histogram()));
    let all_samples = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..spec.clients)
        .map(|i| {
            let mut ad = adapters[i % adapters.len()].clone();
            let (gen, shared, merged, value) = (gen.clone(), shared.clone(), merged.clone(), value.clone());
            let all_samples = all_samples.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
                let mut local = latency_histogram();
                let mut samples = Vec::new();
                while !shared.stop.load(Ordering::Relaxed) {
                    let op = gen.next(&mut rng);
                    let t = Instant::now();
                    let res = match op {
                        Op::Read(k) => ad.get(&key_name(k)).await,
                        Op::Write(k) => ad.set(&key_name(k), &value).await.map(|()| true),
                    };
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                    if !shared.measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    let latency_us = t.elapsed().as_micros() as u64;
                    if let (true, Some(start)) = (timeline, shared.window_start.get()) {
                        let at_us = start.elapsed().as_micros() as u64;
                        samples.push(Sample { at_us, latency_us, ok: res.is_ok() });
                    }
                    match res {
                        Ok(found) => {
                            local.saturating_record(latency_us);
                            shared.ok.fetch_add(1, Ordering::Relaxed);
                            if !found {
                                shared.misses.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            shared.errors.fetch_add(1, Ordering::Relaxed);
                            let _ = shared.first_error.set(format!("{e:#}"));
                        }
                    }
                }
                // The locks are only taken once per task, after its loop.
                merged.lock().expect("histogram lock").add(&local).expect("same bounds");
                all_samples.lock().expect("samples lock").append(&mut samples);
            })
        })
        .collect();
    let title = spec.title();
    progress(&title, "warm-up", spec.warmup, &shared).await;
    let cpu_before = CpuTimes::now();
    let start = Instant::now();
    let _ = shared.window_start.set(start);
    shared.measuring.store(true, Ordering::Relaxed);
    progress(&title, "measure", spec.duration, &shared).await;
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let cpu = cpu_before.zip(CpuTimes::now()).map(|(a, b)| b.since(&a));
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.context("a client task panicked")?;
    }
    eprintln!();
    let h = merged.lock().expect("histogram lock");
    let samples = std::mem::take(&mut *all_samples.lock().expect("samples lock"));
    let ok = shared.ok.load(Ordering::Relaxed);
    let mut record = Record::new(&spec.labels(), ok, shared.errors.load(Ordering::Relaxed), elapsed, &h);
    record.cpu_us_per_op = cpu.and_then(|c| c.per_op(elapsed, ok));
    Ok(Outcome {
        record,
        misses: if spec.workload == Mix::Write { 0 } else { shared.misses.load(Ordering::Relaxed) },
        first_error: shared.first_error.get().cloned(),
        samples,
    })
}

/// Redraws one progress line on stderr every second of `d`.
async fn progress(title: &str, phase: &str, d: Duration, shared: &Shared) {
    let start = Instant::now();
    let mut last = (shared.completed.load(Ordering::Relaxed), Instant::now());
    while start.elapsed() < d {
        tokio::time::sleep(Duration::from_secs(1).min(d.saturating_sub(start.elapsed()))).await;
        let now = (shared.completed.load(Ordering::Relaxed), Instant::now());
        let rate = (now.0 - last.0) as f64 / (now.1 - last.1).as_secs_f64().max(1e-3);
        eprint!(
            "\r\x1b[K{title}  {phase} {:>4.1}s/{:.1}s {rate:>9.0} ops/s  errors {}",
            start.elapsed().as_secs_f64(),
            d.as_secs_f64(),
            shared.errors.load(Ordering::Relaxed)
        );
        let _ = std::io::stderr().flush();
        last = now;
    }
}
