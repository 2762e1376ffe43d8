//! `edge-fleet`: runs fleets of real `bocluster node` processes on loopback addresses and
//! measures how membership behaves: convergence, crash detection, clean leave.
//!
//! Timing goals live here, not in tests: a noisy machine makes a figure worse, never a test
//! flaky.

mod cluster;
mod liveness;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "edge-fleet",
    about = "Run and measure fleets of bocluster nodes on this machine"
)]
struct Cli {
    /// The bocluster binary to run [default: target/release/bocluster of this workspace]
    #[arg(long, global = true)]
    bin: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convergence, SIGKILL-to-dead and SIGTERM-to-left times, over several runs
    Liveness(liveness::LivenessArgs),
    /// Master-defined cluster timings (ADD CLIENT, BO_MASTER, SIGKILL, master restart,
    /// SHOW CLUSTER with many entries)
    Cluster(cluster::ClusterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let bin = cli.bin.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/bocluster")
    });
    if !bin.exists() {
        eprintln!(
            "edge-fleet: {} not found; build it with `cargo build --release` or pass --bin",
            bin.display()
        );
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Liveness(args) => liveness::run(&bin, &args),
        Command::Cluster(args) => cluster::run(&bin, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-fleet: {e}");
            ExitCode::FAILURE
        }
    }
}
