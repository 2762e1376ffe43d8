//! The HTTP doors beside `/api`: BigObject's legacy `POST /cmd`, the event stream
//! `GET /events`, Prometheus' `GET /metrics` and the live cluster page `GET /`.
//!
//! [`routes`] is merged into the API's router, so these share its limits and timeouts. When
//! `BO_API_TOKEN` is set, `/cmd`, `/events` and `/metrics` need it as `/api` does (the
//! events also as `?token=`); the page and its script load without it, as they hold no
//! cluster data: the script asks for the token when `/api` or `/events` answers 401.

pub mod cmd;
pub mod events;
pub mod page;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::{require_token, require_token_or_query};
use crate::context::NodeContext;

/// The routes of this module, with their state.
pub fn routes(ctx: Arc<NodeContext>) -> Router {
    let token = ctx.config.api_token.clone();
    let guarded = Router::new()
        .route("/cmd", post(cmd::post_cmd))
        .route("/metrics", get(get_metrics));
    let events = Router::new().route("/events", get(events::get_events));
    Router::new()
        .merge(require_token(guarded, token.clone()))
        .merge(require_token_or_query(events, token))
        .route("/", get(page::get_page))
        .route("/page.js", get(page::get_script))
        .with_state(ctx)
}

/// `GET /metrics`: every metric, members and entries counted from the current snapshots.
async fn get_metrics(State(ctx): State<Arc<NodeContext>>) -> Response {
    let members = ctx.membership.members();
    let rows = ctx.cluster.rows(&members);
    let text = ctx.metrics.encode(&members, &rows, &ctx.membership.stats());
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}
