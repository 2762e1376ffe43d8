//! Convergence, crash detection and clean-leave times of a small fleet, over several runs.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use bocluster::fleet::{node_status, LocalNode, NodeSpec};
use clap::Args;
use serde_json::json;

use crate::stats::Summary;

#[derive(Debug, Args)]
pub struct LivenessArgs {
    /// Nodes per run (2..=200), on 127.0.<block>.1, .2, ...
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=200))]
    pub nodes: u8,
    /// How many runs to take the median over
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Third octet of the loopback addresses used
    #[arg(long, default_value_t = 200)]
    pub block: u8,
    /// Extra BO_* settings for every node, e.g. --env BO_PROBE_INTERVAL=500ms
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Print the results as JSON only
    #[arg(long)]
    pub json: bool,
}

/// Polling period while timing; small against the figures measured (hundreds of ms).
const POLL: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(60);

struct RunResult {
    converge: Duration,
    kill_to_dead: Duration,
    term_to_left: Duration,
}

pub fn run(bin: &Path, args: &LivenessArgs) -> Result<(), String> {
    let mut extra = Vec::new();
    for item in &args.env {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("--env {item:?}: expected KEY=VALUE"))?;
        extra.push((k.to_string(), v.to_string()));
    }
    let mut results = Vec::new();
    for run in 1..=args.runs {
        let result = one_run(bin, args, &extra)?;
        if !args.json {
            eprintln!(
                "run {run}/{}: converge {:.0?}, SIGKILL->dead {:.0?}, SIGTERM->left {:.0?}",
                args.runs, result.converge, result.kill_to_dead, result.term_to_left
            );
        }
        results.push(result);
    }
    let converge = Summary::of(&results.iter().map(|r| r.converge).collect::<Vec<_>>());
    let dead = Summary::of(&results.iter().map(|r| r.kill_to_dead).collect::<Vec<_>>());
    let left = Summary::of(&results.iter().map(|r| r.term_to_left).collect::<Vec<_>>());
    let report = json!({
        "nodes": args.nodes,
        "env": args.env,
        "converge": converge,
        "sigkill_to_dead": dead,
        "sigterm_to_left": left,
    });
    if !args.json {
        println!(
            "\n{} nodes, {} runs ({})",
            args.nodes,
            args.runs,
            if args.env.is_empty() {
                "defaults".to_string()
            } else {
                args.env.join(" ")
            }
        );
        println!(
            "{:<18} {:>10} {:>10} {:>10}",
            "figure", "median", "min", "max"
        );
        for (name, s) in [
            ("converge", &converge),
            ("SIGKILL -> dead", &dead),
            ("SIGTERM -> left", &left),
        ] {
            if let Some(s) = s {
                println!(
                    "{name:<18} {:>8.0}ms {:>8.0}ms {:>8.0}ms",
                    s.median_ms, s.min_ms, s.max_ms
                );
            }
        }
    }
    println!("{report}");
    Ok(())
}

fn one_run(
    bin: &Path,
    args: &LivenessArgs,
    extra: &[(String, String)],
) -> Result<RunResult, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let seed = format!("127.0.{}.1:9091", args.block);
    let start = Instant::now();
    let mut nodes = Vec::new();
    for host in 1..=args.nodes {
        let mut env = vec![
            ("BO_SEEDS".to_string(), seed.clone()),
            ("BO_LOG".to_string(), "warn".to_string()),
        ];
        env.extend(extra.iter().cloned());
        let spec = NodeSpec {
            node_id: format!("edge-{host}"),
            ip: IpAddr::V4(Ipv4Addr::new(127, 0, args.block, host)),
            data_dir: dir.path().join(format!("edge-{host}")),
            env,
        };
        nodes.push(LocalNode::start(bin, spec).map_err(|e| format!("spawn: {e}"))?);
    }
    let expected = nodes.len();
    // Converged: every node sees every node alive.
    let converged = wait_for_poll(LIMIT, || {
        nodes.iter().all(|n| {
            n.query("SHOW NODES").is_ok_and(|rows| {
                rows.len() == expected && rows.iter().all(|r| r["status"] == "alive")
            })
        })
    });
    let converge = converged
        .then(|| start.elapsed())
        .ok_or("the fleet did not converge")?;

    let victim = nodes.len() - 1;
    let leaver = nodes.len() - 2;
    let victim_id = nodes[victim].spec.node_id.clone();
    let leaver_id = nodes[leaver].spec.node_id.clone();

    let killed_at = Instant::now();
    nodes[victim].kill();
    let observer = &nodes[0];
    wait_for_poll(LIMIT, || {
        node_status(observer, &victim_id).as_deref() == Some("dead")
    })
    .then_some(())
    .ok_or("the killed node never became dead")?;
    let kill_to_dead = killed_at.elapsed();

    let termed_at = Instant::now();
    nodes[leaver].signal(nix::sys::signal::Signal::SIGTERM);
    let observer = &nodes[0];
    wait_for_poll(LIMIT, || {
        node_status(observer, &leaver_id).as_deref() == Some("left")
    })
    .then_some(())
    .ok_or("the stopped node never became left")?;
    let term_to_left = termed_at.elapsed();
    Ok(RunResult {
        converge,
        kill_to_dead,
        term_to_left,
    })
}

fn wait_for_poll(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(POLL);
    }
    false
}
