//! The node's tasks behind its events: they publish membership changes and changes of this
//! node's cluster entries on [`Events`], and run `BO_EVENT_HANDLER` once per event.
//!
//! Kept apart from [`crate::events`] (the event types and the channel, which the node's shared
//! context holds) because these tasks read that context.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::context::NodeContext;
use crate::events::{diff_entries, run_once, EventKind};

/// How often the entries are compared even when nothing announced a change (contacts expire,
/// DNS names resolve).
const ENTRY_RECHECK: Duration = Duration::from_secs(1);

/// The tasks that feed the events (and run `BO_EVENT_HANDLER` when set); they end when
/// aborted with the node.
pub fn spawn(ctx: Arc<NodeContext>) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        tokio::spawn(watch_members(ctx.clone())),
        tokio::spawn(watch_entries(ctx.clone())),
    ];
    if let Some(handler) = ctx.config.event_handler.clone() {
        tasks.push(tokio::spawn(run_handler(
            ctx.clone(),
            handler,
            ctx.config.event_handler_timeout,
        )));
    }
    tasks
}

async fn watch_members(ctx: Arc<NodeContext>) {
    let mut changes = ctx.membership.subscribe_changes();
    loop {
        match changes.recv().await {
            Ok(change) => {
                ctx.events.publish(EventKind::of_change(&change));
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "membership changed faster than events were published"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn watch_entries(ctx: Arc<NodeContext>) {
    let mut members = ctx.membership.watch_members();
    let mut rows = ctx.cluster.rows(&members.borrow_and_update());
    let mut recheck = tokio::time::interval(ENTRY_RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = members.changed() => if changed.is_err() { return },
            () = ctx.events.cluster_change() => {}
            _ = recheck.tick() => {}
        }
        let snapshot = members.borrow_and_update().clone();
        let next = ctx.cluster.rows(&snapshot);
        for kind in diff_entries(&rows, &next) {
            ctx.events.publish(kind);
        }
        rows = next;
    }
}

/// Runs `handler` once per event, one run at a time, each within `timeout`. Events that come
/// while it runs wait in the channel; if it falls more than the channel behind, the missed ones
/// are logged and counted, never waited for.
async fn run_handler(ctx: Arc<NodeContext>, handler: PathBuf, timeout: Duration) {
    let (_, mut events) = ctx.events.subscribe_since(u64::MAX);
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(handler = %handler.display(), skipped = n, "the event handler is too slow; events skipped");
                for _ in 0..n {
                    ctx.metrics.event_handler_run("skipped");
                }
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let outcome = run_once(&handler, &event, &ctx.identity.node_id, timeout).await;
        ctx.metrics.event_handler_run(outcome);
    }
}
