use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use raftcache_client::{Client, Condition, Result, SetOptions};

/// `ctl set`.
#[derive(Clone, Debug, Args)]
pub struct SetArgs {
    /// Namespace.
    pub ns: String,
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// Time to live, e.g. 30s, 5m, 1h.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Option<Duration>,
    /// Only if the key has no live value.
    #[arg(long, conflicts_with = "if_version")]
    pub if_absent: bool,
    /// Only if the key's current version is V (fenced if an invalidation came after V).
    #[arg(long, value_name = "V")]
    pub if_version: Option<u64>,
}

/// `ctl del` and `ctl invalidate`.
#[derive(Clone, Debug, Args)]
pub struct KeyArgs {
    /// Namespace.
    pub ns: String,
    /// Key.
    pub key: String,
}

pub async fn set(client: &Client, a: SetArgs) -> Result<ExitCode> {
    let condition = match (a.if_absent, a.if_version) {
        (true, _) => Condition::IfAbsent,
        (false, Some(v)) => Condition::IfVersion(v),
        (false, None) => Condition::None,
    };
    let r =
        client.set_with(&a.ns, a.key.as_bytes(), a.value.into_bytes(), SetOptions { ttl: a.ttl, condition }).await?;
    println!("{}", r.version);
    Ok(ExitCode::SUCCESS)
}

pub async fn del(client: &Client, a: KeyArgs) -> Result<ExitCode> {
    let r = client.delete(&a.ns, a.key.as_bytes()).await?;
    println!("{}", r.version);
    if !r.existed {
        eprintln!("not found: {}/{} had no live value", a.ns, a.key);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn invalidate(client: &Client, a: KeyArgs) -> Result<ExitCode> {
    let r = client.invalidate(&a.ns, a.key.as_bytes()).await?;
    println!("{}", r.version);
    Ok(ExitCode::SUCCESS)
}
