//! `raftcache-bench suite`: the same workloads against each system in one run, one record per
//! measurement in `OUT/summary.json` (rewritten after every measurement, so an interrupted run
//! keeps what it measured), then the report (`summary.md`, `summary.svg`). With `--append` it adds
//! to an existing summary: scripts/bench.sh measures one system at a time, with the others
//! stopped, so an idle cluster's heartbeats never run alongside another system's load.
//!
//! The systems must be running already (scripts/bench.sh starts them). Per system: wait until it
//! answers, run the write workloads, load the key space once, then run the read and mixed
//! workloads (mixed writes rewrite keys with values of the same size, so the space stays loaded).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;

use crate::adapter::{Adapter, Level, System};
use crate::load::{self, Spec};
use crate::record::Summary;
use crate::report::{self, SUMMARY_JSON};
use crate::workload::{KeyDist, Mix};

/// Client counts of a full run (the plot's x axis).
pub const FULL_CLIENTS: [usize; 4] = [1, 16, 64, 256];
/// Client counts of `--quick`.
pub const QUICK_CLIENTS: [usize; 3] = [1, 16, 64];
/// The client count the Zipf workloads (and the goals) use.
pub const FOCUS_CLIENTS: usize = 64;

/// `raftcache-bench suite`.
#[derive(Clone, Debug, Args)]
pub struct SuiteArgs {
    /// Where summary.json, summary.md and summary.svg go (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Systems to measure, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [System::Raftcache, System::Etcd, System::Redis])]
    pub systems: Vec<System>,
    /// raftcache endpoints (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub raftcache: Vec<String>,
    /// etcd client endpoints (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// The Redis server, host:port.
    #[arg(long)]
    pub redis: Option<String>,
    /// A ~3-minute subset: fewer client counts and levels, shorter windows.
    #[arg(long)]
    pub quick: bool,
    /// Client counts (default 1,16,64,256; --quick 1,16,64).
    #[arg(long, value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Measured time per workload (default 10s; --quick 3s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Warm-up per workload (default 2s; --quick 1s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub warmup: Option<Duration>,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// Add to OUT/summary.json instead of starting a new one (to measure one system at a time,
    /// each alone on the machine, into one summary).
    #[arg(long)]
    pub append: bool,
    /// Only write summary.json; make the report later with `raftcache-bench report OUT`.
    #[arg(long)]
    pub no_report: bool,
    /// How long to wait for each system to answer before giving up.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub ready_timeout: Duration,
}

/// The read levels a system is measured at: every level it has, or in a quick run the strictest
/// and the loosest.
fn levels(system: System, quick: bool) -> Vec<Option<Level>> {
    match (system, quick) {
        (System::Redis, _) => vec![None],
        (System::Raftcache, false) => Level::ALL.iter().copied().map(Some).collect(),
        (System::Raftcache | System::Etcd, _) => vec![Some(Level::Linearizable), Some(Level::Eventual)],
    }
}

/// The measurements of one system: writes first, then reads and mixed (which need the key space
/// loaded). `template` gives the sizes and windows.
pub fn plan(system: System, quick: bool, clients: &[usize], template: &Spec) -> (Vec<Spec>, Vec<Spec>) {
    let focus =
        if clients.contains(&FOCUS_CLIENTS) { FOCUS_CLIENTS } else { clients.iter().copied().max().unwrap_or(1) };
    let default_level = system.read_level(None).expect("every system has a default level");
    let spec = |workload, keys, clients, level| Spec { system, workload, keys, clients, level, ..template.clone() };
    let mut writes: Vec<Spec> = clients.iter().map(|&c| spec(Mix::Write, KeyDist::Uniform, c, default_level)).collect();
    writes.push(spec(Mix::Write, KeyDist::Zipf, focus, default_level));
    let mut reads = Vec::new();
    for &c in clients {
        for l in levels(system, quick) {
            reads.push(spec(Mix::Read, KeyDist::Uniform, c, l));
            if !quick {
                reads.push(spec(Mix::Mixed, KeyDist::Uniform, c, l));
            }
        }
        if quick {
            reads.push(spec(Mix::Mixed, KeyDist::Uniform, c, default_level));
        }
    }
    if quick {
        if system == System::Raftcache {
            for l in [Level::Follower, Level::Session] {
                reads.push(spec(Mix::Read, KeyDist::Uniform, focus, Some(l)));
            }
        }
        reads.push(spec(Mix::Read, KeyDist::Zipf, focus, default_level));
    } else {
        for l in levels(system, quick) {
            reads.push(spec(Mix::Read, KeyDist::Zipf, focus, l));
            reads.push(spec(Mix::Mixed, KeyDist::Zipf, focus, l));
        }
    }
    (writes, reads)
}

/// Waits until `system` stores and returns a probe key.
async fn wait_ready(system: System, endpoints: &[String], timeout: Duration) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let value = Bytes::from_static(b"probe");
    let mut last;
    loop {
        let attempt = async {
            let mut a = Adapter::connect(system, endpoints, system.read_level(None)?).await?;
            a.set("bench-probe", &value).await?;
            anyhow::ensure!(a.get("bench-probe").await?, "the probe key was written but not found");
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(5), attempt).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = format!("{e:#}"),
            Err(_) => last = "no answer within 5 s".into(),
        }
        if t0.elapsed() >= timeout {
            bail!("{} at {} did not answer within {timeout:?}: {last}", system.name(), endpoints.join(","));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `raftcache-bench suite`.
pub async fn run(a: SuiteArgs) -> anyhow::Result<()> {
    if a.systems.is_empty() {
        bail!("--systems is empty");
    }
    if a.systems.contains(&System::Etcd) && !crate::adapter::ETCD_BUILT_IN {
        bail!("etcd is in --systems but this raftcache-bench was built without the etcd adapter (--features etcd)");
    }
    let summary_path = a.out.join(SUMMARY_JSON);
    if !a.append && summary_path.exists() {
        bail!("{} exists; pass --append to add to it, or choose another --out", summary_path.display());
    }
    let clients: Vec<usize> = match (a.clients.is_empty(), a.quick) {
        (false, _) => a.clients.clone(),
        (true, false) => FULL_CLIENTS.to_vec(),
        (true, true) => QUICK_CLIENTS.to_vec(),
    };
    let template = Spec {
        system: System::Raftcache,
        workload: Mix::Write,
        keys: KeyDist::Uniform,
        key_space: a.key_space,
        value_bytes: a.value_bytes,
        clients: 1,
        level: None,
        duration: a.duration.unwrap_or(if a.quick { Duration::from_secs(3) } else { Duration::from_secs(10) }),
        warmup: a.warmup.unwrap_or(if a.quick { Duration::from_secs(1) } else { Duration::from_secs(2) }),
    };
    // Check every measurement before running any, so bad input fails at once.
    let mut plans = Vec::new();
    for &system in &a.systems {
        let (writes, reads) = plan(system, a.quick, &clients, &template);
        for s in writes.iter().chain(&reads) {
            s.validate().with_context(|| format!("measurement {}", s.title()))?;
        }
        let endpoints = match system {
            System::Raftcache if !a.raftcache.is_empty() => a.raftcache.clone(),
            System::Etcd if !a.etcd.is_empty() => a.etcd.clone(),
            System::Redis if a.redis.is_some() => a.redis.iter().cloned().collect(),
            _ => system.default_endpoints(),
        };
        plans.push((system, endpoints, writes, reads));
    }
    let total: usize = plans.iter().map(|p| p.2.len() + p.3.len()).sum();
    let per = template.duration + template.warmup;
    eprintln!(
        "{total} measurements of {:?} + {:?} warm-up each: about {} s plus loading",
        template.duration,
        template.warmup,
        total as u64 * per.as_secs()
    );
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut summary =
        if a.append && summary_path.exists() { Summary::load(&summary_path)? } else { Summary::default() };
    let mut n = 0;
    for (system, endpoints, writes, reads) in plans {
        eprintln!("== {} at {}", system.name(), endpoints.join(","));
        wait_ready(system, &endpoints, a.ready_timeout).await?;
        for (i, spec) in writes.iter().chain(&reads).enumerate() {
            if i == writes.len() {
                let preload = Spec { clients: FOCUS_CLIENTS, ..spec.clone() };
                let adapters = load::connect(&preload, &endpoints).await?;
                load::preload(&adapters, a.key_space, a.value_bytes, preload.clients).await?;
            }
            n += 1;
            eprintln!("[{n}/{total}] {}", spec.title());
            let adapters =
                load::connect(spec, &endpoints).await.with_context(|| format!("connecting for {}", spec.title()))?;
            let out = load::measure(spec, &adapters).await?;
            load::report_outcome(&out);
            summary.runs.push(out.record);
            summary.save(&summary_path)?;
        }
    }
    if !a.no_report {
        report::write(&a.out, &summary)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Spec {
        Spec {
            system: System::Raftcache,
            workload: Mix::Write,
            keys: KeyDist::Uniform,
            key_space: 10_000,
            value_bytes: 256,
            clients: 1,
            level: None,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
        }
    }

    #[test]
    fn full_plan_covers_every_level_workload_and_client_count() {
        let (writes, reads) = plan(System::Raftcache, false, &FULL_CLIENTS, &template());
        assert!(writes.iter().all(|s| s.workload == Mix::Write));
        assert!(reads.iter().all(|s| s.workload != Mix::Write));
        for c in FULL_CLIENTS {
            assert!(writes.iter().any(|s| s.clients == c && s.keys == KeyDist::Uniform));
            for l in Level::ALL {
                for w in [Mix::Read, Mix::Mixed] {
                    assert!(reads.iter().any(|s| s.clients == c && s.level == Some(l) && s.workload == w));
                }
            }
        }
        assert!(reads.iter().any(|s| s.keys == KeyDist::Zipf && s.clients == FOCUS_CLIENTS));
        for s in writes.iter().chain(&reads) {
            s.validate().unwrap();
        }
    }

    #[test]
    fn every_planned_measurement_is_one_the_system_supports() {
        for quick in [false, true] {
            for system in [System::Raftcache, System::Etcd, System::Redis] {
                let (w, r) = plan(system, quick, &[1, 64], &template());
                for s in w.iter().chain(&r) {
                    assert_eq!(s.system, system);
                    s.validate().unwrap_or_else(|e| panic!("{}: {e}", s.title()));
                }
            }
        }
        let (_, r) = plan(System::Redis, false, &[1], &template());
        assert!(r.iter().all(|s| s.labels().consistency == "n/a"));
    }

    #[test]
    fn quick_plan_fits_about_three_minutes() {
        let t = Spec { duration: Duration::from_secs(3), warmup: Duration::from_secs(1), ..template() };
        let secs: u64 = [System::Raftcache, System::Etcd, System::Redis]
            .into_iter()
            .map(|s| {
                let (w, r) = plan(s, true, &QUICK_CLIENTS, &t);
                (w.len() + r.len()) as u64 * 4
            })
            .sum();
        assert!((120..=200).contains(&secs), "quick run measures for {secs} s");
        let (_, r) = plan(System::Raftcache, true, &QUICK_CLIENTS, &t);
        for l in Level::ALL {
            assert!(r.iter().any(|s| s.level == Some(l) && s.clients == FOCUS_CLIENTS), "{l:?} missing");
        }
    }
}
