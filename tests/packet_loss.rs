//! Gossip keeps working with 10% packet loss.
//!
//! The test thread moves into a network namespace of its own (unshare), brings its loopback up
//! and drops 10% of all UDP packets with iptables there. Node processes spawned from this
//! thread live in that namespace too, and so do the HTTP requests this thread makes. The
//! namespace disappears with the thread and its processes. Needs root (CAP_SYS_ADMIN) and
//! iptables; without them the test prints a notice and skips.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Puts this thread in a fresh network namespace with 10% UDP loss on loopback.
fn lossy_namespace() -> Result<(), String> {
    enter_private_netns()?;
    run_cmd(
        "iptables",
        &[
            "-A",
            "INPUT",
            "-p",
            "udp",
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            "0.10",
            "-j",
            "DROP",
        ],
    )
}

#[test]
fn gossip_works_with_ten_percent_packet_loss() {
    if let Err(e) = lossy_namespace() {
        eprintln!("NOTICE: skipping the packet-loss test: cannot set up a lossy network namespace ({e}); run as root with iptables installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let block = 14;
    let seed = format!("127.0.{block}.1:9091");
    // The default probe timings (the LAN profile), as users run them.
    let defaults = [
        ("BO_SEEDS", seed.as_str()),
        ("BO_PROBE_INTERVAL", "1s"),
        ("BO_PROBE_TIMEOUT", "400ms"),
        ("BO_SUSPECT_TIMEOUT", "3s"),
    ];
    let nodes: Vec<LocalNode> = (1..=4)
        .map(|h| start(spec(dir.path(), block, h, &defaults)))
        .collect();
    for observer in &nodes {
        for h in 1..=4 {
            expect_status(observer, &format!("n14-{h}"), "alive");
        }
    }

    // No false alarm: for 10 s every node keeps seeing every other alive.
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        for node in &nodes {
            let rows = node.query("SHOW NODES").unwrap();
            assert_eq!(rows.len(), 4, "{} sees {rows:?}", node.spec.node_id);
            for row in &rows {
                assert_eq!(
                    row["status"], "alive",
                    "false alarm under 10% loss: {row:?} seen by {}",
                    node.spec.node_id
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Changes still spread.
    sql(&nodes[3], "CREATE DATABASE lossy");
    let spread = wait_for(DEADLINE, || {
        let rows = nodes[0].query("SHOW NODES").ok()?;
        rows.iter()
            .any(|r| r["node_id"] == "n14-4" && r["databases"] == "lossy")
            .then_some(())
    });
    assert!(
        spread.is_some(),
        "a database change did not spread under loss"
    );

    // The loss was real: the rule dropped packets.
    let out = Command::new("iptables")
        .args(["-L", "INPUT", "-v", "-n", "-x"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let dropped: u64 = listing
        .lines()
        .find(|l| l.contains("DROP"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        dropped > 10,
        "the loss rule dropped only {dropped} packets:\n{listing}"
    );
}
