//! Databases of real nodes: created from BO_DATABASES, kept across clean stops and crashes,
//! and advertised to the other nodes through gossip.
//!
//! Address blocks used here: 127.0.70.x to 127.0.74.x.

mod common;
use common::*;

/// The node's databases, as SHOW DATABASES lists them.
fn databases(node: &LocalNode) -> Vec<String> {
    let (status, body) = sql(node, "SHOW DATABASES");
    assert_eq!(
        status, 200,
        "SHOW DATABASES on {}: {body}",
        node.spec.node_id
    );
    assert_eq!(body["columns"], serde_json::json!(["name"]), "{body}");
    rows_as_maps(&body)
        .iter()
        .map(|row| {
            row["name"]
                .as_str()
                .unwrap_or_else(|| panic!("name is not a string: {body}"))
                .to_string()
        })
        .collect()
}

/// Runs a statement that must succeed.
fn ok(node: &LocalNode, statement: &str) {
    let (status, body) = sql(node, statement);
    assert_eq!(
        status, 200,
        "{statement:?} on {}: {body}",
        node.spec.node_id
    );
    assert_eq!(body["retcode"], 0, "{statement:?}: {body}");
}

/// Starts the node's process again and waits until its API answers.
fn restart(node: &mut LocalNode) {
    node.restart().expect("restart bocluster node");
    if let Err(e) = node.wait_healthy(DEADLINE) {
        panic!("{e}");
    }
}

/// Stops the node with SIGTERM; it must exit by itself.
fn stop(node: &mut LocalNode) {
    assert!(
        node.stop(DEADLINE),
        "{} did not exit after SIGTERM; its log:\n{}",
        node.spec.node_id,
        node.log()
    );
}

#[test]
fn bo_databases_are_created_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(spec(dir.path(), 70, 1, &[("BO_DATABASES", "log2, log1")]));
    assert_eq!(databases(&node), ["log1", "log2"]);

    // At the next start they exist already: no error, no duplicates, others kept.
    ok(&node, "CREATE DATABASE extra");
    stop(&mut node);
    restart(&mut node);
    assert_eq!(databases(&node), ["extra", "log1", "log2"]);

    // Dropping one that BO_DATABASES names brings it back at the next start only.
    ok(&node, "DROP DATABASE log1");
    assert_eq!(databases(&node), ["extra", "log2"]);
    stop(&mut node);
    restart(&mut node);
    assert_eq!(databases(&node), ["extra", "log1", "log2"]);
}

#[test]
fn created_databases_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(spec(dir.path(), 71, 1, &[]));
    assert!(databases(&node).is_empty());
    ok(&node, "CREATE DATABASE kept");
    ok(&node, "CREATE DATABASE also_kept");
    stop(&mut node);
    restart(&mut node);
    assert_eq!(databases(&node), ["also_kept", "kept"]);
    // And the catalog still works after the restart.
    let (status, body) = sql(&node, "CREATE DATABASE kept");
    assert_eq!(status, 400, "{body}");
    ok(&node, "DROP DATABASE kept");
    assert_eq!(databases(&node), ["also_kept"]);
}

#[test]
fn a_created_database_survives_kill_9_right_after_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(spec(dir.path(), 72, 1, &[]));
    for round in 0..3 {
        let name = format!("crash_{round}");
        ok(&node, &format!("CREATE DATABASE {name}"));
        node.kill();
        restart(&mut node);
        let names = databases(&node);
        assert!(
            names.contains(&name),
            "{name} acknowledged, then kill -9: lost after restart ({names:?}); log:\n{}",
            node.log()
        );
    }
    assert_eq!(databases(&node), ["crash_0", "crash_1", "crash_2"]);
}

#[test]
fn a_dropped_database_stays_gone_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(spec(dir.path(), 73, 1, &[("BO_DATABASES", "stay")]));
    ok(&node, "CREATE DATABASE doomed");
    stop(&mut node);
    restart(&mut node);
    assert_eq!(databases(&node), ["doomed", "stay"]);

    ok(&node, "DROP DATABASE doomed");
    node.kill();
    restart(&mut node);
    assert_eq!(
        databases(&node),
        ["stay"],
        "a dropped database came back after kill -9; log:\n{}",
        node.log()
    );
    // The name can be used again.
    ok(&node, "CREATE DATABASE doomed");
    assert_eq!(databases(&node), ["doomed", "stay"]);
}

/// Waits until every observer shows `databases` for `node_id`; panics with the logs otherwise.
fn expect_databases(observers: &[&LocalNode], node_id: &str, databases: &str) {
    for observer in observers {
        let seen = wait_for(DEADLINE, || {
            (node_column(observer, node_id, "databases").as_deref() == Some(databases))
                .then_some(())
        });
        if seen.is_none() {
            panic!(
                "{} never showed databases {databases:?} for {node_id} (last: {:?}); its log:\n{}",
                observer.spec.node_id,
                node_column(observer, node_id, "databases"),
                observer.log()
            );
        }
    }
}

#[test]
fn databases_are_advertised_to_the_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let seeds = [("BO_SEEDS", "127.0.74.1:9091")];
    let n1 = start(spec(dir.path(), 74, 1, &[]));
    let n2 = start(spec(dir.path(), 74, 2, &seeds));
    let n3 = start(spec(dir.path(), 74, 3, &seeds));
    for observer in [&n1, &n2] {
        expect_status(observer, "n74-3", "alive");
    }
    expect_databases(&[&n1, &n2, &n3], "n74-3", "");

    ok(&n3, "CREATE DATABASE b");
    ok(&n3, "CREATE DATABASE a");
    expect_databases(&[&n1, &n2, &n3], "n74-3", "a,b");
    // Only n3 has them: the other rows stay empty, and the others' catalogs too.
    expect_databases(&[&n1, &n2, &n3], "n74-1", "");
    expect_databases(&[&n1, &n2, &n3], "n74-2", "");
    assert!(databases(&n1).is_empty());

    ok(&n3, "DROP DATABASE a");
    expect_databases(&[&n1, &n2, &n3], "n74-3", "b");

    // Another node's databases travel the same way, in the other direction.
    ok(&n1, "CREATE DATABASE from_one");
    expect_databases(&[&n2, &n3], "n74-1", "from_one");
    ok(&n3, "DROP DATABASE b");
    expect_databases(&[&n1, &n2], "n74-3", "");
}
