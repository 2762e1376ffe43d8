//! The master side, in the background: apply registrations as gossip brings them, answer
//! clients' introductions, and dial added clients that are not live yet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::node::NodeContext;
use crate::transport::IncomingRequest;
use crate::wire::{Introduction, Request, Response};

/// How long one introduction to a client may take before it counts as unanswered.
const INTRODUCTION_LIMIT: Duration = Duration::from_secs(3);

/// How long ADD CLIENT waits for the client's answer to its introduction: a round trip and a
/// QUIC handshake on any network a master and its clients share.
pub const ADD_CLIENT_WAIT: Duration = Duration::from_millis(250);

/// How often unreachable or dead entries are dialled, and DNS names re-resolved.
pub const REACH_OUT_EVERY: Duration = Duration::from_secs(2);
/// Endpoints dialled per round at most (a large cluster is covered over several rounds).
const REACH_OUT_BATCH: usize = 256;

/// Applies registrations whenever the member snapshot changes.
pub async fn apply_registrations(ctx: Arc<NodeContext>) {
    let mut members = ctx.gossip.watch_members();
    loop {
        let snapshot = members.borrow_and_update().clone();
        if let Err(e) = ctx
            .cluster
            .apply_registrations(&ctx.identity.node_id, &snapshot)
        {
            warn!(error = %e, "cannot record a registration; will retry on the next change");
        }
        if members.changed().await.is_err() {
            return;
        }
    }
}

/// Answers requests from peers.
pub async fn serve_requests(ctx: Arc<NodeContext>, mut requests: mpsc::Receiver<IncomingRequest>) {
    while let Some(incoming) = requests.recv().await {
        let response = match incoming.request {
            Request::Hello { node, register } => {
                debug!(from = %incoming.from, peer = %node.node_id, generation = node.generation, register, "hello");
                answer_hello(&ctx, node, register)
            }
        };
        let _ = incoming.reply.send(response);
    }
}

/// A peer introduced itself: record the contact and, for a `BO_MASTER` client, its
/// registration (durable before the answer, so an answered hello is never lost).
fn answer_hello(ctx: &NodeContext, node: Introduction, register: bool) -> Response {
    if register {
        if let Err(e) = ctx.cluster.register_introduction(&node) {
            warn!(client = %node.node_id, error = %e, "cannot record a registration");
            return Response::Error {
                message: format!("the master cannot record the registration: {e}"),
            };
        }
    }
    ctx.cluster.record_contact(node);
    Response::Hello {
        node: introduction(ctx),
    }
}

/// This node's introduction: who it is, where it is reached, what it serves.
pub fn introduction(ctx: &NodeContext) -> Introduction {
    Introduction {
        node_id: ctx.identity.node_id.clone(),
        generation: ctx.identity.generation,
        endpoint: ctx.config.endpoint,
        host: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        databases: ctx
            .catalog
            .list()
            .iter()
            .map(|name| name.as_str().to_string())
            .collect(),
    }
}

/// Introduces this node to a client at `addr`; its answer is proof of life (see
/// [`super::contacts`]).
pub async fn introduce_to(ctx: &NodeContext, addr: SocketAddr) {
    let request = Request::Hello {
        node: introduction(ctx),
        register: false,
    };
    match ctx
        .transport
        .request(addr, &request, INTRODUCTION_LIMIT)
        .await
    {
        Ok(Response::Hello { node }) => ctx.cluster.record_contact(node),
        Ok(Response::Error { message }) => debug!(%addr, message, "a client refused our hello"),
        Err(e) => debug!(%addr, error = %e, "a client does not answer our hello"),
    }
}

/// Starts a gossip exchange and an introduction with the client at `addrs` (an ADD CLIENT),
/// waiting at most [`ADD_CLIENT_WAIT`] for its answer, so that a reachable client is already
/// `alive` when the statement returns. One that answers later is found by [`reach_out`].
pub async fn introduce_now(ctx: &NodeContext, addrs: Vec<SocketAddr>) {
    for addr in &addrs {
        ctx.gossip.gossip_with(*addr);
    }
    let _ = tokio::time::timeout(ADD_CLIENT_WAIT, async {
        for addr in addrs {
            introduce_to(ctx, addr).await;
        }
    })
    .await;
}

/// Resolves the entries' DNS names and dials entries whose client is not live.
pub async fn reach_out(ctx: Arc<NodeContext>) {
    let mut ticker = tokio::time::interval(REACH_OUT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = 0usize;
    loop {
        ticker.tick().await;
        reach_out_once(&ctx, &mut cursor).await;
    }
}

/// One round: refresh DNS answers, then start a gossip exchange and an introduction with a
/// batch of targets.
pub async fn reach_out_once(ctx: &Arc<NodeContext>, cursor: &mut usize) {
    for name in ctx.cluster.dns_names() {
        resolve_into(ctx, &name).await;
    }
    dial_unreached(ctx, cursor);
}

/// Starts a gossip exchange and an introduction with (a batch of) the entries whose client is
/// not live, with the DNS answers already known. An answered introduction lists the client
/// alive at once (a master that restarted has its clients back within a round trip).
fn dial_unreached(ctx: &Arc<NodeContext>, cursor: &mut usize) {
    let targets = ctx.cluster.endpoints_to_reach(&ctx.gossip.members());
    if targets.is_empty() {
        return;
    }
    *cursor %= targets.len();
    for addr in targets
        .iter()
        .cycle()
        .skip(*cursor)
        .take(REACH_OUT_BATCH.min(targets.len()))
    {
        ctx.gossip.gossip_with(*addr);
        let (ctx, addr) = (ctx.clone(), *addr);
        tokio::spawn(async move { introduce_to(&ctx, addr).await });
    }
    *cursor += REACH_OUT_BATCH;
}

/// Resolves `name` (port irrelevant) and records the answer; failures keep the old answer.
pub async fn resolve_into(ctx: &NodeContext, name: &str) {
    match crate::resolve::resolve_host(name).await {
        Ok(ips) => ctx.cluster.set_resolved(name, ips),
        Err(e) => debug!(name, error = %e, "cannot resolve a client name yet"),
    }
}
