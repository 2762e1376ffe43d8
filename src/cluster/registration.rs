//! The client side of `BO_MASTER`: introduce this node to each master and advertise the
//! masters' node ids in gossip, which is what registers all its databases with them.
//!
//! A master that is not up yet is retried with backoff, whatever the start order; the log
//! says so at a sane rate and hints at the usual cause behind Docker port mapping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::cluster::master::introduction;
use crate::context::NodeContext;
use crate::wire::{Request, Response};

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often a reached master is asked again (it may have been replaced by another node).
const REFRESH: Duration = Duration::from_secs(30);
/// One attempt's time limit.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(5);
/// "Still unreachable" is logged at most this often per master.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Asks the master at `address` (`host:port`) for its node id.
async fn hello(ctx: &NodeContext, address: &str) -> Result<(SocketAddr, String), String> {
    let addrs = crate::resolve::resolve_host_port(address)
        .await
        .map_err(|e| format!("cannot resolve {address}: {e}"))?;
    // The hello registers this node's databases with the master at once; advertising the
    // master's node id in gossip (below) keeps the registration current.
    let request = Request::Hello {
        node: introduction(ctx),
        register: true,
    };
    let mut last_error = format!("{address} resolved to no address");
    for addr in addrs {
        match ctx.transport.request(addr, &request, ATTEMPT_LIMIT).await {
            Ok(Response::Hello { node }) => return Ok((addr, node.node_id)),
            Ok(Response::Error { message }) => last_error = format!("{addr} answered: {message}"),
            Ok(Response::NodeIdInUse { endpoint }) => {
                last_error = format!(
                    "{addr} refuses: it lists node id {} alive at {endpoint}, and it answers there",
                    ctx.identity.node_id
                )
            }
            Ok(other) => last_error = format!("{addr} answered something else: {other:?}"),
            Err(e) => last_error = e.to_string(),
        }
    }
    Err(last_error)
}

/// Keeps this node registered with the master at `address`, until the task is aborted.
/// `registered`: the node's start registered it there already (see `first_contact`).
pub async fn keep_registered(ctx: Arc<NodeContext>, address: String, registered: bool) {
    if registered {
        tokio::time::sleep(REFRESH).await;
    }
    let mut backoff = FIRST_BACKOFF;
    let mut failures: u64 = 0;
    let mut last_warned: Option<Instant> = None;
    loop {
        match hello(&ctx, &address).await {
            Ok((addr, master_id)) => {
                if let Some(list) = ctx.master_ids.record(&address, &master_id) {
                    ctx.membership.set_masters(list).await;
                }
                // Push the registration now rather than at the next round.
                ctx.membership.join_through(addr);
                failures = 0;
                backoff = FIRST_BACKOFF;
                last_warned = None;
                tokio::time::sleep(REFRESH).await;
            }
            Err(error) => {
                failures += 1;
                let due = last_warned.is_none_or(|at| at.elapsed() >= WARN_EVERY);
                if due {
                    last_warned = Some(Instant::now());
                    warn!(
                        master = %address,
                        attempts = failures,
                        error = %error,
                        "master does not answer yet; retrying with backoff. If it runs in a container, its QUIC port must be published as UDP (e.g. -p 9091:9091/udp), and BO_MASTER must name the published address"
                    );
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
