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
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::timeout::{RequestBodyTimeout, TimeoutError};
use tracing::{debug, warn};

use crate::context::NodeContext;
use crate::exec::execute_text;
use crate::reply::{ApiAnswer, ExecError};

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
/// piece that arrives. A body that stops coming (a client that sent half of it and waits) is
/// answered 408 and its connection closed.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a whole request body may take, counted from the end of its head. The stall limit
/// alone lets a client hold a connection for ever with a byte every 19 s; a body is at most
/// [`MAX_BODY_BYTES`], which a link of 200 kB/s carries in 5 s. A body not in by then is
/// answered 408 and its connection closed.
pub const WHOLE_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// HTTP connections served at once at most, when the open-files limit cannot be read.
pub const MAX_CONNECTIONS: usize = 256;

/// Descriptors the connection cap leaves to the node itself: its data files, cluster.json,
/// the QUIC socket, DNS lookups.
const RESERVED_DESCRIPTORS: usize = 128;

/// The cap never goes above this, however high the open-files limit.
const MAX_CONNECTIONS_CEILING: usize = 8192;

/// What [`serve_with`] allows a client.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Connections served at once at most. At the cap the node stops accepting until one
    /// closes: new clients wait in the listen backlog (and connect once a connection ends, within
    /// [`HEADER_READ_TIMEOUT`] for an idle one) instead of being refused, the way nginx or
    /// Go's `LimitListener` behave, and the node keeps descriptors for its own files.
    pub max_connections: usize,
    /// How long a whole request body may take ([`WHOLE_BODY_TIMEOUT`]).
    pub whole_body: Duration,
}

impl ServeLimits {
    /// The node's limits: as many connections as the open-files limit leaves room for once
    /// [`RESERVED_DESCRIPTORS`] are kept, between [`MAX_CONNECTIONS`] and
    /// [`MAX_CONNECTIONS_CEILING`].
    pub fn node() -> Self {
        let max_connections = match open_files_limit() {
            Some(limit) => limit
                .saturating_sub(RESERVED_DESCRIPTORS)
                .clamp(MAX_CONNECTIONS, MAX_CONNECTIONS_CEILING),
            None => MAX_CONNECTIONS,
        };
        ServeLimits {
            max_connections,
            whole_body: WHOLE_BODY_TIMEOUT,
        }
    }
}

/// This process's soft open-files limit, if it can be read (Linux) and is not unlimited.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Serves `router` over HTTP/1.1 on `listener` until `stop` completes, with the node's
/// [`ServeLimits`]; see [`serve_with`].
pub async fn serve(listener: TcpListener, router: Router, stop: impl Future<Output = ()>) {
    serve_with(listener, router, ServeLimits::node(), stop).await;
}

/// Serves `router` over HTTP/1.1 on `listener` until `stop` completes; then stops accepting,
/// closes idle connections, lets the others finish the request they are in, and returns when
/// every connection is closed.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    stop: impl Future<Output = ()>,
) {
    let whole_body = limits.whole_body;
    let router = router.layer(middleware::from_fn(move |request: Request, next: Next| {
        next.run(request.map(|body| Body::new(DeadlineBody::new(body, whole_body))))
    }));
    let service = TowerToHyperService::new(RequestBodyTimeout::new(router, BODY_READ_TIMEOUT));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let mut stop = std::pin::pin!(stop);
    loop {
        // A permit before each accept: at the cap, clients wait in the listen backlog.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit,
            () = &mut stop => break,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
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
                    drop(permit);
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

/// A request body that fails with [`BodyDeadline`] once its deadline passes, however steadily
/// its pieces arrive.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl DeadlineBody {
    fn new(inner: Body, limit: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        // A body already whole is not failed by a late poll.
        if self.inner.is_end_stream() {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyDeadline(self.limit)))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body did not arrive whole within its deadline ([`WHOLE_BODY_TIMEOUT`]).
#[derive(Debug, Error)]
#[error("the request body did not arrive whole within {0:?}")]
struct BodyDeadline(Duration);

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
        .with_state(ctx.clone())
        .merge(crate::web::routes(ctx))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The statement in a request body, or why there is none.
fn statement_of(body: &[u8]) -> Result<String, ExecError> {
    let bad = ExecError::BadRequest;
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
            let (status, e) = body_error(&rejection);
            return answer(status, ApiAnswer::of(Err(e)));
        }
    };
    let result = match statement_of(&body) {
        Ok(stmt) => execute_text(&ctx, &stmt).await,
        Err(e) => Err(e),
    };
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(e) => status_of(e),
    };
    answer(status, ApiAnswer::of(result))
}

/// The HTTP status of a failed statement: 400 for the caller's mistakes, 500 for the node's.
pub fn status_of(e: &ExecError) -> StatusCode {
    if e.is_user_error() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// The answer to a body that could not be read: its status and error.
pub fn body_error(rejection: &BytesRejection) -> (StatusCode, ExecError) {
    let mut status = rejection.status();
    let errmsg = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("request body is larger than {MAX_BODY_BYTES} bytes")
    } else if let Some(deadline) = find_source::<BodyDeadline>(rejection) {
        status = StatusCode::REQUEST_TIMEOUT;
        deadline.to_string()
    } else if find_source::<TimeoutError>(rejection).is_some() {
        status = StatusCode::REQUEST_TIMEOUT;
        format!(
            "the request body stopped arriving (nothing for {} s)",
            BODY_READ_TIMEOUT.as_secs()
        )
    } else {
        format!("cannot read the request body: {rejection}")
    };
    (status, ExecError::BadRequest(errmsg))
}

/// The error of type `E` that made reading the body fail, if one did: [`TimeoutError`] when it
/// stopped arriving ([`BODY_READ_TIMEOUT`]), [`BodyDeadline`] when it took too long in all.
fn find_source<E: std::error::Error + 'static>(rejection: &BytesRejection) -> Option<&E> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = source {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        source = error.source();
    }
    None
}

/// An answer with its status (any serializable body: `/api`'s and `/cmd`'s shapes).
pub fn answer(status: StatusCode, body: impl serde::Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    // The rest of a late body may still come: the connection cannot carry another request.
    if status == StatusCode::REQUEST_TIMEOUT {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

async fn health(State(ctx): State<Arc<NodeContext>>) -> Response {
    Json(json!({"status": "ok", "node_id": ctx.identity.node_id})).into_response()
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Instant;

    use super::*;

    /// Serves a router with `GET /health` and a `POST /api` that answers the body's length (or
    /// the node's error for an unreadable body) with `limits`, until the returned sender drops.
    async fn start(limits: ServeLimits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let router = Router::new()
            .route("/health", get(|| async { "ok" }))
            .route(
                "/api",
                post(|body: Result<Bytes, BytesRejection>| async move {
                    match body {
                        Ok(body) => body.len().to_string().into_response(),
                        Err(rejection) => {
                            let (status, e) = body_error(&rejection);
                            answer(status, ApiAnswer::of(Err(e)))
                        }
                    }
                }),
            );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with(listener, router, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Reads from `stream` until it closes or `limit` passes; returns what came and whether it
    /// closed.
    fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
        let deadline = Instant::now() + limit;
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("read timeout");
            match stream.read(&mut buf) {
                Ok(0) => return (String::from_utf8_lossy(&bytes).into_owned(), true),
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return (String::from_utf8_lossy(&bytes).into_owned(), true)
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        (String::from_utf8_lossy(&bytes).into_owned(), false)
    }

    const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_connection_cap_new_clients_wait_until_one_closes() {
        let limits = ServeLimits {
            max_connections: 2,
            whole_body: WHOLE_BODY_TIMEOUT,
        };
        let (addr, _stop) = start(limits).await;
        tokio::task::spawn_blocking(move || {
            let connect = || TcpStream::connect(addr).expect("connect");
            // Two idle connections take both places.
            let idle: Vec<TcpStream> = (0..2).map(|_| connect()).collect();
            let mut waiting = connect();
            waiting.write_all(HEALTH).expect("write");
            let (early, closed) = read_until_closed(&mut waiting, Duration::from_millis(500));
            assert!(
                early.is_empty() && !closed,
                "answered over the cap: {early:?}"
            );
            // One closes: the waiting client is accepted and answered.
            drop(idle);
            let (answer, closed) = read_until_closed(&mut waiting, Duration::from_secs(5));
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
            assert!(answer.ends_with("ok") && closed, "{answer:?}");
            // The cap counts connections open now, not ever.
            for _ in 0..5 {
                let mut next = connect();
                next.write_all(HEALTH).expect("write");
                let (answer, _) = read_until_closed(&mut next, Duration::from_secs(5));
                assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
            }
        })
        .await
        .expect("client thread");
    }

    /// Sends a request head (asking to close the connection after the answer if `close`), then
    /// `body` one byte every `every`, until the node closes the connection or `limit` passes;
    /// returns the answer and when it came.
    fn trickle(
        addr: SocketAddr,
        every: Duration,
        body: &[u8],
        close: bool,
        limit: Duration,
    ) -> (String, Duration) {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let head = format!(
            "POST /api HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        stream.write_all(head.as_bytes()).expect("write head");
        let started = Instant::now();
        let mut writer = stream.try_clone().expect("clone");
        let body = body.to_vec();
        std::thread::spawn(move || {
            for byte in body {
                if writer.write_all(&[byte]).is_err() {
                    return;
                }
                // A pace, not a wait for something: the client under test is this slow.
                std::thread::sleep(every);
            }
        });
        let (answer, closed) = read_until_closed(&mut stream, limit);
        assert!(closed, "the connection stayed open: {answer:?}");
        (answer, started.elapsed())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trickled_body_gets_408_at_the_whole_body_deadline() {
        let whole_body = Duration::from_secs(1);
        let limits = ServeLimits {
            max_connections: MAX_CONNECTIONS,
            whole_body,
        };
        let (addr, _stop) = start(limits).await;
        tokio::task::spawn_blocking(move || {
            // A byte every 50 ms never stalls 20 s, but 100 bytes take 5 s in all.
            let (answer, took) = trickle(
                addr,
                Duration::from_millis(50),
                &[b' '; 100],
                false,
                Duration::from_secs(10),
            );
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
            assert!(
                answer.contains("did not arrive whole within 1s"),
                "{answer:?}"
            );
            assert!(
                took >= whole_body && took < Duration::from_secs(4),
                "408 after {took:?}"
            );
            // The node closed the connection itself. A body as slow that is whole before the
            // deadline is read and answered.
            let (answer, took) = trickle(
                addr,
                Duration::from_millis(50),
                b"hello",
                true,
                Duration::from_secs(10),
            );
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
            assert!(answer.ends_with("\r\n\r\n5"), "{answer:?}");
            assert!(took < whole_body, "answered after {took:?}");
        })
        .await
        .expect("client thread");
    }
}
