//! `raftcache-jepsen-node`: the `raftcache serve` node, always built with the server's
//! `fault-injection` feature (planted bugs, clock skew).
//!
//! The suite runs this binary rather than `target/<profile>/raftcache`, whose features depend on
//! how it was last built (`cargo build -p raftcache-server` builds it without them). Same flags
//! as `raftcache serve`, given after the word `serve`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use raftcache_server::config::ServeArgs;

#[derive(Parser)]
#[command(name = "raftcache-jepsen-node", about = "A raftcache node with the fault-injection controls compiled in")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node (the flags of `raftcache serve`, plus `--bug`).
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    let Command::Serve(args) = Cli::parse().command;
    raftcache_server::node::serve_main(args)
}
