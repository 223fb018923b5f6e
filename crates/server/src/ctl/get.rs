use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use raftcache_client::{Client, Consistency, Result};

use super::ConsistencyArg;

/// `ctl get`.
#[derive(Clone, Debug, Args)]
pub struct GetArgs {
    /// Namespace.
    pub ns: String,
    /// Key.
    pub key: String,
    /// Consistency level.
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    /// SESSION: lowest applied index the serving replica may have (a write's applied index).
    #[arg(long, default_value_t = 0)]
    pub min_index: u64,
    /// EVENTUAL: staleness bound in ms.
    #[arg(long, default_value_t = 5_000)]
    pub max_staleness_ms: u64,
    /// Print JSON: {"value","version","group","applied_index","served_by"}.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: &Client, a: GetArgs) -> Result<ExitCode> {
    let consistency = match a.consistency {
        ConsistencyArg::Linearizable => Consistency::Linearizable,
        ConsistencyArg::Follower => Consistency::FollowerLinearizable,
        ConsistencyArg::Session => Consistency::Session { min_index: a.min_index },
        ConsistencyArg::Eventual => Consistency::Eventual { max_staleness: Duration::from_millis(a.max_staleness_ms) },
    };
    let r = client.get_with(&a.ns, a.key.as_bytes(), consistency).await?;
    if a.json {
        let v = serde_json::json!({
            "value": r.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()),
            "version": r.version,
            "group": r.group,
            "applied_index": r.applied_index,
            "served_by": r.served_by,
        });
        println!("{v}");
    }
    match r.value {
        Some(v) => {
            if !a.json {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&v);
                let _ = out.write_all(b"\n");
            }
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("not found: {}/{} (version {})", a.ns, a.key, r.version);
            Ok(ExitCode::from(1))
        }
    }
}
