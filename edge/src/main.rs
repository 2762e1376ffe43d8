//! `edge-fleet`: runs fleets of real `bocluster node` processes on loopback addresses and
//! measures how membership behaves: convergence, crash detection, clean leave, and the same
//! scenarios against HashiCorp Serf side by side (`compare`), or N nodes in one process
//! (`scale`).
//!
//! Timing goals live here, not in tests: a noisy machine makes a figure worse, never a test
//! flaky.

mod chaos;
mod churn;
mod cluster;
mod compare;
mod liveness;
mod netns;
mod plot;
mod procfs;
mod reports;
mod runs;
mod scale;
mod serf;
mod sim;
mod sim_bench;
mod sim_fleet;
mod stats;
mod systems;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// mimalloc: `sim` holds ~10^8 small allocations at 10,000 nodes (node ids of a few bytes
/// take 8 bytes here, 32 with glibc's allocator), and gives freed memory back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "edge-fleet",
    about = "Run and measure fleets of bocluster nodes on this machine"
)]
struct Cli {
    /// The bocluster binary to run [default: target/release/bocluster of this workspace]
    #[arg(long, global = true)]
    bin: Option<PathBuf>,
    /// Run in a private network namespace of its own (needs root): nodes, and every
    /// connection to them, live there, apart from anything else on this machine's loopback.
    /// `compare` and `scale` always try to (it is where they count bytes with iptables).
    #[arg(long, global = true)]
    netns: bool,
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
    /// bocluster and HashiCorp Serf side by side: join, failure detection, convergence,
    /// false positives, bandwidth, memory and CPU at each fleet size, with ratios
    Compare(compare::CompareArgs),
    /// N real nodes in this one process (real QUIC on 127.1.x.y): convergence, memory, CPU,
    /// gossip bytes and change propagation as N grows
    Scale(scale::ScaleArgs),
    /// N membership engines in this process on virtual time, over a simulated network,
    /// through a fault schedule (same seed, same figures); `--check`/`--soak` run the
    /// property checks on random schedules
    Sim(sim_fleet::SimArgs),
    /// Draw the PNG charts again from JSON reports of `compare --out` and `scale --out`
    Plot(PlotArgs),
    /// Everything BENCHMARKS.md shows: `compare` then `scale`, reports, tables and charts
    /// into one folder
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Where compare.json/.md, scale.json/.md and the PNG charts go
    #[arg(long, value_name = "DIR", default_value = "bench-results")]
    dir: PathBuf,
    /// Fleet sizes for `compare`
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    sizes: Vec<usize>,
    /// Runs per size for `compare`
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Steady window of `compare` (the figure is 5m)
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    steady: std::time::Duration,
    /// Also run `compare --churn` (kill/restart 10 %, partition/heal, address change, packet
    /// loss, bandwidth under churn)
    #[arg(long)]
    churn: bool,
    /// The packet-loss window of --churn
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    loss_window: std::time::Duration,
    /// In-process sizes for `scale`
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    scale_sizes: Vec<usize>,
    /// Convergence limit of each `scale` size
    #[arg(long, default_value = "400s", value_parser = humantime::parse_duration)]
    scale_limit: std::time::Duration,
    /// BO_PROBE_INTERVAL of the in-process nodes of `scale` (`auto`: see `scale --help`)
    #[arg(long, value_name = "DURATION|auto", default_value = "auto")]
    scale_gossip_interval: String,
}

#[derive(Debug, Args)]
struct PlotArgs {
    /// A `compare --out` report
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    /// A `scale --out` report
    #[arg(long, value_name = "FILE")]
    scale: Option<PathBuf>,
    /// `sim --bench --out` reports (comma-separated; merged into one chart)
    #[arg(long, value_name = "FILE", value_delimiter = ',')]
    sim: Vec<PathBuf>,
    /// Where the PNG files go
    #[arg(long, value_name = "DIR", default_value = "bench-results")]
    dir: PathBuf,
}

/// Enters a private network namespace; for `compare` and `scale` a failure only means no
/// byte counting (returns whether counting is possible there).
fn namespace(required: bool, counting: bool) -> Result<bool, String> {
    if !nix::unistd::geteuid().is_root() {
        if required {
            return Err("--netns needs root".into());
        }
        return Ok(false);
    }
    match netns::enter_private_netns() {
        Ok(()) => {
            eprintln!("edge-fleet: running in a private network namespace");
            Ok(counting && netns::run_cmd("iptables", &["-L", "OUTPUT", "-n"]).is_ok())
        }
        Err(e) if required => Err(e),
        Err(e) => {
            eprintln!("edge-fleet: NOTICE: cannot enter a private network namespace ({e})");
            Ok(false)
        }
    }
}

/// Makes Ctrl-C, SIGTERM and SIGHUP stop the node processes and Serf agents this harness
/// started before it exits: without it, an interrupted run leaves its fleet running.
/// The signals are blocked in every thread (those started later inherit the mask; the
/// processes it spawns do not: std resets the mask in a child) and taken by one thread.
fn stop_children_on_signal() {
    use nix::sys::signal::{kill, SigSet, Signal};
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(signal);
    }
    if signals.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if let Ok(signal) = signals.wait() {
            eprintln!("edge-fleet: {signal}: stopping the processes it started");
            for pid in procfs::children_of(std::process::id()) {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                let _ = kill(pid, Signal::SIGKILL);
            }
            std::process::exit(130);
        }
    });
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    stop_children_on_signal();
    let bin = cli.bin.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/bocluster")
    });
    let needs_bin = matches!(
        cli.command,
        Command::Liveness(_) | Command::Cluster(_) | Command::Compare(_) | Command::Bench(_)
    );
    if needs_bin && !bin.exists() {
        eprintln!(
            "edge-fleet: {} not found; build it with `cargo build --release` or pass --bin",
            bin.display()
        );
        return ExitCode::from(2);
    }
    // Before any other thread starts: threads (tokio's workers included) and child processes
    // inherit the namespace of the thread that creates them.
    let measuring = matches!(
        cli.command,
        Command::Compare(_) | Command::Scale(_) | Command::Bench(_)
    );
    // Serf is installed (if missing) before the private namespace is entered: in there,
    // the package mirror cannot be reached.
    let wants_serf = match &cli.command {
        Command::Compare(args) => !args.no_serf,
        Command::Bench(_) => true,
        _ => false,
    };
    if wants_serf {
        if let Err(e) = serf::locate_or_install() {
            eprintln!("edge-fleet: NOTICE: {e}");
        }
    }
    let counting = if measuring || cli.netns {
        match namespace(cli.netns, measuring) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("edge-fleet: --netns: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        false
    };
    let result = match cli.command {
        Command::Liveness(args) => liveness::run(&bin, &args),
        Command::Cluster(args) => cluster::run(&bin, &args),
        Command::Compare(args) => compare::run(&bin, &args, counting),
        Command::Scale(args) => scale::run(&args, counting),
        Command::Sim(args) => sim::run(&args),
        Command::Plot(args) => plot_again(&args),
        Command::Bench(args) => bench(&bin, &args, counting),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-fleet: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(bin: &std::path::Path, args: &BenchArgs, counting: bool) -> Result<(), String> {
    let compare = compare::CompareArgs {
        sizes: args.sizes.clone(),
        runs: args.runs,
        steady: args.steady,
        out: Some(args.dir.join("compare.json")),
        plots: Some(args.dir.clone()),
        serf_cli: false,
        no_serf: false,
        churn: args.churn,
        loss_window: args.loss_window,
        pause: churn::PAUSE,
        form_limit: runs::FORM_LIMIT,
    };
    compare::run(bin, &compare, counting)?;
    let scale = scale::ScaleArgs {
        sizes: args.scale_sizes.clone(),
        limit: args.scale_limit,
        steady: std::time::Duration::from_secs(20),
        stop_at_failure: false,
        max_rss_mib: 8192,
        gossip_interval: Some(args.scale_gossip_interval.clone()),
        suspect_timeout: None,
        transport: reports::scale::ScaleTransport::Memory,
        loss: 0.0,
        out: Some(args.dir.join("scale.json")),
        plots: Some(args.dir.clone()),
    };
    scale::run(&scale, counting)
}

fn plot_again(args: &PlotArgs) -> Result<(), String> {
    if args.compare.is_none() && args.scale.is_none() && args.sim.is_empty() {
        return Err("plot: give --compare FILE, --scale FILE and/or --sim FILE,...".into());
    }
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut files = Vec::new();
    if let Some(path) = &args.compare {
        let report: reports::compare::CompareReport =
            serde_json::from_str(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
        files.extend(plot::plot_compare(&report, &args.dir)?);
    }
    if let Some(path) = &args.scale {
        let report: reports::scale::ScaleReport =
            serde_json::from_str(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
        files.extend(plot::plot_scale(&report, &args.dir)?);
    }
    if !args.sim.is_empty() {
        let mut reports = Vec::new();
        for path in &args.sim {
            let report: reports::sim::BenchReport = serde_json::from_str(&read(path)?)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            reports.push(report);
        }
        files.extend(plot::plot_sim(&reports, &args.dir)?);
    }
    for f in files {
        eprintln!("plot: wrote {}", f.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compare_args(line: &[&str]) -> compare::CompareArgs {
        let argv = ["edge-fleet", "compare"].iter().chain(line);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Compare(args),
                ..
            }) => args,
            Ok(_) => panic!("{line:?} parsed as another subcommand"),
            Err(e) => panic!("{line:?}: {e}"),
        }
    }

    /// `--form-limit` defaults to the limit `bench` uses, and takes a human duration.
    #[test]
    fn compare_takes_a_formation_limit() {
        assert_eq!(compare_args(&[]).form_limit, runs::FORM_LIMIT);
        let longer = compare_args(&["--sizes", "200", "--form-limit", "10m"]);
        assert_eq!(longer.form_limit, std::time::Duration::from_secs(600));
        assert_eq!(longer.sizes, vec![200]);
        assert!(Cli::try_parse_from(["edge-fleet", "compare", "--form-limit", "soon"]).is_err());
    }
}
