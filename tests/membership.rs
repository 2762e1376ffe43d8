//! Gossip membership between real node processes over QUIC with mutual TLS.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

/// Whether `observer` counts a closed port in its `/metrics` before the deadline (its
/// counters reach `/metrics` about once a second).
fn hears_a_closed_port(observer: &LocalNode) -> bool {
    wait_for(DEADLINE, || {
        let n = observer
            .metric("bocluster_membership_ports_closed_total")
            .ok()?;
        (n > 0.0).then_some(())
    })
    .is_some()
}

fn seeds(block: u8) -> String {
    format!("127.0.{block}.1:9091")
}

#[test]
fn three_nodes_converge_and_show_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let block = 10;
    let seed = seeds(block);
    let nodes: Vec<LocalNode> = (1..=3)
        .map(|h| {
            start(spec(
                dir.path(),
                block,
                h,
                &[("BO_SEEDS", &seed), ("BO_DATABASES", "log1")],
            ))
        })
        .collect();
    for observer in &nodes {
        let converged = wait_for(DEADLINE, || {
            let s = statuses(observer);
            (s.len() == 3 && s.iter().all(|(_, st)| st == "alive")).then_some(())
        });
        assert!(
            converged.is_some(),
            "{} saw {:?}; log:\n{}",
            observer.spec.node_id,
            statuses(observer),
            observer.log()
        );
    }
    let (status, body) = sql(&nodes[0], "SHOW NODES");
    assert_eq!(status, 200);
    assert_eq!(
        body["columns"],
        serde_json::json!([
            "node_id",
            "endpoint",
            "status",
            "generation",
            "databases",
            "masters",
            "version"
        ])
    );
    let rows = rows_as_maps(&body);
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["n10-1", "n10-2", "n10-3"]);
    // Keys spread too: every row gets its endpoint, databases and version.
    let complete = wait_for(DEADLINE, || {
        let rows = nodes[0].query("SHOW NODES").ok()?;
        rows.iter()
            .all(|r| r["databases"] == "log1" && r["version"] == env!("CARGO_PKG_VERSION"))
            .then_some(rows)
    })
    .expect("databases and version reach every peer");
    for (row, node) in complete.iter().zip(&nodes) {
        assert_eq!(row["endpoint"], node.quic_addr().to_string());
        assert!(row["generation"].as_u64().unwrap() > 0);
    }
}

#[test]
fn sigkill_gives_dead_sigterm_gives_left_and_restart_is_alive_once() {
    let dir = tempfile::tempdir().unwrap();
    let block = 11;
    let seed = seeds(block);
    let observer = start(spec(dir.path(), block, 1, &[]));
    let mut killed = start(spec(dir.path(), block, 2, &[("BO_SEEDS", &seed)]));
    let mut stopped = start(spec(dir.path(), block, 3, &[("BO_SEEDS", &seed)]));
    expect_status(&observer, "n11-2", "alive");
    expect_status(&observer, "n11-3", "alive");

    killed.kill();
    expect_status(&observer, "n11-2", "dead");
    // The killed node's host answered "port unreachable" (ICMP), and the observer read it
    // from its socket's error queue: it knocks on dead members, so it hears it in time.
    assert!(
        hears_a_closed_port(&observer),
        "the observer never heard that n11-2's port is closed"
    );

    assert!(
        stopped.stop(Duration::from_secs(10)),
        "SIGTERM must make the node exit by itself"
    );
    // `left` must be visible right away, not after failure detection turned it `dead` first.
    expect_status(&observer, "n11-3", "left");

    let before = observer.query("SHOW NODES").unwrap();
    let old_generation = before.iter().find(|r| r["node_id"] == "n11-2").unwrap()["generation"]
        .as_u64()
        .unwrap();
    killed.restart().unwrap();
    killed.wait_healthy(DEADLINE).unwrap();
    expect_status(&observer, "n11-2", "alive");
    let after = observer.query("SHOW NODES").unwrap();
    let rows: Vec<_> = after.iter().filter(|r| r["node_id"] == "n11-2").collect();
    assert_eq!(rows.len(), 1, "a restarted node is one row: {after:?}");
    assert!(rows[0]["generation"].as_u64().unwrap() > old_generation);

    stopped.restart().unwrap();
    stopped.wait_healthy(DEADLINE).unwrap();
    expect_status(&observer, "n11-3", "alive");
    assert_eq!(statuses(&observer).len(), 3);
}

#[test]
fn a_paused_node_is_dead_then_alive_again() {
    let dir = tempfile::tempdir().unwrap();
    let block = 12;
    let seed = seeds(block);
    let observer = start(spec(dir.path(), block, 1, &[]));
    let paused = start(spec(dir.path(), block, 2, &[("BO_SEEDS", &seed)]));
    expect_status(&observer, "n12-2", "alive");
    paused.signal(Signal::SIGSTOP);
    expect_status(&observer, "n12-2", "dead");
    paused.signal(Signal::SIGCONT);
    expect_status(&observer, "n12-2", "alive");
}

/// A frozen process keeps its socket open: it is silent, not gone, and a pause shorter than
/// the silent suspicion never lists it dead (its peers probe it again and again meanwhile,
/// each failed probe starting another suspicion timer). A killed one's port is closed: its
/// host says so, and it is dead after the short timeout.
#[test]
fn a_short_pause_is_not_a_death_and_a_kill_is_told_by_the_closed_port() {
    let dir = tempfile::tempdir().unwrap();
    let block = 19;
    let seed = seeds(block);
    let timings = [
        ("BO_SUSPECT_TIMEOUT", "3s"),
        ("BO_PORT_CLOSED_TIMEOUT", "100ms"),
    ];
    let observer = start(spec(dir.path(), block, 1, &timings));
    let with_seed = |host| {
        let mut env = timings.to_vec();
        env.push(("BO_SEEDS", seed.as_str()));
        start(spec(dir.path(), block, host, &env))
    };
    let mut paused = with_seed(2);
    let _third = with_seed(3);
    expect_status(&observer, "n19-2", "alive");
    expect_status(&observer, "n19-3", "alive");

    // Frozen for 1.5 s, twice: each time its probe fails within 0.3-0.6 s, and the silent
    // suspicion (3 s) outlasts the pause.
    for _ in 0..2 {
        paused.signal(Signal::SIGSTOP);
        let thaw = Instant::now() + Duration::from_millis(1500);
        let mut seen = Vec::new();
        while Instant::now() < thaw {
            seen.push(node_status(&observer, "n19-2"));
            std::thread::sleep(Duration::from_millis(20));
        }
        paused.signal(Signal::SIGCONT);
        let watch_until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < watch_until {
            seen.push(node_status(&observer, "n19-2"));
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            seen.iter().all(|s| s.as_deref() == Some("alive")),
            "a node frozen for 1.5 s was listed {seen:?}"
        );
    }

    paused.kill();
    expect_status(&observer, "n19-2", "dead");
    assert!(
        hears_a_closed_port(&observer),
        "the killed node's closed port was never heard of"
    );
}

#[test]
fn a_node_with_another_cluster_key_never_appears() {
    let dir = tempfile::tempdir().unwrap();
    let block = 13;
    let seed = seeds(block);
    let alpha = test_key("membership alpha");
    let other = test_key("membership other");
    let key_a = [("BO_CLUSTER_KEY", alpha.as_str())];
    let a1 = start(spec(dir.path(), block, 1, &key_a));
    let a2 = start(spec(
        dir.path(),
        block,
        2,
        &[("BO_CLUSTER_KEY", &alpha), ("BO_SEEDS", &seed)],
    ));
    // Seeds itself to both members of the other cluster, so it keeps trying.
    let both = format!("{seed},127.0.{block}.2:9091");
    let intruder = start(spec(
        dir.path(),
        block,
        3,
        &[("BO_CLUSTER_KEY", &other), ("BO_SEEDS", &both)],
    ));
    let keyless = start(spec(dir.path(), block, 4, &[("BO_SEEDS", &both)]));
    expect_status(&a1, "n13-2", "alive");
    expect_status(&a2, "n13-1", "alive");
    // The refusal is logged by the refusing side (once per peer per minute).
    let logged = wait_for(DEADLINE, || a1.log().contains("127.0.13.3").then_some(()));
    assert!(
        logged.is_some(),
        "a1 should log the refused peer; log:\n{}",
        a1.log()
    );
    // Give the intruders many gossip rounds (100 ms each) to get in; they must not.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        for (node, others) in [(&a1, 2), (&a2, 2), (&intruder, 1), (&keyless, 1)] {
            let seen = statuses(node);
            assert_eq!(seen.len(), others, "{} sees {seen:?}", node.spec.node_id);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let refusals = a1.log().matches("127.0.13.3").count();
    assert!(
        refusals <= 2,
        "refusals must not flood the log ({refusals} lines)"
    );
}

#[test]
fn a_second_process_with_a_live_node_id_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let block = 170;
    let seed = seeds(block);
    let first = start(spec(dir.path(), block, 1, &[]));
    let real = start(spec(
        dir.path(),
        block,
        2,
        &[("BO_NODE_ID", "twin"), ("BO_SEEDS", &seed)],
    ));
    expect_status(&first, "twin", "alive");
    let impostor = spec(
        dir.path(),
        block,
        3,
        &[("BO_NODE_ID", "twin"), ("BO_SEEDS", &seed)],
    );
    expect_twin_refused(impostor, "127.0.170.2:9091", &[&first, &real]);
}

/// Starts `impostor`, a second process under the id `twin` of a node running at `endpoint`:
/// it must exit 2 naming the id and that endpoint, and leave the real node untouched: alive,
/// at its own endpoint, on every one of `observers`.
fn expect_twin_refused(impostor: NodeSpec, endpoint: &str, observers: &[&LocalNode]) {
    let mut impostor = LocalNode::start(exe(), impostor).unwrap();
    let code = impostor.wait_exit(Duration::from_secs(20));
    let log = impostor.log();
    assert_eq!(code, Some(2), "the impostor must exit 2; log:\n{log}");
    assert!(
        log.contains("twin") && log.contains(endpoint),
        "the refusal names the id and the other endpoint: {log}"
    );
    for observer in observers {
        expect_status(observer, "twin", "alive");
        assert_eq!(
            node_column(observer, "twin", "endpoint").as_deref(),
            Some(endpoint)
        );
    }
}

/// A `BO_MASTER` client's first registration is its node id check: the master refuses an
/// impostor, which then adds nothing to the master's cluster.
#[test]
fn a_second_client_with_a_live_node_id_is_refused_by_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let block = 172;
    let master_addr = seeds(block);
    let master = start(spec(dir.path(), block, 1, &[]));
    let client_env = [
        ("BO_NODE_ID", "twin"),
        ("BO_MASTER", master_addr.as_str()),
        ("BO_DATABASES", "log1"),
    ];
    let real = start(spec(dir.path(), block, 2, &client_env));
    let registered = || {
        show_cluster(&master)
            .iter()
            .any(|(ip, _, db, _, status, _)| {
                ip == "127.0.172.2" && db == "log1" && status == "alive"
            })
    };
    assert!(
        wait_for(DEADLINE, || registered().then_some(())).is_some(),
        "the real client registers: {:?}; log:\n{}",
        show_cluster(&master),
        real.log()
    );

    let impostor = spec(dir.path(), block, 3, &client_env);
    expect_twin_refused(impostor, "127.0.172.2:9091", &[&master, &real]);
    let rows = show_cluster(&master);
    assert!(
        rows.iter().all(|(ip, ..)| ip != "127.0.172.3"),
        "the impostor's endpoint is in no entry: {rows:?}"
    );
    assert!(registered(), "the real client stays alive: {rows:?}");
}

#[test]
fn a_client_with_3000_long_database_names_is_seen_with_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let block = 171;
    let master = start(spec(dir.path(), block, 1, &[]));
    let client_spec = spec(
        dir.path(),
        block,
        2,
        &[
            ("BO_MASTER", "127.0.171.1"),
            ("BO_ENDPOINT", "127.0.171.2:9091"),
        ],
    );
    // 3,000 databases of 64-character names, made the way the catalog keeps them.
    let names: Vec<String> = (0..3000).map(|i| format!("db_{i:0>61}")).collect();
    let databases = client_spec.data_dir.join("databases");
    for name in &names {
        std::fs::create_dir_all(databases.join(name)).unwrap();
    }
    let client = start(client_spec);
    let all_seen = wait_for(Duration::from_secs(60), || {
        let listed = node_column(&master, &client.spec.node_id, "databases")?;
        (listed.split(',').count() == names.len()).then_some(())
    });
    assert!(
        all_seen.is_some(),
        "the master lists {:?} databases of the client",
        node_column(&master, &client.spec.node_id, "databases").map(|d| d.split(',').count())
    );
    let entries = wait_for(Duration::from_secs(60), || {
        let rows = master.query("SHOW CLUSTER").ok()?;
        let alive = rows
            .iter()
            .filter(|r| r.get("status").and_then(|s| s.as_str()) == Some("alive"))
            .count();
        (alive == names.len()).then_some(())
    });
    assert!(
        entries.is_some(),
        "not every registered database is alive in SHOW CLUSTER"
    );
}
