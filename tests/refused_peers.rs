//! Refusals are counted on `GET /metrics`: a node of another cluster key that tries to join
//! fails its TLS handshake and both sides count it (`bocluster_tls_handshake_failures_total`),
//! and datagrams on 9091 that the seal refuses are counted by the seal's reason
//! (`bocluster_datagrams_refused_total`), every one of them, while the log names the sender
//! once a minute. Nodes that share the key count nothing.
//!
//! Address block used here: 127.0.160.x.

mod common;

use std::net::{SocketAddr, UdpSocket};

use common::*;

const BLOCK: u8 = 160;

fn tls_failures(node: &LocalNode) -> f64 {
    let scrape = scrape(node);
    counter(&scrape, "bocluster_tls_handshake_failures_total", &[])
        .expect("the TLS counter is always served")
}

/// Every `bocluster_datagrams_refused_total` sample: (reason, count).
fn datagrams_refused(node: &LocalNode) -> Vec<(String, f64)> {
    scrape(node)
        .samples
        .iter()
        .filter(|s| s.metric == "bocluster_datagrams_refused_total")
        .map(|s| {
            let reason = s.labels.get("reason").unwrap_or_default().to_string();
            let value = match &s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => *v,
                other => panic!("not a counter: {other:?}"),
            };
            (reason, value)
        })
        .collect()
}

fn refused_for(node: &LocalNode, reason: &str) -> f64 {
    datagrams_refused(node)
        .iter()
        .find(|(r, _)| r == reason)
        .map_or(0.0, |(_, n)| *n)
}

/// Asserts that `node` has counted no refusal of any kind.
fn expect_nothing_refused(node: &LocalNode, when: &str) {
    assert_eq!(
        tls_failures(node),
        0.0,
        "{when}: {} counted a TLS handshake failure; log:\n{}",
        node.spec.node_id,
        node.log()
    );
    let refused = datagrams_refused(node);
    assert!(
        refused.is_empty(),
        "{when}: {} counted refused datagrams {refused:?}; log:\n{}",
        node.spec.node_id,
        node.log()
    );
}

#[test]
fn refused_handshakes_and_datagrams_are_counted_and_the_cluster_counts_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = test_key("refused-peers cluster");
    let other_key = test_key("refused-peers stranger");
    let seed = format!("127.0.{BLOCK}.1:9091");
    let victim = start(spec(dir.path(), BLOCK, 1, &[("BO_CLUSTER_KEY", &key)]));
    let member = start(spec(
        dir.path(),
        BLOCK,
        2,
        &[("BO_CLUSTER_KEY", &key), ("BO_SEEDS", &seed)],
    ));
    expect_status(&victim, &member.spec.node_id, "alive");
    expect_status(&member, &victim.spec.node_id, "alive");
    // Nodes of one key: QUIC handshakes and sealed datagrams, none refused.
    expect_nothing_refused(&victim, "before the stranger");
    expect_nothing_refused(&member, "before the stranger");

    // A node of another key tries to join through the victim: both sides count the failed
    // handshake (the victim accepting it, the stranger dialling).
    let stranger = start(spec(
        dir.path(),
        BLOCK,
        3,
        &[("BO_CLUSTER_KEY", &other_key), ("BO_SEEDS", &seed)],
    ));
    for node in [&victim, &stranger] {
        let counted = wait_for(DEADLINE, || (tls_failures(node) > 0.0).then_some(()));
        assert!(
            counted.is_some(),
            "{} never counted a TLS handshake failure; log:\n{}",
            node.spec.node_id,
            node.log()
        );
    }

    // Datagrams with bit 0x40 clear go to the seal, which refuses these. The refusals the
    // stranger may have caused come first; what is sent here is counted on top.
    let no_key_before = refused_for(&victim, "no_key_opens");
    let sender = UdpSocket::bind(SocketAddr::new(ip(BLOCK, 50), 0)).expect("bind a UDP socket");
    let target = victim.quic_addr();
    const GARBAGE: usize = 20;
    for i in 0..GARBAGE {
        // The seal's tag, then bytes no key opens (long enough not to be truncated).
        let mut datagram = vec![0x01u8];
        datagram.extend((0..99).map(|j| (i * 31 + j * 7) as u8));
        sender.send_to(&datagram, target).expect("send garbage");
    }
    sender
        .send_to(&[0x01, 0x02, 0x03], target)
        .expect("send a truncated datagram");
    sender
        .send_to(&[0x3f; 60], target)
        .expect("send a datagram of an unknown version");
    sender
        .send_to(&[0x80; 60], target)
        .expect("send a datagram with bit 0x80 set");
    let expected = [
        ("no_key_opens", no_key_before + GARBAGE as f64),
        ("truncated", 1.0),
        ("unknown_version", 1.0),
        ("not_sealed", 1.0),
    ];
    let all_counted = wait_for(DEADLINE, || {
        expected
            .iter()
            .all(|(reason, at_least)| refused_for(&victim, reason) >= *at_least)
            .then_some(())
    });
    assert!(
        all_counted.is_some(),
        "the victim counted {:?}, expected at least {expected:?}; log:\n{}",
        datagrams_refused(&victim),
        victim.log()
    );
    // Every refusal counted, but the sender logged once (once per IP per minute).
    let sender_ip = format!("{}:", ip(BLOCK, 50));
    let log = victim.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&sender_ip)).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one log line naming {sender_ip}, got:\n{}",
        lines.join("\n")
    );

    // The member never talked to the stranger nor received garbage: still nothing counted.
    expect_nothing_refused(&member, "after the stranger");
    expect_status(&victim, &member.spec.node_id, "alive");
}
