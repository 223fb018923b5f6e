//! `raftcache-bench smoke`: starts a 1-node cluster and runs every workload path of the suite
//! against it briefly — writes, a preload, reads at each consistency level, mixed — then makes a
//! report from the records, and a latency timeline of the writes. CI runs it so the generator,
//! the raftcache adapter and the report cannot rot. It fails on any failed operation, on a read
//! that misses a loaded key, or on a workload that completed nothing; it asserts nothing about
//! speed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context};
use clap::Args;
use raftcache_testkit::{Cluster, ClusterOptions};

use crate::adapter::{Level, System};
use crate::load::{self, Spec};
use crate::record::Summary;
use crate::report;
use crate::timeline;
use crate::workload::{KeyDist, Mix};

/// `raftcache-bench smoke`.
#[derive(Clone, Debug, Args)]
pub struct SmokeArgs {
    /// Measured time, split evenly over the workloads.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Keep summary.json, summary.md and summary.svg here (default: a temp dir, removed).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The smoke's measurements, `each` long.
fn specs(each: Duration) -> Vec<Spec> {
    let spec = |workload, keys, level| Spec {
        system: System::Raftcache,
        workload,
        keys,
        key_space: 1_000,
        value_bytes: 256,
        clients: 8,
        level: Some(level),
        duration: each,
        warmup: Duration::from_millis(200),
    };
    let mut v = vec![spec(Mix::Write, KeyDist::Uniform, Level::Linearizable)];
    v.extend(Level::ALL.iter().map(|&l| spec(Mix::Read, KeyDist::Zipf, l)));
    v.push(spec(Mix::Mixed, KeyDist::Uniform, Level::Linearizable));
    v
}

/// `raftcache-bench smoke`.
pub async fn run(a: SmokeArgs) -> anyhow::Result<()> {
    ensure!(!a.duration.is_zero(), "--duration must be more than 0");
    let specs = specs(a.duration / 6);
    let cluster = Cluster::start(ClusterOptions { nodes: 1, replicas: 1, groups: 4, ..Default::default() }).await?;
    let endpoints = cluster.endpoints();
    let tmp;
    let dir = match &a.out {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let mut summary = Summary::default();
    for (i, spec) in specs.iter().enumerate() {
        if i == 1 {
            let adapters = load::connect(spec, &endpoints).await?;
            load::preload(&adapters, spec.key_space, spec.value_bytes, spec.clients).await?;
        }
        let adapters = load::connect(spec, &endpoints).await?;
        // The first measurement also keeps its timeline, so that path cannot rot either.
        let out = load::measure_timed(spec, &adapters, i == 0).await?;
        load::report_outcome(&out);
        let r = &out.record;
        if i == 0 {
            ensure!(!out.samples.is_empty() && out.samples.iter().all(|s| s.ok), "{}: bad timeline", spec.title());
            let rows = timeline::rows(&out.samples, Duration::from_millis(100), spec.duration);
            let csv = dir.join("timeline.csv");
            timeline::write_csv(&csv, &rows)?;
            timeline::draw(&timeline::svg_path(&csv), &spec.title(), &rows)?;
        }
        if std::path::Path::new("/proc/stat").exists() {
            ensure!(r.cpu_us_per_op.is_some_and(|c| c > 0.0), "{}: no CPU per operation", spec.title());
        }
        ensure!(r.ops_per_sec > 0.0, "{} completed no operations", spec.title());
        ensure!(r.errors == 0, "{}: {} errors, the first: {:?}", spec.title(), r.errors, out.first_error);
        ensure!(out.misses == 0, "{}: {} reads missed loaded keys", spec.title(), out.misses);
        ensure!(r.p50_us > 0 && r.p50_us <= r.p99_us && r.p99_us <= r.p999_us, "{}: bad percentiles", spec.title());
        summary.runs.push(out.record);
    }
    summary.save(&dir.join(report::SUMMARY_JSON))?;
    report::run(&dir)?;
    let md = std::fs::read_to_string(dir.join(report::SUMMARY_MD))?;
    ensure!(md.contains("| raftcache | read | session |"), "summary.md lacks the session read run");
    ensure!(std::fs::metadata(dir.join(report::SUMMARY_SVG))?.len() > 0, "summary.svg is empty");
    println!("smoke: ok ({} measurements)", summary.runs.len());
    Ok(())
}
