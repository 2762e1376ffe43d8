//! Master-defined cluster timings: ADD CLIENT to alive, BO_MASTER start to alive, client
//! SIGKILL to dead, master restart to a full SHOW CLUSTER, and SHOW CLUSTER's answer time with
//! many entries.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use bocluster::fleet::{node_status, LocalNode, NodeSpec};
use clap::Args;
use serde_json::json;

use crate::stats::Summary;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// How many runs to take the medians over
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Entries for the SHOW CLUSTER answer-time figure (0 skips it)
    #[arg(long, default_value_t = 10_000)]
    pub entries: usize,
    /// Third octet of the loopback addresses used (the next one holds the many entries)
    #[arg(long, default_value_t = 210)]
    pub block: u8,
}

const POLL: Duration = Duration::from_millis(10);
const LIMIT: Duration = Duration::from_secs(60);

fn node(
    bin: &Path,
    dir: &Path,
    block: u8,
    host: u8,
    env: &[(&str, &str)],
) -> Result<LocalNode, String> {
    let mut all_env = vec![("BO_LOG".to_string(), "warn".to_string())];
    all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let spec = NodeSpec {
        node_id: format!("edge-{block}-{host}"),
        ip: IpAddr::V4(Ipv4Addr::new(127, 0, block, host)),
        data_dir: dir.join(format!("edge-{block}-{host}")),
        env: all_env,
    };
    let mut node = LocalNode::start(bin, spec).map_err(|e| e.to_string())?;
    node.wait_healthy(LIMIT)?;
    Ok(node)
}

/// Polls until `master`'s SHOW CLUSTER has `rows` rows, all `status`.
fn wait_rows(master: &LocalNode, rows: usize, status: &str) -> Result<(), String> {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if let Ok(found) = master.query("SHOW CLUSTER") {
            if found.len() == rows && found.iter().all(|r| r["status"] == status) {
                return Ok(());
            }
        }
        std::thread::sleep(POLL);
    }
    Err(format!("SHOW CLUSTER never had {rows} rows {status}"))
}

struct Run {
    add_to_alive: Duration,
    start_to_alive: Duration,
    kill_to_dead: Duration,
    restart_to_full: Duration,
}

fn one_run(bin: &Path, block: u8) -> Result<Run, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut master = node(bin, dir.path(), block, 1, &[])?;
    let added = node(bin, dir.path(), block, 2, &[("BO_DATABASES", "log1")])?;

    let t = Instant::now();
    let (status, body) = master.sql(&format!("ADD CLIENT ip={} db=log1", added.spec.ip))?;
    if status != 200 {
        return Err(format!("ADD CLIENT failed: {body}"));
    }
    wait_rows(&master, 1, "alive")?;
    let add_to_alive = t.elapsed();

    let master_addr = format!("127.0.{block}.1");
    let t = Instant::now();
    let mut registered = node(
        bin,
        dir.path(),
        block,
        3,
        &[("BO_MASTER", &master_addr), ("BO_DATABASES", "log2")],
    )?;
    wait_rows(&master, 2, "alive")?;
    let start_to_alive = t.elapsed();

    // The master lists a client alive from their exchange of introductions, before gossip's
    // failure detector has heard it twice. Kill it once gossip has, so the figure is the
    // detection of an established client (one that dies before that is listed dead once gossip
    // gives up waiting for its second heartbeat, 12 rounds after it first heard of it).
    let client_id = registered.spec.node_id.clone();
    let deadline = Instant::now() + LIMIT;
    while node_status(&master, &client_id).as_deref() != Some("alive") {
        if Instant::now() > deadline {
            return Err("gossip never listed the registered client alive".into());
        }
        std::thread::sleep(POLL);
    }

    let t = Instant::now();
    registered.kill();
    let deadline = Instant::now() + LIMIT;
    loop {
        let rows = master.query("SHOW CLUSTER").unwrap_or_default();
        if rows
            .iter()
            .any(|r| r["db"] == "log2" && r["status"] == "dead")
        {
            break;
        }
        if Instant::now() > deadline {
            return Err("the killed client never became dead".into());
        }
        std::thread::sleep(POLL);
    }
    let kill_to_dead = t.elapsed();
    registered.restart().map_err(|e| e.to_string())?;
    wait_rows(&master, 2, "alive")?;

    master.kill();
    let t = Instant::now();
    master.restart().map_err(|e| e.to_string())?;
    wait_rows(&master, 2, "alive")?;
    let restart_to_full = t.elapsed();
    Ok(Run {
        add_to_alive,
        start_to_alive,
        kill_to_dead,
        restart_to_full,
    })
}

/// Median time of SHOW CLUSTER over HTTP on a master with `entries` entries.
fn show_cluster_time(bin: &Path, block: u8, entries: usize) -> Result<Summary, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let master = node(bin, dir.path(), block, 1, &[])?;
    let per_host = 40;
    let started = Instant::now();
    for i in 0..entries {
        let host = Ipv4Addr::new(
            127,
            0,
            block.wrapping_add(1),
            (i / per_host % 250) as u8 + 1,
        );
        let db = format!("db{}", i % per_host + (i / (per_host * 250)) * per_host);
        let (status, body) = master.sql(&format!("ADD CLIENT ip={host} db={db}"))?;
        if status != 200 {
            return Err(format!("ADD CLIENT failed: {body}"));
        }
    }
    eprintln!("  added {entries} entries in {:.1?}", started.elapsed());
    let mut samples = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let rows = master.query("SHOW CLUSTER")?;
        samples.push(t.elapsed());
        if rows.len() != entries {
            return Err(format!(
                "SHOW CLUSTER has {} rows, expected {entries}",
                rows.len()
            ));
        }
    }
    Summary::of(&samples).ok_or_else(|| "no samples".to_string())
}

pub fn run(bin: &Path, args: &ClusterArgs) -> Result<(), String> {
    let mut runs = Vec::new();
    for i in 1..=args.runs {
        let run = one_run(bin, args.block)?;
        eprintln!(
            "run {i}/{}: ADD->alive {:.0?}, BO_MASTER start->alive {:.0?}, SIGKILL->dead {:.0?}, master restart->full {:.0?}",
            args.runs, run.add_to_alive, run.start_to_alive, run.kill_to_dead, run.restart_to_full
        );
        runs.push(run);
    }
    let figure = |f: fn(&Run) -> Duration| Summary::of(&runs.iter().map(f).collect::<Vec<_>>());
    let figures = [
        ("ADD CLIENT -> alive", figure(|r| r.add_to_alive)),
        ("BO_MASTER start -> alive", figure(|r| r.start_to_alive)),
        ("client SIGKILL -> dead", figure(|r| r.kill_to_dead)),
        ("master restart -> full", figure(|r| r.restart_to_full)),
    ];
    let show = if args.entries > 0 {
        Some(show_cluster_time(bin, args.block, args.entries)?)
    } else {
        None
    };
    println!(
        "\n{:<28} {:>10} {:>10} {:>10}",
        "figure", "median", "min", "max"
    );
    for (name, s) in figures
        .iter()
        .chain([("SHOW CLUSTER (entries)", show.clone())].iter())
    {
        if let Some(s) = s {
            println!(
                "{name:<28} {:>8.1}ms {:>8.1}ms {:>8.1}ms",
                s.median_ms, s.min_ms, s.max_ms
            );
        }
    }
    let report = json!({
        "runs": args.runs,
        "add_client_to_alive": figures[0].1,
        "bo_master_start_to_alive": figures[1].1,
        "client_sigkill_to_dead": figures[2].1,
        "master_restart_to_full": figures[3].1,
        "show_cluster": show.map(|s| json!({"entries": args.entries, "time": s})),
    });
    println!("{report}");
    Ok(())
}
