//! Shared test helpers: real node processes on a loopback address block of the test's own.
//!
//! Each test takes a distinct `block` (the third octet of 127.0.<block>.x), so tests that run
//! in parallel never share addresses. Nodes are killed when dropped, also on failure.

#![allow(dead_code, unused_imports)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

pub use bocluster::fleet::{node_column, node_status, rows_as_maps, wait_for, LocalNode, NodeSpec};

/// Generous deadline for anything that should take a few seconds: polls end as soon as
/// the condition holds, so a slow CI machine only waits longer, it does not fail.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The built `bocluster` binary.
pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bocluster"))
}

/// 127.0.<block>.<host>
pub fn ip(block: u8, host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, block, host))
}

/// A spec for node `host` of `block`, data under `dir`; probes fast so tests finish soon.
pub fn spec(dir: &Path, block: u8, host: u8, env: &[(&str, &str)]) -> NodeSpec {
    let node_id = format!("n{block}-{host}");
    let mut all_env: Vec<(String, String)> = vec![
        ("BO_PROBE_INTERVAL".into(), "300ms".into()),
        ("BO_PROBE_TIMEOUT".into(), "100ms".into()),
        ("BO_SUSPECT_TIMEOUT".into(), "600ms".into()),
        ("BO_ANTI_ENTROPY_INTERVAL".into(), "1s".into()),
    ];
    all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    NodeSpec {
        data_dir: dir.join(&node_id),
        node_id,
        ip: ip(block, host),
        env: all_env,
    }
}

/// A strong cluster key (32 bytes, base64) that is the same for the same `label`: SHA-256 of
/// the label. Tests that need several processes to share a key, or a second process to hold
/// another one, name it; weak keys are refused at start.
pub fn test_key(label: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, label.as_bytes());
    let key = data_encoding::BASE64.encode(digest.as_ref());
    bocluster::cluster_key::ClusterKeys::parse(&key).unwrap_or_else(|e| {
        panic!("test key {label:?} fails the key checks ({e}); pick another label")
    });
    key
}

/// Starts a node and waits until its API answers.
pub fn start(spec: NodeSpec) -> LocalNode {
    let mut node = LocalNode::start(exe(), spec).expect("spawn bocluster node");
    if let Err(e) = node.wait_healthy(DEADLINE) {
        panic!("{e}");
    }
    node
}

/// Waits until `observer` lists `node_id` with `status`; panics with the logs otherwise.
pub fn expect_status(observer: &LocalNode, node_id: &str, status: &str) {
    let seen = wait_for(DEADLINE, || {
        (node_status(observer, node_id).as_deref() == Some(status)).then_some(())
    });
    if seen.is_none() {
        panic!(
            "{} never showed {node_id} as {status:?} (last: {:?}); observer log:\n{}",
            observer.spec.node_id,
            node_status(observer, node_id),
            observer.log()
        );
    }
}

/// A statement's answer: (HTTP status, JSON body); panics if the node is unreachable.
pub fn sql(node: &LocalNode, statement: &str) -> (u16, serde_json::Value) {
    node.sql(statement).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a statement that must succeed (HTTP 200, retcode 0) and returns the answer.
pub fn ok(node: &LocalNode, statement: &str) -> serde_json::Value {
    let (status, body) = sql(node, statement);
    assert_eq!(status, 200, "{statement:?} answered {body}");
    assert_eq!(body["retcode"], 0, "{statement:?} answered {body}");
    body
}

/// A SHOW CLUSTER row: (ip, port, db, source, status, node_id).
pub type ClusterRow = (String, u64, String, String, String, String);

/// One answer row as a [`ClusterRow`]; panics on a malformed row.
pub fn cluster_row(r: &serde_json::Map<String, serde_json::Value>) -> ClusterRow {
    let text = |k: &str| {
        r.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_else(|| panic!("column {k} is not a string in {r:?}"))
            .to_string()
    };
    let port = r
        .get("port")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("port is not a number in {r:?}"));
    (
        text("ip"),
        port,
        text("db"),
        text("source"),
        text("status"),
        text("node_id"),
    )
}

/// SHOW CLUSTER on `node`, in the order the node gives.
pub fn show_cluster(node: &LocalNode) -> Vec<ClusterRow> {
    node.query("SHOW CLUSTER")
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", node.log()))
        .iter()
        .map(cluster_row)
        .collect()
}

/// Expected rows written as tuples of string slices.
pub fn expected_rows(expected: &[(&str, u64, &str, &str, &str, &str)]) -> Vec<ClusterRow> {
    expected
        .iter()
        .map(|(ip, port, db, source, status, node)| {
            (
                ip.to_string(),
                *port,
                db.to_string(),
                source.to_string(),
                status.to_string(),
                node.to_string(),
            )
        })
        .collect()
}

/// Runs a command to completion; its stderr in the error.
pub fn run_cmd(program: &str, args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Moves the calling thread into a new network namespace with its loopback up. Processes it
/// spawns and connections it makes live there; the namespace goes away with them. Needs root.
pub fn enter_private_netns() -> Result<(), String> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))?;
    run_cmd("ip", &["link", "set", "lo", "up"])
}

/// Node ids and statuses of an observer's SHOW NODES.
pub fn statuses(observer: &LocalNode) -> Vec<(String, String)> {
    observer
        .query("SHOW NODES")
        .unwrap_or_default()
        .into_iter()
        .map(|row| {
            let get = |k: &str| {
                row.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            (get("node_id"), get("status"))
        })
        .collect()
}

/// The node's `/metrics`, parsed; panics if the node does not answer 200.
pub fn scrape(node: &LocalNode) -> prometheus_parse::Scrape {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(node.http_addr()).expect("connect to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "/metrics answered {answer:?}"
    );
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("Prometheus text format")
}

/// The counter `metric` with the given labels, or `None` when the scrape has no such sample
/// (a counter a family has not seen yet is absent).
pub fn counter(
    scrape: &prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match &s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => Some(*v),
            _ => None,
        })
}
