//! `raftcache ctl`: a command-line client built on the SDK.
//!
//! Exit codes: 0 ok; 1 not found, condition failed or fenced (the message says which); 2 usage
//! or invalid argument; 3 unavailable (no leader within the deadline, no node reachable).

mod get;
mod status;
mod write;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use raftcache_client::{Client, ClientOptions, Error};

/// Flags shared by every `ctl` command.
#[derive(Clone, Debug, Args)]
pub struct CtlArgs {
    /// Comma-separated node addresses (any node will do).
    #[arg(long, env = "RAFTCACHE_ENDPOINTS", default_value = "127.0.0.1:7379", value_delimiter = ',', global = true)]
    pub endpoints: Vec<String>,
    /// Deadline of each operation, retries included (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub timeout: Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// Consistency level of a `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    /// Leader after ReadIndex.
    Linearizable,
    /// A follower after fetching the leader's read index.
    Follower,
    /// A replica that applied at least --min-index.
    Session,
    /// A replica that heard from a leader within --max-staleness-ms.
    Eventual,
}

/// The `ctl` commands.
#[derive(Clone, Debug, Subcommand)]
pub enum CtlCommand {
    /// Print a key's value.
    Get(get::GetArgs),
    /// Store a value; prints the new version.
    Set(write::SetArgs),
    /// Delete a key; prints the delete's version.
    Del(write::KeyArgs),
    /// Delete a key and fence it against stale conditional writes; prints the fence.
    Invalidate(write::KeyArgs),
    /// Print every group's leader, term and replicas with their applied index.
    Status(status::StatusArgs),
    /// Wait until every group has a leader.
    WaitReady(status::WaitArgs),
}

/// Runs a `ctl` command and returns its exit code.
pub async fn run(args: CtlArgs) -> ExitCode {
    let opts = ClientOptions { timeout: args.timeout, ..ClientOptions::default() };
    if let CtlCommand::WaitReady(w) = &args.command {
        return status::wait_ready(&args.endpoints, opts, w).await;
    }
    let client = match Client::connect_with(args.endpoints.clone(), opts).await {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let res = match args.command {
        CtlCommand::Get(a) => get::run(&client, a).await,
        CtlCommand::Set(a) => write::set(&client, a).await,
        CtlCommand::Del(a) => write::del(&client, a).await,
        CtlCommand::Invalidate(a) => write::invalidate(&client, a).await,
        CtlCommand::Status(a) => status::run(&client, a).await,
        CtlCommand::WaitReady(_) => unreachable!("handled above"),
    };
    match res {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

/// Prints `e` and maps it to the exit code.
pub fn fail(e: &Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(match e {
        Error::ConditionFailed { .. } | Error::Fenced { .. } | Error::DuplicateTooOld => 1,
        Error::InvalidArgument(_) | Error::Config(_) => 2,
        Error::Unavailable(_) | Error::DeadlineExceeded(_) | Error::ResourceExhausted(_) => 3,
        Error::Server { .. } => 1,
    })
}
