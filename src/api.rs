//! The HTTP statement API (the shape of BigObject's REST API).
//!
//! - `POST /api` with `{"stmt": "..."}` -> `{"retcode": 0, "columns": [...], "results": [...]}`
//!   or `{"retcode": <negative>, "errmsg": "..."}` with 400 (bad statement) or 500 (node fault).
//! - `GET /health` -> `{"status": "ok", "node_id": "..."}`.
//!
//! [`serve`] serves it over HTTP/1.1 with read timeouts, so that connections that never finish
//! a request do not hold the node's file descriptors.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::BytesRejection;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tower_http::timeout::{RequestBodyTimeout, TimeoutError};
use tracing::{debug, warn};

use crate::auth::require_token;
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
///
/// At the connection cap, a new client takes the place of the oldest connection that is
/// waiting for a request or still receiving a body ([`Slots`]): slow clients cannot keep the
/// well-behaved ones (and `/health`) out. When every connection is running a statement, new
/// clients wait in the listen backlog until one closes.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    stop: impl Future<Output = ()>,
) {
    let whole_body = limits.whole_body;
    let router = router.layer(middleware::from_fn(move |request: Request, next: Next| {
        track_request(request, next, whole_body)
    }));
    let service = RequestBodyTimeout::new(router, BODY_READ_TIMEOUT);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Slots::new(limits.max_connections));
    let mut stop = std::pin::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                // At the cap with nothing to evict: wait (the backlog holds the others).
                let slot = loop {
                    let freed = slots.freed.notified();
                    if let Some(slot) = slots.enter() {
                        break Some(slot);
                    }
                    tokio::select! {
                        () = freed => {}
                        () = &mut stop => break None,
                    }
                };
                let Some((slot, evicted)) = slot else { break };
                let state = slot.state.clone();
                let service = TowerToHyperService::new(AddExtension {
                    inner: service.clone(),
                    state,
                });
                let connection =
                    graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    tokio::select! {
                        result = connection => {
                            if let Err(e) = result {
                                debug!(%peer, error = %e, "HTTP connection closed");
                            }
                        }
                        _ = evicted => {
                            debug!(%peer, "HTTP connection closed to make room for a new client");
                        }
                    }
                    drop(slot);
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

/// What a connection is doing, as far as eviction cares: a connection that waits for a
/// request, or is still receiving a body, may be closed to make room; one whose request is
/// being carried out may not.
#[derive(Debug)]
struct ConnState {
    busy: AtomicBool,
    /// [`Slots::freed`]: told when this connection becomes evictable.
    freed: Arc<Notify>,
}

impl ConnState {
    fn set_busy(&self, busy: bool) {
        let was = self.busy.swap(busy, Ordering::Relaxed);
        if was && !busy {
            self.freed.notify_waiters();
        }
    }
}

/// The connections served at once, oldest first.
struct Slots {
    max: usize,
    open: Mutex<SlotMap>,
    /// Notified whenever a place frees up or a busy connection becomes evictable.
    freed: Arc<Notify>,
}

#[derive(Default)]
struct SlotMap {
    next_id: u64,
    /// By id, which grows: the first evictable one is the oldest.
    entries: BTreeMap<u64, (Arc<ConnState>, oneshot::Sender<()>)>,
}

/// A connection's place; gives it back when dropped.
struct Slot {
    id: u64,
    state: Arc<ConnState>,
    slots: Arc<Slots>,
}

impl Slots {
    fn new(max: usize) -> Self {
        Slots {
            max: max.max(1),
            open: Mutex::new(SlotMap::default()),
            freed: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotMap> {
        // Nothing here panics while holding the lock; a poisoned map is still consistent.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection, and the signal that it was evicted: a free place, or
    /// that of the oldest evictable connection (which is told to close). `None` when every
    /// place is taken by a busy connection.
    fn enter(self: &Arc<Self>) -> Option<(Slot, oneshot::Receiver<()>)> {
        let mut map = self.lock();
        if map.entries.len() >= self.max {
            let oldest = map
                .entries
                .iter()
                .find(|(_, (state, _))| !state.busy.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some((_, evict)) = map.entries.remove(&oldest) {
                let _ = evict.send(());
            }
        }
        let id = map.next_id;
        map.next_id += 1;
        let state = Arc::new(ConnState {
            busy: AtomicBool::new(false),
            freed: self.freed.clone(),
        });
        let (evict, evicted) = oneshot::channel();
        map.entries.insert(id, (state.clone(), evict));
        Some((
            Slot {
                id,
                state,
                slots: self.clone(),
            },
            evicted,
        ))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().entries.remove(&self.id);
        self.slots.freed.notify_waiters();
    }
}

/// Gives every request of a connection that connection's [`ConnState`].
#[derive(Clone)]
struct AddExtension<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S, B> tower_service::Service<axum::http::Request<B>> for AddExtension<S>
where
    S: tower_service::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.state.clone());
        self.inner.call(request)
    }
}

/// Runs a request with its body under the whole-body deadline, and keeps its connection's
/// [`ConnState`]: evictable while the body arrives, busy from its end until the answer.
async fn track_request(request: Request, next: Next, whole_body: Duration) -> Response {
    let state = request.extensions().get::<Arc<ConnState>>().cloned();
    if let Some(state) = &state {
        state.set_busy(!has_body(request.headers()));
    }
    let body_state = state.clone();
    let request = request.map(|body| Body::new(DeadlineBody::new(body, whole_body, body_state)));
    let response = next.run(request).await;
    if let Some(state) = &state {
        state.set_busy(false);
    }
    response
}

/// Whether a request head announces a body (HTTP/1.1: a non-zero `Content-Length`, or
/// `Transfer-Encoding`).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// A request body that fails with [`BodyDeadline`] once its deadline passes, however steadily
/// its pieces arrive.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    /// Marked busy once the body is whole.
    state: Option<Arc<ConnState>>,
}

impl DeadlineBody {
    fn new(inner: Body, limit: Duration, state: Option<Arc<ConnState>>) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
            state,
        }
    }

    fn whole(&self) {
        if let Some(state) = &self.state {
            state.set_busy(true);
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
            self.whole();
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyDeadline(self.limit)))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.whole();
        }
        polled
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

/// The node's routes: `POST /api` behind the API token (see [`crate::auth`]), `GET /health`
/// open to all, and the `beside` routes the node serves on the same port (the web doors of
/// [`crate::web`]), which take the same body limit.
pub fn router(ctx: Arc<NodeContext>, beside: Router) -> Router {
    let statements = Router::new().route("/api", post(post_statement));
    let statements = require_token(statements, ctx.config.api_token.clone());
    Router::new()
        .route("/health", get(health))
        .merge(statements)
        .with_state(ctx)
        .merge(beside)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Refuses what a browser could send on behalf of another site: a body that is not
/// `application/json` (a page can send `text/plain` without asking the node first) and an
/// `Origin` other than the node's own (`http://` and the `Host` the request names).
pub fn check_browser_rules(headers: &HeaderMap) -> Result<(), (StatusCode, ExecError)> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .map(|host| format!("http://{host}"));
        if own.as_deref().map(str::as_bytes) != Some(origin.as_bytes()) {
            return Err((
                StatusCode::FORBIDDEN,
                ExecError::BadRequest(format!(
                    "requests from a web page of another site are refused (Origin {:?} is not this node's own page)",
                    String::from_utf8_lossy(origin.as_bytes())
                )),
            ));
        }
    }
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    let essence = content_type.map(|v| {
        v.split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii()
    });
    if !essence.is_some_and(|v| v.eq_ignore_ascii_case(b"application/json")) {
        let found = match content_type {
            Some(v) => format!("Content-Type {:?}", String::from_utf8_lossy(v)),
            None => "no Content-Type".to_string(),
        };
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ExecError::BadRequest(format!(
                "the request body must be JSON sent with \"Content-Type: application/json\", found {found}"
            )),
        ));
    }
    Ok(())
}

/// Why a request body could not be read.
#[derive(Debug, Error)]
enum BodyError {
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("cannot read the request body: {0}")]
    Read(#[source] axum::Error),
}

/// Reads a whole request body of at most `limit` bytes, copying each piece as it arrives.
///
/// A piece from hyper shares the connection's read buffer (8 KiB or more); keeping pieces
/// (as `axum`'s `Bytes` extractor does) pinned a whole buffer per write, so a client sending
/// a byte at a time bought kilobytes of memory per byte. A copy holds only what arrived.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = body;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes)
}

/// The statement in a request body, or why there is none.
fn statement_of(body: &[u8]) -> Result<String, ExecError> {
    let bad = ExecError::BadRequest;
    let top: TopLevel = serde_json::from_slice(body)
        .map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    let shape = || {
        bad(
            "request body must be a JSON object with a string field \"stmt\", e.g. {\"stmt\": \"SHOW NODES\"}"
                .to_string(),
        )
    };
    let TopLevel::Object(fields) = top else {
        return Err(shape());
    };
    // serde_json keeps the last of two equal keys: `{"stmt": "SHOW NODES", "stmt": "DROP
    // ..."}` would run what a reader of the first one does not expect.
    let mut seen = std::collections::HashSet::new();
    if let Some((key, _)) = fields.iter().find(|(key, _)| !seen.insert(key.as_str())) {
        return Err(bad(format!(
            "request body has the key {key:?} more than once; give each key once"
        )));
    }
    match fields.into_iter().find(|(key, _)| key == "stmt") {
        Some((_, Value::String(stmt))) => Ok(stmt),
        Some((_, other)) => Err(bad(format!(
            "\"stmt\" must be a string, found {}",
            json_kind(&other)
        ))),
        None => Err(shape()),
    }
}

/// A request body's top level: an object's fields in order (keys given twice kept twice), or
/// something else.
enum TopLevel {
    Object(Vec<(String, Value)>),
    Other,
}

impl<'de> serde::Deserialize<'de> for TopLevel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = TopLevel;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TopLevel, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(TopLevel::Object(fields))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<TopLevel, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(TopLevel::Other)
            }

            fn visit_bool<E>(self, _: bool) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_i64<E>(self, _: i64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_u64<E>(self, _: u64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_f64<E>(self, _: f64) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_str<E>(self, _: &str) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }

            fn visit_unit<E>(self) -> Result<TopLevel, E> {
                Ok(TopLevel::Other)
            }
        }
        deserializer.deserialize_any(Visitor)
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
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err((status, e)) = check_browser_rules(&headers) {
        return answer(status, ApiAnswer::of(Err(e)));
    }
    let body = match read_body(&headers, body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            let (status, e) = read_error(&e);
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

/// The answer to a body that could not be read.
fn read_error(error: &BodyError) -> (StatusCode, ExecError) {
    let (status, errmsg) = match error {
        BodyError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, error.to_string()),
        BodyError::Read(_) => {
            if let Some(deadline) = find_source::<BodyDeadline>(error) {
                (StatusCode::REQUEST_TIMEOUT, deadline.to_string())
            } else if find_source::<TimeoutError>(error).is_some() {
                (
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body stopped arriving (nothing for {} s)",
                        BODY_READ_TIMEOUT.as_secs()
                    ),
                )
            } else {
                (StatusCode::BAD_REQUEST, error.to_string())
            }
        }
    };
    (status, ExecError::BadRequest(errmsg))
}

/// The HTTP status of a failed statement: 400 for the caller's mistakes, 500 for the node's.
pub fn status_of(e: &ExecError) -> StatusCode {
    if e.is_user_error() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// The answer to a body an extractor could not read (the `/cmd` handler's): its status and
/// error.
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
fn find_source<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
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
        let (addr, stop, _) = start_holding(limits).await;
        (addr, stop)
    }

    /// [`start`], with a `GET /hold` that takes a second and says on the returned receiver
    /// when each one starts.
    async fn start_holding(
        limits: ServeLimits,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        std::sync::mpsc::Receiver<()>,
    ) {
        let (started, holding) = std::sync::mpsc::channel::<()>();
        let started = Arc::new(Mutex::new(started));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let router = Router::new()
            .route("/health", get(|| async { "ok" }))
            // A request that takes a second to carry out.
            .route(
                "/hold",
                get(move || async move {
                    let _ = started.lock().map(|s| s.send(()));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    "held"
                }),
            )
            .route(
                "/api",
                post(|headers: HeaderMap, body: Body| async move {
                    match read_body(&headers, body, MAX_BODY_BYTES).await {
                        Ok(body) => body.len().to_string().into_response(),
                        Err(e) => {
                            let (status, e) = read_error(&e);
                            answer(status, ApiAnswer::of(Err(e)))
                        }
                    }
                }),
            );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with(listener, router, limits, async {
            let _ = stopped.await;
        }));
        (addr, stop, holding)
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

    #[test]
    fn a_key_given_twice_is_refused() {
        let err =
            statement_of(br#"{"stmt": "SHOW NODES", "stmt": "DROP DATABASE a"}"#).unwrap_err();
        assert!(err.is_user_error());
        assert!(err.to_string().contains("\"stmt\" more than once"), "{err}");
        let err = statement_of(br#"{"x": 1, "stmt": "SHOW NODES", "x": 2}"#).unwrap_err();
        assert!(
            err.to_string().contains("\"x\" more than once"),
            "{}",
            err.to_string()
        );
        assert_eq!(
            statement_of(br#"{"stmt": "SHOW NODES", "other": {"a": 1}}"#).unwrap(),
            "SHOW NODES"
        );
        for not_object in [&b"[1, 2]"[..], b"\"SHOW NODES\"", b"null", b"3"] {
            let err = statement_of(not_object).unwrap_err();
            assert!(
                err.to_string().contains("JSON object"),
                "{}",
                err.to_string()
            );
        }
        let err = statement_of(br#"{"stmt": 5}"#).unwrap_err();
        assert!(
            err.to_string().contains("found a number"),
            "{}",
            err.to_string()
        );
    }

    const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_the_connection_cap_a_new_client_takes_the_oldest_idle_place() {
        let limits = ServeLimits {
            max_connections: 2,
            whole_body: WHOLE_BODY_TIMEOUT,
        };
        let (addr, _stop) = start(limits).await;
        tokio::task::spawn_blocking(move || {
            let connect = || TcpStream::connect(addr).expect("connect");
            // Two connections take both places: one idle, then one sending a body slowly.
            let mut oldest = connect();
            let (answer, closed) = read_until_closed(&mut oldest, Duration::from_millis(200));
            assert!(answer.is_empty() && !closed, "{answer:?}");
            let mut slow = connect();
            slow.write_all(b"POST /api HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab")
                .expect("write");
            let (answer, closed) = read_until_closed(&mut slow, Duration::from_millis(200));
            assert!(answer.is_empty() && !closed, "{answer:?}");
            // A new client is answered at once: the oldest (idle) connection made room...
            let mut kept = connect();
            kept.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
                .expect("write");
            let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(1));
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
            assert!(answer.ends_with("ok") && !closed, "{answer:?}");
            let (answer, closed) = read_until_closed(&mut oldest, Duration::from_secs(5));
            assert!(closed && answer.is_empty(), "{answer:?}");
            // ...and the next one takes the slow body's place.
            let mut next = connect();
            next.write_all(HEALTH).expect("write");
            let (answer, _) = read_until_closed(&mut next, Duration::from_secs(5));
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
            let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5));
            assert!(closed);
        })
        .await
        .expect("client thread");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_every_place_is_busy_new_clients_wait_until_one_is_free() {
        let limits = ServeLimits {
            max_connections: 2,
            whole_body: WHOLE_BODY_TIMEOUT,
        };
        let (addr, _stop, holding) = start_holding(limits).await;
        tokio::task::spawn_blocking(move || {
            let connect = || TcpStream::connect(addr).expect("connect");
            // Two requests that take a second each hold both places.
            let held: Vec<TcpStream> = (0..2)
                .map(|_| {
                    let mut stream = connect();
                    stream
                        .write_all(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
                        .expect("write");
                    stream
                })
                .collect();
            for _ in 0..2 {
                holding
                    .recv_timeout(Duration::from_secs(5))
                    .expect("a /hold request started");
            }
            let mut waiting = connect();
            waiting.write_all(HEALTH).expect("write");
            let (early, closed) = read_until_closed(&mut waiting, Duration::from_millis(400));
            assert!(
                early.is_empty() && !closed,
                "answered over the cap: {early:?}"
            );
            // Once one is answered (and idle), the waiting client gets its place.
            let (answer, closed) = read_until_closed(&mut waiting, Duration::from_secs(5));
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
            assert!(answer.ends_with("ok") && closed, "{answer:?}");
            drop(held);
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
