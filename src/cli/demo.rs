//! `bocluster demo`: a small real cluster on this machine, until Ctrl-C.
//!
//! Several `bocluster node` processes, each on its own loopback address with the default
//! ports, real QUIC with mutual TLS, data dirs in a temporary folder that is removed at the end.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use clap::Args;

use crate::fleet::{wait_for, LocalNode, NodeSpec};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many nodes to run (on 127.0.0.2, 127.0.0.3, ...)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=50))]
    pub nodes: u8,
    /// Exit once the cluster has converged instead of waiting for Ctrl-C
    #[arg(long)]
    pub no_wait: bool,
}

pub fn run(args: DemoArgs) -> u8 {
    match run_demo(&args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bocluster demo: {e}");
            1
        }
    }
}

fn run_demo(args: &DemoArgs) -> Result<(), String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?;
    let dir = tempfile::Builder::new()
        .prefix("bocluster-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
    println!(
        "bocluster demo: {} nodes, data in {}",
        args.nodes,
        dir.path().display()
    );

    let seed = "127.0.0.2:9091".to_string();
    let started = Instant::now();
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i));
        let node_id = format!("demo-{}", i + 1);
        let databases = format!("db_{}", i + 1);
        let spec = NodeSpec {
            node_id: node_id.clone(),
            ip,
            data_dir: dir.path().join(&node_id),
            env: vec![
                ("BO_SEEDS".into(), seed.clone()),
                ("BO_DATABASES".into(), databases),
                ("BO_LOG".into(), "warn".into()),
            ],
        };
        let node =
            LocalNode::start(&exe, spec).map_err(|e| format!("cannot start {node_id}: {e}"))?;
        println!(
            "  started {node_id}: QUIC {} (UDP), HTTP {}",
            node.quic_addr(),
            node.http_addr()
        );
        nodes.push(node);
    }
    for node in &mut nodes {
        node.wait_healthy(Duration::from_secs(20))?;
    }
    println!(
        "  all {} APIs up after {:.2?}",
        nodes.len(),
        started.elapsed()
    );

    let observer = &nodes[0];
    let expected = nodes.len();
    let converged = wait_for(Duration::from_secs(30), || {
        let rows = observer.query("SHOW NODES").ok()?;
        let alive = rows
            .iter()
            .filter(|r| r.get("status").and_then(|s| s.as_str()) == Some("alive"))
            .count();
        let complete = rows.iter().all(|r| {
            r.get("version")
                .and_then(|v| v.as_str())
                .is_some_and(|v| !v.is_empty())
        });
        (alive == expected && complete).then_some(())
    });
    if converged.is_none() {
        return Err(format!(
            "the cluster did not converge within 30 s; log of {}:\n{}",
            observer.spec.node_id,
            observer.log()
        ));
    }
    println!(
        "  converged: {} sees all {expected} nodes alive after {:.2?}\n",
        observer.spec.node_id,
        started.elapsed()
    );
    let answer = observer.sql("SHOW NODES").map_err(|e| e.to_string())?;
    print!("{}", crate::cli::sql::format_answer(&answer.1));
    println!("\nTry it (in another terminal):");
    println!(
        "  bocluster sql --host {} \"SHOW NODES\"",
        observer.http_addr()
    );
    println!(
        "  bocluster sql --host {} \"CREATE DATABASE sales\"",
        nodes[1].http_addr()
    );
    println!(
        "  bocluster sql --host {} \"SHOW DATABASES\"",
        nodes[1].http_addr()
    );

    if !args.no_wait {
        println!("\nPress Ctrl-C to stop the demo and remove its data.");
        wait_for_ctrl_c();
    }
    println!("stopping {} nodes...", nodes.len());
    for node in &mut nodes {
        node.stop(Duration::from_secs(5));
    }
    drop(nodes);
    drop(dir);
    println!("demo stopped; temporary data removed");
    Ok(())
}

fn wait_for_ctrl_c() {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        }),
        Err(_) => std::thread::park(),
    }
}
