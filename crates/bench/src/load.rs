//! Closed-loop load: each client task issues one operation at a time, as fast as answers come.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use rand::SeedableRng;

use crate::adapter::{Adapter, Level};
use crate::report::Record;
use crate::workload::{key_name, Generator, KeyDist, Mix, Op};

/// The system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// raftcache through its SDK.
    Raftcache,
}

/// `raftcache-bench load`.
#[derive(Clone, Debug, Args)]
pub struct LoadArgs {
    /// System under test.
    #[arg(long, value_enum, default_value_t = System::Raftcache)]
    pub system: System,
    /// Comma-separated endpoints.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003")]
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
    /// Independent client connections the clients share (0 = one per 16 clients).
    #[arg(long, default_value_t = 0)]
    pub connections: usize,
    /// Read consistency (raftcache).
    #[arg(long, value_enum, default_value_t = Level::Linearizable)]
    pub consistency: Level,
    /// Measured time.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before it.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Append the record as one JSON line to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `raftcache-bench smoke`.
#[derive(Clone, Debug, Args)]
pub struct SmokeArgs {
    /// Measured time per workload.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

async fn connect(a: &LoadArgs) -> anyhow::Result<Vec<Adapter>> {
    let n = if a.connections == 0 { a.clients.div_ceil(16).max(1) } else { a.connections };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(match a.system {
            System::Raftcache => Adapter::raftcache(&a.endpoints, a.consistency).await?,
        });
    }
    Ok(out)
}

/// Writes every key once so reads find values.
async fn preload(adapters: &[Adapter], keys: u64, value: &Bytes, clients: usize) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|i| {
            let a = adapters[i % adapters.len()].clone();
            let (next, value) = (next.clone(), value.clone());
            tokio::spawn(async move {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= keys {
                        return anyhow::Ok(());
                    }
                    a.set(&key_name(k), value.clone()).await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Runs one workload and returns its record.
pub async fn run(a: LoadArgs) -> anyhow::Result<Record> {
    let adapters = connect(&a).await?;
    let value = Bytes::from(vec![b'v'; a.value_bytes]);
    if a.workload != Mix::Write {
        eprint!("preloading {} keys… ", a.key_space);
        preload(&adapters, a.key_space, &value, a.clients).await?;
        eprintln!("done");
    }
    let gen = Arc::new(Generator::new(a.workload, a.keys, a.key_space));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?));
    let tasks: Vec<_> = (0..a.clients)
        .map(|i| {
            let ad = adapters[i % adapters.len()].clone();
            let (gen, measuring, stop, done, errors, hist, value) = (
                gen.clone(),
                measuring.clone(),
                stop.clone(),
                done.clone(),
                errors.clone(),
                hist.clone(),
                value.clone(),
            );
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
                let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
                while !stop.load(Ordering::Relaxed) {
                    let op = gen.next(&mut rng);
                    let t = Instant::now();
                    let ok = match op {
                        Op::Read(k) => ad.get(&key_name(k)).await.is_ok(),
                        Op::Write(k) => ad.set(&key_name(k), value.clone()).await.is_ok(),
                    };
                    if measuring.load(Ordering::Relaxed) {
                        if ok {
                            let _ = local.record(t.elapsed().as_micros().max(1) as u64);
                            done.fetch_add(1, Ordering::Relaxed);
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                hist.lock().expect("histogram lock").add(&local).expect("same bounds");
            })
        })
        .collect();
    progress("warm-up", a.warmup, &done).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    progress("measure", a.duration, &done).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let record = Record {
        system: format!("{:?}", a.system).to_lowercase(),
        workload: format!("{:?}", a.workload).to_lowercase(),
        consistency: if a.workload == Mix::Write {
            "n/a".into()
        } else {
            format!("{:?}", a.consistency).to_lowercase()
        },
        keys: format!("{:?}", a.keys).to_lowercase(),
        clients: a.clients,
        value_bytes: a.value_bytes,
        ops_per_sec: done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        p50_us: 0,
        p99_us: 0,
        p999_us: 0,
        errors: errors.load(Ordering::Relaxed),
    }
    .with_latency(&hist.lock().expect("histogram lock"));
    eprintln!();
    println!("{}", record.line());
    if let Some(path) = &a.json {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        writeln!(f, "{}", serde_json::to_string(&record)?)?;
    }
    Ok(record)
}

/// Prints a live progress line for `phase` every second of `d`.
async fn progress(phase: &str, d: Duration, done: &AtomicU64) {
    let start = Instant::now();
    let mut last = done.load(Ordering::Relaxed);
    while start.elapsed() < d {
        let step = Duration::from_secs(1).min(d.saturating_sub(start.elapsed()));
        tokio::time::sleep(step).await;
        let now = done.load(Ordering::Relaxed);
        eprint!(
            "\r{phase} {:>5.1}s/{:.0}s  {:>9.0} ops/s   ",
            start.elapsed().as_secs_f64(),
            d.as_secs_f64(),
            (now - last) as f64 / step.as_secs_f64().max(1e-3)
        );
        let _ = std::io::stderr().flush();
        last = now;
    }
}

/// Starts a single-node cluster and runs a short write and read load against it.
pub async fn smoke(s: SmokeArgs) -> anyhow::Result<()> {
    let opts = raftcache_testkit::ClusterOptions { nodes: 1, replicas: 1, groups: 4, ..Default::default() };
    let cluster = raftcache_testkit::Cluster::start(opts).await?;
    for workload in [Mix::Write, Mix::Read] {
        let args = LoadArgs {
            system: System::Raftcache,
            endpoints: cluster.endpoints(),
            workload,
            keys: KeyDist::Zipf,
            key_space: 1_000,
            value_bytes: 256,
            clients: 8,
            connections: 1,
            consistency: Level::Linearizable,
            duration: s.duration,
            warmup: Duration::from_millis(500),
            json: None,
        };
        let r = run(args).await?;
        anyhow::ensure!(r.ops_per_sec > 0.0, "{workload:?} completed no operations");
        anyhow::ensure!(r.errors == 0, "{workload:?} had {} errors", r.errors);
    }
    Ok(())
}
