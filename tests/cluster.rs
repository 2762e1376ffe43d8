//! Master-defined clusters between real node processes: ADD CLIENT, BO_MASTER registration,
//! and the topology holding while clients crash, restart, move and change their databases.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;

/// Waits until SHOW CLUSTER on `master` is exactly `expected` (order included).
fn expect_cluster(master: &LocalNode, expected: &[(&str, u64, &str, &str, &str, &str)]) {
    let want = expected_rows(expected);
    if wait_for(DEADLINE, || (show_cluster(master) == want).then_some(())).is_none() {
        panic!(
            "SHOW CLUSTER on {} never became\n{want:#?}\nlast:\n{:#?}\nlog:\n{}",
            master.spec.node_id,
            show_cluster(master),
            master.log()
        );
    }
}

#[test]
fn seed_scenario_clients_added_from_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let b = 30;
    let master = start(spec(dir.path(), b, 1, &[]));
    // A client with two databases that knows nothing of the master: no seeds, no BO_MASTER.
    let client = start(spec(dir.path(), b, 2, &[("BO_DATABASES", "log1,log2")]));
    let body = ok(&master, r#"ADD CLIENT ip="127.0.30.2" db="log1""#);
    assert!(body["message"].as_str().unwrap().contains("added"));
    ok(&master, r#"ADD CLIENT ip="127.0.30.2" db="log2""#);
    expect_cluster(
        &master,
        &[
            ("127.0.30.2", 9091, "log1", "add", "alive", "n30-2"),
            ("127.0.30.2", 9091, "log2", "add", "alive", "n30-2"),
        ],
    );
    let rows = master.query("SHOW CLUSTER").unwrap();
    let columns = master.sql("SHOW CLUSTER").unwrap().1["columns"].clone();
    assert_eq!(
        columns,
        serde_json::json!(["host", "ip", "port", "db", "source", "status", "node_id"])
    );
    assert!(
        !rows[0]["host"].as_str().unwrap().is_empty(),
        "host is the client's host name"
    );
    // Gossip knows the master on the client side too, but the client has no cluster of its own.
    assert!(show_cluster(&client).is_empty());
}

#[test]
fn seed_scenario_client_registers_itself_through_another_port() {
    let dir = tempfile::tempdir().unwrap();
    let b = 31;
    let master = start(spec(dir.path(), b, 1, &[]));
    // The client's QUIC endpoint is reached at port 19091 (not 9091).
    let client = start(spec(
        dir.path(),
        b,
        2,
        &[
            ("BO_LISTEN", "127.0.31.2:19091"),
            ("BO_ENDPOINT", "127.0.31.2:19091"),
            ("BO_MASTER", "127.0.31.1"),
            ("BO_DATABASES", "log1,log2"),
        ],
    ));
    expect_cluster(
        &master,
        &[
            ("127.0.31.2", 19091, "log1", "register", "alive", "n31-2"),
            ("127.0.31.2", 19091, "log2", "register", "alive", "n31-2"),
        ],
    );
    // The client advertises the master by node id (in gossip, which may list the client a
    // moment after the master's own introduction with it showed it alive).
    let row = wait_for(DEADLINE, || {
        let nodes = master.query("SHOW NODES").ok()?;
        let row = nodes.into_iter().find(|r| r["node_id"] == "n31-2")?;
        (row["masters"] == "n31-1").then_some(row)
    })
    .unwrap_or_else(|| {
        panic!(
            "SHOW NODES never listed n31-2 with master n31-1: {:?}",
            master.query("SHOW NODES")
        )
    });
    assert_eq!(row["endpoint"], "127.0.31.2:19091");
    // Its first registration came in one sealed datagram, not over a QUIC handshake.
    let via_datagram = wait_for(DEADLINE, || {
        let scrape = scrape(&master);
        let changed = [("via", "datagram"), ("outcome", "changed")];
        counter(&scrape, "bocluster_registrations_total", &changed).filter(|n| *n >= 1.0)
    });
    assert!(
        via_datagram.is_some(),
        "the master counted no registration in a sealed datagram"
    );

    // Databases it creates later appear; databases it drops disappear.
    ok(&client, "CREATE DATABASE log3");
    ok(&client, "DROP DATABASE log1");
    expect_cluster(
        &master,
        &[
            ("127.0.31.2", 19091, "log2", "register", "alive", "n31-2"),
            ("127.0.31.2", 19091, "log3", "register", "alive", "n31-2"),
        ],
    );
}

#[test]
fn a_client_started_before_its_master_registers_when_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let b = 32;
    let client = start(spec(
        dir.path(),
        b,
        2,
        &[("BO_MASTER", "127.0.32.1:9091"), ("BO_DATABASES", "log1")],
    ));
    // It retries and says why, at a sane rate.
    let warned = wait_for(DEADLINE, || {
        client
            .log()
            .contains("master does not answer yet")
            .then_some(())
    });
    assert!(warned.is_some(), "log:\n{}", client.log());
    let master = start(spec(dir.path(), b, 1, &[]));
    expect_cluster(
        &master,
        &[("127.0.32.2", 9091, "log1", "register", "alive", "n32-2")],
    );
    assert!(client.log().matches("master does not answer yet").count() <= 2);
}

#[test]
fn a_registered_client_that_moves_keeps_one_row_at_its_new_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let b = 33;
    let master = start(spec(dir.path(), b, 1, &[]));
    let registered = [("BO_MASTER", "127.0.33.1"), ("BO_DATABASES", "log1")];
    let mut client = start(spec(dir.path(), b, 2, &registered));
    expect_cluster(
        &master,
        &[("127.0.33.2", 9091, "log1", "register", "alive", "n33-2")],
    );
    // Same node (same data dir and id), new IP and new port.
    assert!(client.stop(Duration::from_secs(10)));
    client.spec.ip = ip(b, 7);
    client
        .spec
        .env
        .push(("BO_LISTEN".into(), "127.0.33.7:29091".into()));
    client
        .spec
        .env
        .push(("BO_ENDPOINT".into(), "127.0.33.7:29091".into()));
    client.restart().unwrap();
    // LocalNode's HTTP address follows spec.ip (BO_HTTP is derived from it).
    client.wait_healthy(DEADLINE).unwrap();
    expect_cluster(
        &master,
        &[("127.0.33.7", 29091, "log1", "register", "alive", "n33-2")],
    );
}

#[test]
fn two_masters_keep_different_topologies_and_gossip_never_adds() {
    let dir = tempfile::tempdir().unwrap();
    let b = 34;
    let m1 = start(spec(dir.path(), b, 1, &[("BO_DATABASES", "own")]));
    // m2 is a master and also a client of m1.
    let m2 = start(spec(
        dir.path(),
        b,
        2,
        &[
            ("BO_SEEDS", "127.0.34.1"),
            ("BO_MASTER", "127.0.34.1"),
            ("BO_DATABASES", "m2db"),
        ],
    ));
    let c3 = start(spec(
        dir.path(),
        b,
        3,
        &[("BO_MASTER", "127.0.34.2"), ("BO_DATABASES", "log3")],
    ));
    // A gossip-only node: it joins the fleet, registers with nobody, is added by nobody.
    let gossip_only = start(spec(
        dir.path(),
        b,
        4,
        &[("BO_SEEDS", "127.0.34.1"), ("BO_DATABASES", "quiet")],
    ));
    ok(&m1, "ADD CLIENT ip=127.0.34.3 db=log3");
    expect_cluster(
        &m1,
        &[
            ("127.0.34.2", 9091, "m2db", "register", "alive", "n34-2"),
            ("127.0.34.3", 9091, "log3", "add", "alive", "n34-3"),
        ],
    );
    expect_cluster(
        &m2,
        &[("127.0.34.3", 9091, "log3", "register", "alive", "n34-3")],
    );
    // Everyone hears of everyone by gossip...
    for node in [&m1, &m2] {
        for h in 1..=4 {
            expect_status(node, &format!("n34-{h}"), "alive");
        }
    }
    // ...yet the gossip-only node is in no master's cluster, and a node that never was a
    // master has an empty one.
    for master in [&m1, &m2] {
        assert!(
            show_cluster(master).iter().all(|r| r.5 != "n34-4"),
            "{:?}",
            show_cluster(master)
        );
    }
    assert!(show_cluster(&c3).is_empty());
    assert!(show_cluster(&gossip_only).is_empty());
}

#[test]
fn a_dropped_registration_stays_out_until_added_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = 35;
    let master = start(spec(dir.path(), b, 1, &[]));
    let registered = [("BO_MASTER", "127.0.35.1"), ("BO_DATABASES", "log1,log2")];
    let mut client = start(spec(dir.path(), b, 2, &registered));
    expect_cluster(
        &master,
        &[
            ("127.0.35.2", 9091, "log1", "register", "alive", "n35-2"),
            ("127.0.35.2", 9091, "log2", "register", "alive", "n35-2"),
        ],
    );
    let body = ok(&master, "DROP CLIENT ip=127.0.35.2 db=log1");
    assert!(body["message"].as_str().unwrap().contains("dropped"));
    expect_cluster(
        &master,
        &[("127.0.35.2", 9091, "log2", "register", "alive", "n35-2")],
    );
    // The client restarts and registers everything again: log1 stays out.
    client.kill();
    client.restart().unwrap();
    client.wait_healthy(DEADLINE).unwrap();
    ok(&client, "CREATE DATABASE log4");
    expect_cluster(
        &master,
        &[
            ("127.0.35.2", 9091, "log2", "register", "alive", "n35-2"),
            ("127.0.35.2", 9091, "log4", "register", "alive", "n35-2"),
        ],
    );
    // ADD CLIENT brings it back.
    ok(&master, "ADD CLIENT ip=127.0.35.2 db=log1");
    expect_cluster(
        &master,
        &[
            ("127.0.35.2", 9091, "log1", "add", "alive", "n35-2"),
            ("127.0.35.2", 9091, "log2", "register", "alive", "n35-2"),
            ("127.0.35.2", 9091, "log4", "register", "alive", "n35-2"),
        ],
    );
}

#[test]
fn a_killed_client_is_dead_then_alive_in_the_same_row_and_a_stopped_one_left() {
    let dir = tempfile::tempdir().unwrap();
    let b = 36;
    let master = start(spec(dir.path(), b, 1, &[]));
    let mut added = start(spec(dir.path(), b, 2, &[("BO_DATABASES", "log1")]));
    let mut registered = start(spec(
        dir.path(),
        b,
        3,
        &[("BO_MASTER", "127.0.36.1"), ("BO_DATABASES", "log1")],
    ));
    ok(&master, "ADD CLIENT ip=127.0.36.2 db=log1");
    ok(&master, "ADD CLIENT ip=127.0.36.9 db=log1");
    expect_cluster(
        &master,
        &[
            ("127.0.36.2", 9091, "log1", "add", "alive", "n36-2"),
            ("127.0.36.3", 9091, "log1", "register", "alive", "n36-3"),
            ("127.0.36.9", 9091, "log1", "add", "unreachable", ""),
        ],
    );
    added.kill();
    registered.kill();
    expect_cluster(
        &master,
        &[
            ("127.0.36.2", 9091, "log1", "add", "dead", "n36-2"),
            ("127.0.36.3", 9091, "log1", "register", "dead", "n36-3"),
            ("127.0.36.9", 9091, "log1", "add", "unreachable", ""),
        ],
    );
    added.restart().unwrap();
    registered.restart().unwrap();
    expect_cluster(
        &master,
        &[
            ("127.0.36.2", 9091, "log1", "add", "alive", "n36-2"),
            ("127.0.36.3", 9091, "log1", "register", "alive", "n36-3"),
            ("127.0.36.9", 9091, "log1", "add", "unreachable", ""),
        ],
    );
    assert!(added.stop(Duration::from_secs(10)));
    expect_cluster(
        &master,
        &[
            ("127.0.36.2", 9091, "log1", "add", "left", "n36-2"),
            ("127.0.36.3", 9091, "log1", "register", "alive", "n36-3"),
            ("127.0.36.9", 9091, "log1", "add", "unreachable", ""),
        ],
    );
}

#[test]
fn a_restarted_master_answers_at_once_and_relearns_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let b = 37;
    let mut master = start(spec(dir.path(), b, 1, &[]));
    let _added = start(spec(dir.path(), b, 2, &[("BO_DATABASES", "log1")]));
    let _registered = start(spec(
        dir.path(),
        b,
        3,
        &[("BO_MASTER", "127.0.37.1"), ("BO_DATABASES", "log2")],
    ));
    ok(&master, "ADD CLIENT ip=127.0.37.2 db=log1");
    let full = [
        ("127.0.37.2", 9091, "log1", "add", "alive", "n37-2"),
        ("127.0.37.3", 9091, "log2", "register", "alive", "n37-3"),
    ];
    expect_cluster(&master, &full);
    master.kill();
    master.restart().unwrap();
    master.wait_healthy(DEADLINE).unwrap();
    // Every entry is there as soon as the API answers.
    let keys: BTreeSet<(String, u64, String)> = show_cluster(&master)
        .into_iter()
        .map(|r| (r.0, r.1, r.2))
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    expect_cluster(&master, &full);
}

#[test]
fn masters_and_seeds_may_be_names() {
    let dir = tempfile::tempdir().unwrap();
    // `localhost` is 127.0.0.1: the only loopback name there is, so this test owns 127.0.0.1.
    let mut master_spec = spec(dir.path(), 0, 1, &[]);
    master_spec.node_id = "named-master".into();
    let master = start(master_spec);
    let _client = start(spec(
        dir.path(),
        39,
        2,
        &[("BO_MASTER", "localhost"), ("BO_DATABASES", "log1")],
    ));
    let _peer = start(spec(dir.path(), 39, 3, &[("BO_SEEDS", "localhost:9091")]));
    expect_cluster(
        &master,
        &[("127.0.39.2", 9091, "log1", "register", "alive", "n39-2")],
    );
    expect_status(&master, "n39-3", "alive");
}
