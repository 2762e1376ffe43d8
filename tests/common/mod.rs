//! Shared test helpers: real node processes on a loopback address block of the test's own.
//!
//! Each test takes a distinct `block` (the third octet of 127.0.<block>.x), so tests that run
//! in parallel never share addresses. Nodes are killed when dropped, also on failure.

#![allow(dead_code, unused_imports)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

pub use bocluster::fleet::{node_status, rows_as_maps, wait_for, LocalNode, NodeSpec};

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

/// A spec for node `host` of `block`, data under `dir`; gossip fast so tests finish soon.
pub fn spec(dir: &Path, block: u8, host: u8, env: &[(&str, &str)]) -> NodeSpec {
    let node_id = format!("n{block}-{host}");
    let mut all_env: Vec<(String, String)> = vec![("BO_GOSSIP_INTERVAL".into(), "100ms".into())];
    all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    NodeSpec {
        data_dir: dir.join(&node_id),
        node_id,
        ip: ip(block, host),
        env: all_env,
    }
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
