//! The `bocluster` command: `node` runs a node, `sql` sends a statement, `demo` runs a small
//! cluster on this machine, `keygen` prints a new cluster key.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bocluster::cli;
use bocluster::config::NodeArgs;

#[derive(Parser)]
#[command(
    name = "bocluster",
    version,
    about = "Gossip-based, master-defined database clusters for edge fleets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one node until SIGINT/SIGTERM (every flag also reads its BO_* variable)
    Node(Box<NodeArgs>),
    /// Send one statement to a node's HTTP API and print the answer
    Sql(cli::sql::SqlArgs),
    /// Run a small real cluster on loopback addresses until Ctrl-C
    Demo(cli::demo::DemoArgs),
    /// Ask a node's /health (exit 0 when healthy); the container health check
    Health(cli::health::HealthArgs),
    /// Print a new random cluster key for BO_CLUSTER_KEY (32 bytes, base64)
    Keygen(cli::keygen::KeygenArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Node(args) => cli::node::run(*args),
        Command::Sql(args) => cli::sql::run(args),
        Command::Demo(args) => cli::demo::run(args),
        Command::Health(args) => cli::health::run(args),
        Command::Keygen(args) => cli::keygen::run(args),
    };
    ExitCode::from(code)
}
