//! The `raftcache` binary: `raftcache serve` runs a node, `raftcache ctl` talks to a cluster.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raftcache_server::config::ServeArgs;
use raftcache_server::ctl::{self, CtlArgs};

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
    match Cli::parse().command {
        Some(Command::Ctl(args)) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(ctl::run(args))
        }
        Some(Command::Serve(args)) => raftcache_server::node::serve_main(args),
        None => {
            eprintln!("usage: raftcache serve [FLAGS] | raftcache ctl [--endpoints A,B] COMMAND (see --help)");
            ExitCode::from(2)
        }
    }
}
