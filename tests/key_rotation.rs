//! Cluster keys between real node processes: `bocluster keygen`, and a key rotation by rolling
//! restarts (add the new key, promote it, drop the old one) during which every node keeps
//! seeing every other `alive`, and none ever refuses another's sealed datagrams or TLS
//! handshake (a node that opened datagrams with its first key only, or trusted only its first
//! key's CA, fails here).
//!
//! Address block used here: 127.0.157.x.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bocluster::cluster_key::ClusterKeys;
use common::*;

const BLOCK: u8 = 157;

/// A new key from `bocluster keygen`, checked to be what a node accepts.
fn keygen() -> String {
    let out = Command::new(exe())
        .arg("keygen")
        .output()
        .expect("run bocluster keygen");
    assert!(out.status.success(), "keygen failed: {out:?}");
    let key = String::from_utf8(out.stdout).expect("keygen prints text");
    let key = key.trim_end_matches('\n').to_string();
    assert_eq!(key.len(), 44, "32 bytes in padded base64: {key:?}");
    ClusterKeys::parse(&key).unwrap_or_else(|e| panic!("keygen's key is refused: {e}"));
    key
}

/// Waits until every node lists every node of `nodes` as `alive`; panics with the views and
/// the logs otherwise.
fn expect_all_alive(nodes: &[LocalNode], when: &str) {
    let ids: Vec<&str> = nodes.iter().map(|n| n.spec.node_id.as_str()).collect();
    let all_alive = |observer: &LocalNode| {
        let seen = statuses(observer);
        ids.iter()
            .all(|id| seen.iter().any(|(n, s)| n == id && s == "alive"))
    };
    let converged = wait_for(DEADLINE, || nodes.iter().all(all_alive).then_some(()));
    if converged.is_none() {
        let views: Vec<String> = nodes
            .iter()
            .map(|n| format!("{}: {:?}", n.spec.node_id, statuses(n)))
            .collect();
        let logs: Vec<String> = nodes
            .iter()
            .map(|n| format!("--- {} ---\n{}", n.spec.node_id, n.log()))
            .collect();
        panic!(
            "{when}: not every node sees every other alive:\n{}\n{}",
            views.join("\n"),
            logs.join("\n")
        );
    }
}

/// Sets the node's BO_CLUSTER_KEY for its next start.
fn set_key(node: &mut LocalNode, keys: &str) {
    node.spec.env.retain(|(k, _)| k != "BO_CLUSTER_KEY");
    node.spec
        .env
        .push(("BO_CLUSTER_KEY".to_string(), keys.to_string()));
}

#[test]
fn keygen_prints_a_new_strong_key_each_time() {
    let a = keygen();
    let b = keygen();
    assert_ne!(a, b);
}

#[test]
fn rolling_restarts_add_promote_and_drop_a_key_and_no_node_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = keygen();
    let k2 = keygen();
    // Every node seeds from all three, so the one restarted (the seed too) finds the others.
    let seed = format!("127.0.{BLOCK}.1:9091,127.0.{BLOCK}.2:9091,127.0.{BLOCK}.3:9091");
    let mut nodes: Vec<LocalNode> = (1..=3)
        .map(|host| {
            start(spec(
                dir.path(),
                BLOCK,
                host,
                &[("BO_CLUSTER_KEY", &k1), ("BO_SEEDS", &seed)],
            ))
        })
        .collect();
    expect_all_alive(&nodes, "all on K1");

    let steps = [
        ("K2 accepted", format!("{k1},{k2}")),
        ("K2 promoted", format!("{k2},{k1}")),
        ("K1 dropped", k2.clone()),
    ];
    for (step, keys) in &steps {
        for i in 0..nodes.len() {
            // The way an operator restarts a node: a clean stop, then a start with new settings.
            assert!(
                nodes[i].stop(Duration::from_secs(10)),
                "{step}: {} did not stop on SIGTERM",
                nodes[i].spec.node_id
            );
            set_key(&mut nodes[i], keys);
            let started = Instant::now();
            nodes[i].restart().expect("restart the node");
            if let Err(e) = nodes[i].wait_healthy(DEADLINE) {
                panic!("{step}: {e}\n{}", nodes[i].log());
            }
            let id = nodes[i].spec.node_id.clone();
            expect_all_alive(&nodes, &format!("{step}, after restarting {id}"));
            eprintln!(
                "MEASURED rotation: {step}: {id} restarted and seen alive by all in {} ms",
                started.elapsed().as_millis()
            );
        }
    }

    // Nothing between the three was ever refused: no datagram that failed to open, no TLS
    // handshake that failed (a refusal is logged as a warning naming the peer's address).
    for node in &nodes {
        let log = node.log();
        let refusals: Vec<&str> = log
            .lines()
            .filter(|line| line.contains("WARN"))
            .filter(|line| {
                nodes
                    .iter()
                    .any(|n| line.contains(&n.quic_addr().to_string()))
            })
            .collect();
        assert!(
            refusals.is_empty(),
            "{} warned about a member during the rotation:\n{}",
            node.spec.node_id,
            refusals.join("\n")
        );
    }

    // K1 is really gone: a node that holds only K1 is refused by the cluster, and logged.
    let straggler = start(spec(
        dir.path(),
        BLOCK,
        4,
        &[("BO_CLUSTER_KEY", &k1), ("BO_SEEDS", &seed)],
    ));
    let straggler_ip = format!("127.0.{BLOCK}.4");
    let refused = wait_for(DEADLINE, || {
        nodes[0].log().contains(&straggler_ip).then_some(())
    });
    assert!(
        refused.is_some(),
        "the seed never logged refusing {straggler_ip}; log:\n{}",
        nodes[0].log()
    );
    for observer in &nodes {
        let seen = statuses(observer);
        assert!(
            !seen.iter().any(|(n, _)| n == &straggler.spec.node_id),
            "{} lists the node that holds only the dropped key: {seen:?}",
            observer.spec.node_id
        );
    }
    expect_all_alive(&nodes, "after the straggler was refused");
}
