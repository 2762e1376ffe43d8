//! `bocluster demo`: a small real cluster on this machine, until Ctrl-C.
//!
//! Several `bocluster node` processes, each on its own loopback address with the default
//! ports, real QUIC with mutual TLS, data dirs in a temporary folder that is removed at the
//! end. It shows both ways of forming a master's cluster: a client added from the master with
//! ADD CLIENT, and clients that register themselves with BO_MASTER.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use clap::Args;

use crate::cli::sql::format_answer;
use crate::fleet::{wait_for, LocalNode, NodeSpec};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many nodes to run (on 127.0.0.2, 127.0.0.3, ...): one master, one added client,
    /// the rest register themselves
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(3..=50))]
    pub nodes: u8,
    /// Exit once the cluster has formed instead of waiting for Ctrl-C
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

const MASTER: &str = "127.0.0.2";

fn node_spec(dir: &std::path::Path, index: u8, env: Vec<(String, String)>) -> NodeSpec {
    let node_id = if index == 0 {
        "master".to_string()
    } else {
        format!("client-{index}")
    };
    let mut all_env = vec![("BO_LOG".to_string(), "warn".to_string())];
    all_env.extend(env);
    NodeSpec {
        data_dir: dir.join(&node_id),
        node_id,
        ip: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + index)),
        env: all_env,
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
        "bocluster demo: {} nodes on 127.0.0.2-{}, data in {}\n",
        args.nodes,
        1 + args.nodes,
        dir.path().display()
    );

    let started = Instant::now();
    let mut nodes = Vec::new();
    for index in 0..args.nodes {
        let env: Vec<(String, String)> = match index {
            0 => vec![],
            // Knows nothing of the master: the master adds it.
            1 => vec![("BO_DATABASES".into(), "log1,log2".into())],
            // Registers all its databases with the master by itself.
            i => vec![
                ("BO_MASTER".into(), MASTER.into()),
                ("BO_DATABASES".into(), format!("sales_{i},events_{i}")),
            ],
        };
        let spec = node_spec(dir.path(), index, env);
        let role = match index {
            0 => "master",
            1 => "client, to be added with ADD CLIENT",
            _ => "client, BO_MASTER=127.0.0.2",
        };
        let node =
            LocalNode::start(&exe, spec).map_err(|e| format!("cannot start node {index}: {e}"))?;
        println!(
            "  started {:<9} QUIC {} (UDP), HTTP {}  ({role})",
            node.spec.node_id,
            node.quic_addr(),
            node.http_addr()
        );
        nodes.push(node);
    }
    for node in &mut nodes {
        node.wait_healthy(Duration::from_secs(20))?;
    }
    println!("  all APIs up after {:.2?}\n", started.elapsed());

    let master = &nodes[0];
    let client = &nodes[1];
    for db in ["log1", "log2"] {
        let statement = format!(r#"ADD CLIENT ip="{}" db="{db}""#, client.spec.ip);
        println!("master> {statement}");
        let (_, body) = master.sql(&statement)?;
        print!("{}", format_answer(&body));
    }

    let expected_rows = 2 + 2 * (nodes.len() - 2);
    let formed = wait_for(Duration::from_secs(30), || {
        let rows = master.query("SHOW CLUSTER").ok()?;
        let alive = rows.iter().filter(|r| r["status"] == "alive").count();
        (alive == expected_rows).then_some(())
    });
    if formed.is_none() {
        return Err(format!(
            "the cluster did not form within 30 s; master log:\n{}",
            master.log()
        ));
    }
    // SHOW NODES is what the master's membership knows, which converges on its own time:
    // print it once every node is seen alive there, not a partial list.
    let all_seen = wait_for(Duration::from_secs(30), || {
        let rows = master.query("SHOW NODES").ok()?;
        let alive = rows.iter().filter(|r| r["status"] == "alive").count();
        (alive == nodes.len()).then_some(())
    });
    if all_seen.is_none() {
        return Err(format!(
            "the master did not see all {} nodes within 30 s; master log:\n{}",
            nodes.len(),
            master.log()
        ));
    }
    println!(
        "\nall {expected_rows} entries alive on the master, all {} nodes seen, after {:.2?}\n",
        nodes.len(),
        started.elapsed()
    );
    println!("master> SHOW CLUSTER");
    print!("{}", format_answer(&master.sql("SHOW CLUSTER")?.1));
    println!("\nmaster> SHOW NODES   (what gossip knows; only the cluster above is the master's)");
    print!("{}", format_answer(&master.sql("SHOW NODES")?.1));

    println!(
        "\nWatch it live: open http://{MASTER}:9090/ in a browser (the master's view, SHOW NODES"
    );
    println!("and the events as they happen; stop a client and see it turn dead).");
    println!("\nTry it (in another terminal):");
    println!("  bocluster sql --host {MASTER}:9090 \"SHOW CLUSTER\"");
    println!("  bocluster sql --host {MASTER}:9090             (an interactive shell)");
    println!("  mariadb -h {MASTER} -P 3306 -e \"SHOW CLUSTER\"   (any MySQL client)");
    println!(
        "  bocluster sql --host {} \"CREATE DATABASE late\"   (a registered client: it appears on the master)",
        nodes[2].http_addr()
    );
    println!(
        "  bocluster sql --host {MASTER}:9090 'DROP CLIENT ip=\"{}\" db=\"log2\"'",
        client.spec.ip
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
