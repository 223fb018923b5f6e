//! The `raftcache` binary: `raftcache serve` runs a node, `raftcache ctl` talks to a cluster.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raftcache_server::config::ServeArgs;
use raftcache_server::ctl::{self, CtlArgs};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "raftcache", version, about = "A Raft-replicated, consistent cache cluster")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (with no flags: a single-node cluster on 127.0.0.1:7379).
    Serve(ServeArgs),
    /// Command-line client.
    Ctl(CtlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match cli.command {
        Some(Command::Ctl(args)) => runtime.block_on(ctl::run(args)),
        Some(Command::Serve(args)) => serve(&runtime, args),
        None => {
            eprintln!("usage: raftcache serve [FLAGS] | raftcache ctl [--endpoints A,B] COMMAND (see --help)");
            ExitCode::from(2)
        }
    }
}

fn serve(runtime: &tokio::runtime::Runtime, args: ServeArgs) -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    match runtime.block_on(raftcache_server::node::serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
