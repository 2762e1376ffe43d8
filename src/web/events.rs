//! `GET /events`: cluster events as server-sent events.
//!
//! Each event is `id: <n>`, `event: <name>` (e.g. `member-failed`, `entry-status`) and its JSON
//! as `data`. A new reader first gets the events the node kept ([`HISTORY`]); a reader that
//! reconnects with `Last-Event-ID` (browsers do it by themselves) gets only those after it.
//! A reader too slow to keep up gets a `lagged` event with how many it missed, then goes on.
//! With `BO_API_TOKEN` set the stream needs the token, as a header or as `?token=` (see
//! [`crate::web::routes`]).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::stream::{self, Stream, StreamExt};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::context::NodeContext;
use crate::events::{Event, HISTORY};

/// Comments sent on a quiet stream, so proxies and browsers keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

fn sse_of(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_string());
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.kind.name())
        .data(data)
}

/// The id in a `Last-Event-ID` header (0, everything kept, when absent or not a number).
fn last_event_id(headers: &HeaderMap) -> u64 {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

pub async fn get_events(
    State(ctx): State<Arc<NodeContext>>,
    headers: HeaderMap,
) -> impl IntoResponse {
    let (past, live) = ctx.events.subscribe_since(last_event_id(&headers));
    debug_assert!(past.len() <= HISTORY);
    let past = stream::iter(past).map(|e| Ok::<_, Infallible>(sse_of(&e)));
    let live = BroadcastStream::new(live).map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(event) => sse_of(&event),
            Err(BroadcastStreamRecvError::Lagged(missed)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{missed}}}")),
        })
    });
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(past.chain(live));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}
