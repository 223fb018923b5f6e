use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use raftcache_client::{Client, ClientOptions, GroupStatus, Result, StatusResponse};

/// `ctl status`.
#[derive(Clone, Debug, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ctl wait-ready`.
#[derive(Clone, Debug, Args)]
pub struct WaitArgs {
    /// Give up after this long (exit 3).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// One group as the cluster reports it.
struct GroupView {
    leader: u64,
    term: u64,
    replicas: Vec<(u64, Option<GroupStatus>)>,
    /// Whether a leader reports a recent quorum acknowledgement.
    healthy: bool,
}

fn groups_view(nodes: &[(u64, String, Result<StatusResponse>)]) -> BTreeMap<u64, GroupView> {
    let mut by_group: BTreeMap<u64, Vec<(u64, GroupStatus)>> = BTreeMap::new();
    let mut replicas: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (id, _, s) in nodes {
        if let Ok(s) = s {
            for g in &s.groups {
                by_group.entry(g.group).or_default().push((*id, g.clone()));
                replicas.entry(g.group).or_insert_with(|| g.replicas.clone());
            }
        }
    }
    replicas
        .into_iter()
        .map(|(group, reps)| {
            let reports = by_group.remove(&group).unwrap_or_default();
            let leader_report = reports.iter().filter(|(_, g)| g.role == "leader").max_by_key(|(_, g)| g.term);
            let (leader, term, healthy) = match leader_report {
                Some((id, g)) => (*id, g.term, reps.len() == 1 || g.millis_since_leader.is_some_and(|ms| ms < 1_000)),
                None => (0, reports.iter().map(|(_, g)| g.term).max().unwrap_or(0), false),
            };
            let replicas =
                reps.iter().map(|r| (*r, reports.iter().find(|(id, _)| id == r).map(|(_, g)| g.clone()))).collect();
            (group, GroupView { leader, term, replicas, healthy })
        })
        .collect()
}

pub async fn run(client: &Client, a: StatusArgs) -> Result<ExitCode> {
    let nodes = client.cluster_status().await;
    let groups = groups_view(&nodes);
    if a.json {
        let v = serde_json::json!({
            "nodes": nodes.iter().map(|(id, addr, s)| serde_json::json!({
                "id": id, "addr": addr, "reachable": s.is_ok(),
                "error": s.as_ref().err().map(|e| e.to_string()),
            })).collect::<Vec<_>>(),
            "groups": groups.iter().map(|(gid, g)| serde_json::json!({
                "group": gid, "leader": g.leader, "term": g.term, "healthy": g.healthy,
                "replicas": g.replicas.iter().map(|(id, s)| match s {
                    Some(s) => serde_json::json!({
                        "node": id, "role": s.role, "applied_index": s.applied_index,
                        "last_log_index": s.last_log_index, "snapshot_index": s.snapshot_index,
                        "keys": s.keys, "digest": format!("{:016x}", s.digest),
                    }),
                    None => serde_json::json!({"node": id, "role": "unreachable"}),
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        let mut out = std::io::stdout().lock();
        for (id, addr, s) in &nodes {
            let state = match s {
                Ok(_) => "up".to_owned(),
                Err(e) => format!("UNREACHABLE ({e})"),
            };
            let _ = writeln!(out, "node {id} {addr} {state}");
        }
        let _ = writeln!(out, "{:>5}  {:>6}  {:>5}  replicas (node:role:applied)", "group", "leader", "term");
        for (gid, g) in &groups {
            let leader = if g.leader == 0 { "-".to_owned() } else { g.leader.to_string() };
            let reps: Vec<String> = g
                .replicas
                .iter()
                .map(|(id, s)| match s {
                    Some(s) => format!("{id}:{}:{}", s.role, s.applied_index),
                    None => format!("{id}:unreachable"),
                })
                .collect();
            let _ = writeln!(out, "{gid:>5}  {leader:>6}  {:>5}  {}", g.term, reps.join(" "));
        }
    }
    let all_led = groups.values().all(|g| g.leader != 0);
    Ok(if all_led && !groups.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(3) })
}

pub async fn wait_ready(endpoints: &[String], opts: ClientOptions, a: &WaitArgs) -> ExitCode {
    let start = Instant::now();
    let mut client = None;
    let mut last = String::from("no endpoint answered");
    while start.elapsed() < a.timeout {
        if client.is_none() {
            match Client::connect_with(endpoints.to_vec(), opts.clone()).await {
                Ok(c) => client = Some(c),
                Err(e) => last = e.to_string(),
            }
        }
        if let Some(c) = &client {
            let nodes = c.cluster_status().await;
            let expected = c.topology().map(|t| t.topology.groups.len()).unwrap_or(0);
            let groups = groups_view(&nodes);
            let ready = groups.values().filter(|g| g.leader != 0 && g.healthy).count();
            last = format!("{ready}/{expected} groups have a leader");
            if expected > 0 && ready == expected {
                eprintln!("\rready: {last} ({:.1}s)          ", start.elapsed().as_secs_f64());
                return ExitCode::SUCCESS;
            }
        }
        eprint!("\rwaiting: {last} ({:.1}s)   ", start.elapsed().as_secs_f64());
        let _ = std::io::stderr().flush();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("\nnot ready after {:?}: {last}", a.timeout);
    ExitCode::from(3)
}
