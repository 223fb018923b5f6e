//! `summary.md`: the ratio table, the goals at 64 clients, and every run.

use std::fmt::Write;

use super::{peer, peer_consistency, rank};
use crate::record::Record;
use crate::suite::FOCUS_CLIENTS;

fn ops(r: Option<&Record>) -> String {
    r.map_or("—".into(), |r| format!("{:.0}", r.ops_per_sec))
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn p99(r: Option<&Record>) -> String {
    r.map_or("—".into(), |r| ms(r.p99_us))
}

fn ratio(a: f64, b: Option<&Record>) -> Option<f64> {
    b.filter(|b| b.ops_per_sec > 0.0).map(|b| a / b.ops_per_sec)
}

fn times(x: Option<f64>) -> String {
    x.map_or("—".into(), |x| if x >= 10.0 { format!("{x:.0}×") } else { format!("{x:.2}×") })
}

/// Records sorted for reading: workload, keys, consistency, clients.
fn sorted<'a>(runs: impl Iterator<Item = &'a Record>) -> Vec<&'a Record> {
    let mut v: Vec<&Record> = runs.collect();
    v.sort_by_key(|r| (rank(&r.workload), rank(&r.keys), rank(&r.consistency), r.clients, r.value_bytes));
    v
}

/// The markdown table of every raftcache record next to its etcd and Redis peers, with the
/// throughput ratios raftcache/etcd and raftcache/Redis.
pub fn ratio_table(runs: &[Record]) -> String {
    let mut s = String::new();
    s.push_str(
        "| workload | keys | consistency | clients | raftcache ops/s | p99 ms | etcd ops/s | p99 ms | raftcache/etcd | \
         Redis ops/s | p99 ms | raftcache/Redis |\n",
    );
    s.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut serializable = false;
    for r in sorted(runs.iter().filter(|r| r.system == "raftcache")) {
        let etcd_level = peer_consistency("etcd", &r.consistency);
        let etcd = peer(runs, r, "etcd", etcd_level);
        let redis = peer(runs, r, "redis", "n/a");
        let mark = if etcd.is_some() && etcd_level == "eventual" {
            serializable = true;
            " †"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} | {} | {}{mark} | {} | {} | {} | {} | {} |",
            r.workload,
            r.keys,
            r.consistency,
            r.clients,
            r.ops_per_sec,
            ms(r.p99_us),
            ops(etcd),
            p99(etcd),
            times(ratio(r.ops_per_sec, etcd)),
            ops(redis),
            p99(redis),
            times(ratio(r.ops_per_sec, redis)),
        );
    }
    if serializable {
        s.push_str(
            "\n† etcd serializable reads (member-local, no staleness bound): etcd's only non-linearizable read.\n",
        );
    }
    s
}

/// The goals at [`FOCUS_CLIENTS`] clients, uniform keys.
fn goals(runs: &[Record]) -> String {
    let find = |system: &str, workload: &str, consistency: &str| {
        runs.iter().rev().find(|r| {
            r.system == system
                && r.workload == workload
                && r.consistency == consistency
                && r.keys == "uniform"
                && r.clients == FOCUS_CLIENTS
        })
    };
    let verdict = |met: Option<bool>| match met {
        Some(true) => "yes",
        Some(false) => "no",
        None => "not measured",
    };
    let mut s = format!(
        "| goal ({FOCUS_CLIENTS} clients, uniform keys) | raftcache | peer | ratio | target | met |\n|---|---:|---:|---:|---|---|\n"
    );
    let throughput = [
        ("linearizable writes/s vs etcd writes/s", "write", "n/a", "etcd", "n/a", 10.0),
        ("linearizable reads/s vs etcd linearizable reads/s", "read", "linearizable", "etcd", "linearizable", 5.0),
        ("eventual reads/s vs Redis GET/s", "read", "eventual", "redis", "n/a", 0.5),
    ];
    for (name, workload, level, peer_system, peer_level, target) in throughput {
        let (ours, theirs) = (find("raftcache", workload, level), find(peer_system, workload, peer_level));
        let x = ours.and_then(|o| ratio(o.ops_per_sec, theirs));
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | ≥ {target}× | {} |",
            ops(ours),
            ops(theirs),
            times(x),
            verdict(x.map(|x| x >= target))
        );
    }
    let (ours, theirs) = (find("raftcache", "write", "n/a"), find("etcd", "write", "n/a"));
    let met = ours.zip(theirs).map(|(o, t)| o.p99_us <= t.p99_us);
    let _ =
        writeln!(s, "| write p99 (ms) vs etcd's | {} | {} | — | ≤ etcd | {} |", p99(ours), p99(theirs), verdict(met));
    s
}

/// All of `summary.md`.
pub fn markdown(runs: &[Record]) -> String {
    let mut s = String::from("# raftcache benchmark: raftcache, etcd and Redis in one run\n\n");
    let value_sizes: std::collections::BTreeSet<usize> = runs.iter().map(|r| r.value_bytes).collect();
    let _ = writeln!(
        s,
        "Closed loop, one operation in flight per client, no pipelining; values of {} bytes. \
         raftcache: 3 nodes, fsync, through the SDK. etcd: 3 members on loopback, default fsync. \
         Redis: one server, no persistence, one connection per client. Ratios are ops/s.\n",
        value_sizes.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
    );
    s.push_str("## raftcache against etcd and Redis\n\n");
    s.push_str(&ratio_table(runs));
    s.push_str("\n## Goals (issue 4)\n\n");
    s.push_str(&goals(runs));
    s.push_str("\n## Every run\n\n");
    s.push_str(
        "Machine CPU per op: busy CPU time of the whole machine (every process, the load generator \
         included) over the window, per successful operation.\n\n",
    );
    s.push_str(
        "| system | workload | consistency | keys | clients | value bytes | ops/s | p50 ms | p99 ms | p99.9 ms | errors | machine CPU µs/op |\n",
    );
    s.push_str("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let mut all = sorted(runs.iter());
    all.sort_by_key(|r| rank_system(&r.system));
    for r in all {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.system,
            r.workload,
            r.consistency,
            r.keys,
            r.clients,
            r.value_bytes,
            r.ops_per_sec,
            ms(r.p50_us),
            ms(r.p99_us),
            ms(r.p999_us),
            r.errors,
            r.cpu_us_per_op.map_or("—".into(), |c| format!("{c:.0}"))
        );
    }
    s
}

fn rank_system(s: &str) -> usize {
    ["raftcache", "etcd", "redis"].iter().position(|n| *n == s).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(system: &str, workload: &str, consistency: &str, clients: usize, ops: f64, p99: u64) -> Record {
        crate::record::test_record(system, workload, consistency, clients, ops, p99)
    }

    fn row<'a>(table: &'a str, starts: &str) -> &'a str {
        table.lines().find(|l| l.starts_with(starts)).unwrap_or_else(|| panic!("no row {starts:?} in\n{table}"))
    }

    #[test]
    fn ratios_pair_each_raftcache_run_with_its_peers() {
        let runs = vec![
            rec("raftcache", "write", "n/a", 64, 30_000.0, 4_000),
            rec("etcd", "write", "n/a", 64, 3_000.0, 40_000),
            rec("redis", "write", "n/a", 64, 60_000.0, 2_000),
            rec("etcd", "write", "n/a", 16, 1.0, 1),
            rec("raftcache", "read", "session", 64, 40_000.0, 3_000),
            rec("etcd", "read", "linearizable", 64, 1.0, 1),
            rec("etcd", "read", "eventual", 64, 8_000.0, 9_000),
            rec("raftcache", "read", "follower", 64, 20_000.0, 3_000),
        ];
        let t = ratio_table(&runs);
        let w = row(&t, "| write | uniform | n/a | 64 |");
        assert_eq!(w, "| write | uniform | n/a | 64 | 30000 | 4.00 | 3000 | 40.00 | 10× | 60000 | 2.00 | 0.50× |");
        // session compares with etcd's serializable read, marked; follower with linearizable.
        let s = row(&t, "| read | uniform | session | 64 |");
        assert!(s.contains("| 8000 † | 9.00 | 5.00× | — | — | — |"), "{s}");
        let f = row(&t, "| read | uniform | follower | 64 |");
        assert!(f.contains("| 1 | 0.00 | 20000× |"), "{f}");
        assert!(t.contains("† etcd serializable"), "{t}");
        assert_eq!(t.lines().filter(|l| l.starts_with("| write")).count(), 1, "{t}");
    }

    #[test]
    fn goals_say_met_missed_or_not_measured() {
        let runs = vec![
            rec("raftcache", "write", "n/a", 64, 30_000.0, 50_000),
            rec("etcd", "write", "n/a", 64, 2_000.0, 40_000),
            rec("raftcache", "read", "linearizable", 64, 9_000.0, 1_000),
            rec("etcd", "read", "linearizable", 64, 2_000.0, 1_000),
        ];
        let g = goals(&runs);
        assert!(row(&g, "| linearizable writes/s").ends_with("| 15× | ≥ 10× | yes |"), "{g}");
        assert!(row(&g, "| linearizable reads/s").ends_with("| 4.50× | ≥ 5× | no |"), "{g}");
        assert!(row(&g, "| eventual reads/s").ends_with("| not measured |"), "{g}");
        assert!(row(&g, "| write p99").ends_with("| 50.00 | 40.00 | — | ≤ etcd | no |"), "{g}");
    }

    #[test]
    fn markdown_lists_every_run() {
        let mut runs =
            vec![rec("redis", "read", "n/a", 1, 100.0, 10), rec("raftcache", "read", "eventual", 1, 50.0, 20)];
        runs[1].cpu_us_per_op = Some(41.4);
        let md = markdown(&runs);
        assert!(row(&md, "| redis | read |").ends_with("| 0 | — |"), "{md}");
        assert!(row(&md, "| raftcache | read |").ends_with("| 0 | 41 |"), "{md}");
        assert!(md.contains("values of 256 bytes."), "{md}");
        assert!(md.contains("| redis | read | n/a | uniform | 1 | 256 | 100 |"), "{md}");
        assert!(md.contains("| raftcache | read | eventual | uniform | 1 | 256 | 50 |"), "{md}");
        assert!(row(&md, "| read | uniform | eventual | 1 |").ends_with("| 100 | 0.01 | 0.50× |"), "{md}");
    }
}
