//! The HTTP statement API (the shape of BigObject's REST API).
//!
//! - `POST /api` with `{"stmt": "..."}` -> `{"retcode": 0, "columns": [...], "results": [...]}`
//!   or `{"retcode": <negative>, "errmsg": "..."}` with 400 (bad statement) or 500 (node fault).
//! - `GET /health` -> `{"status": "ok", "node_id": "..."}`.
//!
//! [`serve`] serves it over HTTP/1.1 with read timeouts, so that connections that never finish
//! a request do not hold the node's file descriptors.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tower_http::timeout::{RequestBodyTimeout, TimeoutError};
use tracing::{debug, warn};

use crate::exec::execute_text;
use crate::node::NodeContext;
use crate::reply::{retcode, ExecError};

/// Largest accepted request body; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How long a client has to send a whole request head, counted from when the node starts
/// waiting for one: from the connection's start, and from the end of each answer on a kept-alive
/// connection (so it is the idle keep-alive timeout as well). A connection that sends nothing,
/// or half a head, is closed after this: without a limit, enough of them hold every file
/// descriptor the node has. A head is a few hundred bytes, one TCP segment: 10 s leaves room for
/// several retransmissions on a lossy edge link, and an idle client reconnects cheaply.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request body may stall: the longest wait for its next piece, restarted by every
/// piece that arrives, so a slow but moving upload is never cut off. A body that stops coming
/// (a client that sent half of it and waits) is answered 408 and its connection closed.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves `router` over HTTP/1.1 on `listener` until `stop` completes; then stops accepting,
/// closes idle connections, lets the others finish the request they are in, and returns when
/// every connection is closed.
pub async fn serve(listener: TcpListener, router: Router, stop: impl Future<Output = ()>) {
    let service = TowerToHyperService::new(RequestBodyTimeout::new(router, BODY_READ_TIMEOUT));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let connection =
                    graceful.watch(http.serve_connection(TokioIo::new(stream), service.clone()));
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        debug!(%peer, error = %e, "HTTP connection closed");
                    }
                });
            }
            // Gone before it was accepted: nothing to do.
            Err(e) if is_connection_error(&e) => {}
            // Out of file descriptors, say: accepting again at once would spin.
            Err(e) => {
                warn!(error = %e, "cannot accept HTTP connections; trying again in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = &mut stop => break,
                }
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

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
            let mut status = rejection.status();
            let errmsg = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("request body is larger than {MAX_BODY_BYTES} bytes")
            } else if is_body_timeout(&rejection) {
                status = StatusCode::REQUEST_TIMEOUT;
                format!(
                    "the request body stopped arriving (nothing for {} s)",
                    BODY_READ_TIMEOUT.as_secs()
                )
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

/// Whether reading the body failed because it stopped arriving ([`BODY_READ_TIMEOUT`]).
fn is_body_timeout(rejection: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if error.is::<TimeoutError>() {
            return true;
        }
        source = error.source();
    }
    false
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
