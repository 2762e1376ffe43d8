//! The HTTP statement API (the shape of BigObject's REST API).
//!
//! - `POST /api` with `{"stmt": "..."}` -> `{"retcode": 0, "columns": [...], "results": [...]}`
//!   or `{"retcode": <negative>, "errmsg": "..."}` with 400 (bad statement) or 500 (node fault).
//! - `GET /health` -> `{"status": "ok", "node_id": "..."}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

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

/// The statement in a request body, or why there is none.
fn statement_of(body: &[u8]) -> Result<String, ExecError> {
    let bad = |errmsg: String| ExecError {
        http_status: 400,
        retcode: retcode::BAD_REQUEST,
        errmsg,
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    match value.get("stmt") {
        Some(Value::String(stmt)) if value.is_object() => Ok(stmt.clone()),
        Some(other) if value.is_object() => Err(bad(format!(
            "\"stmt\" must be a string, found {}",
            json_kind(other)
        ))),
        _ => Err(bad(
            "request body must be a JSON object with a string field \"stmt\", e.g. {\"stmt\": \"SHOW NODES\"}"
                .to_string(),
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

async fn post_statement(
    State(ctx): State<Arc<NodeContext>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let errmsg = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("request body is larger than {MAX_BODY_BYTES} bytes")
            } else {
                format!("cannot read the request body: {rejection}")
            };
            return error_response(ExecError {
                http_status: status.as_u16(),
                retcode: retcode::BAD_REQUEST,
                errmsg,
            });
        }
    };
    let stmt = match statement_of(&body) {
        Ok(stmt) => stmt,
        Err(e) => return error_response(e),
    };
    match execute_text(&ctx, &stmt).await {
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
