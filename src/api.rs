//! The HTTP statement API (the shape of BigObject's REST API).
//!
//! - `POST /api` with `{"stmt": "..."}` -> `{"retcode": 0, "columns": [...], "results": [...]}`
//!   or `{"retcode": <negative>, "errmsg": "..."}` with 400 (bad statement) or 500 (node fault).
//! - `GET /health` -> `{"status": "ok", "node_id": "..."}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::exec::execute_text;
use crate::node::NodeContext;
use crate::reply::{retcode, ExecError};

/// Largest accepted request body; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

pub fn router(ctx: Arc<NodeContext>) -> Router {
    Router::new()
        .route("/api", post(post_statement))
        .route("/health", get(health))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

#[derive(Deserialize)]
struct StatementRequest {
    stmt: String,
}

async fn post_statement(State(ctx): State<Arc<NodeContext>>, body: Bytes) -> Response {
    let request: StatementRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let errmsg = if e.is_data() {
                format!("request body must be a JSON object with a string field \"stmt\": {e}")
            } else {
                format!("request body is not valid JSON: {e}")
            };
            return error_response(ExecError {
                http_status: 400,
                retcode: retcode::BAD_REQUEST,
                errmsg,
            });
        }
    };
    match execute_text(&ctx, &request.stmt).await {
        Ok(reply) => {
            let mut body = json!({
                "retcode": 0,
                "columns": reply.columns,
                "results": reply.results,
            });
            if let Some(message) = reply.message {
                body["message"] = json!(message);
            }
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => error_response(e),
    }
}

fn error_response(e: ExecError) -> Response {
    let status = StatusCode::from_u16(e.http_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        Json(json!({"retcode": e.retcode, "errmsg": e.errmsg})),
    )
        .into_response()
}

async fn health(State(ctx): State<Arc<NodeContext>>) -> Response {
    Json(json!({"status": "ok", "node_id": ctx.identity.node_id})).into_response()
}
