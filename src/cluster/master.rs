//! The master side, in the background: apply registrations as gossip brings them, answer
//! clients' introductions, and dial added clients that are not live yet.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::node::NodeContext;
use crate::transport::IncomingRequest;
use crate::wire::{Request, Response};

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
            Request::Hello {
                node_id,
                generation,
            } => {
                debug!(from = %incoming.from, client = %node_id, generation, "hello from a client");
                Response::Hello {
                    node_id: ctx.identity.node_id.clone(),
                    generation: ctx.identity.generation,
                }
            }
        };
        let _ = incoming.reply.send(response);
    }
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

/// One round: refresh DNS answers, then start a gossip exchange with a batch of targets.
pub async fn reach_out_once(ctx: &NodeContext, cursor: &mut usize) {
    for name in ctx.cluster.dns_names() {
        resolve_into(ctx, &name).await;
    }
    dial_unreached(ctx, cursor);
}

/// Starts a gossip exchange with (a batch of) the entries whose client is not live, with
/// the DNS answers already known.
fn dial_unreached(ctx: &NodeContext, cursor: &mut usize) {
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
