//! Node-to-node transport: one QUIC endpoint (UDP, mutual TLS) for everything.
//!
//! - One cached connection per peer address, dialled on first use and re-dialled when it dies;
//!   an incoming connection is also cached for the address its peer advertises, so a reply can
//!   travel back over it even where the peer cannot be dialled.
//! - Each gossip message rides its own unidirectional stream (QUIC datagrams are capped near the
//!   path MTU; chitchat messages reach 64 KiB). The first byte of every stream is a
//!   [`StreamKind`] tag, so other traffic can share the connection without mixing with gossip.
//! - Sends never block the caller: each peer has a small queue drained by its own task, so a
//!   dead peer that takes seconds to time out does not stall gossip with live ones.

mod gossip_guard;
mod gossip_socket;
mod memory;
mod refusals;
mod staleness;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, Endpoint, TransportConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

pub use gossip_guard::{check as check_gossip_message, Refused as RefusedGossip};
pub use gossip_socket::GossipTransport;
pub use memory::{MemoryNetwork, MemoryPort, MemoryStats};
use refusals::RefusalLog;
use staleness::StalenessFilter;

use crate::tls::{ClusterIdentity, TlsError, SERVER_NAME};
use crate::wire::{Request, Response};

/// Largest message accepted on one stream. chitchat caps its messages at 64 KiB.
pub const MAX_STREAM_BYTES: usize = 1 << 20;
/// How long a dial may take before the peer is considered unreachable for this message.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection with no traffic for this long is closed (and re-dialled on next use).
/// A connection that has received nothing for this long is closed: a peer that crashed (or
/// was replaced by another node at the same address) is re-dialled soon after.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Gossip that waited longer than this in a peer's queue (the peer was unreachable) is
/// dropped instead of sent: chitchat sends fresh state every round, and a burst of stale
/// heartbeats on reconnection would skew the peer's failure detector into a false `dead`.
const STALE_GOSSIP: Duration = Duration::from_secs(2);
/// Messages waiting for one peer; beyond this, new ones are dropped (gossip repeats itself).
const PEER_QUEUE_LEN: usize = 32;
/// A peer task with nothing to send for this long exits.
const PEER_TASK_IDLE: Duration = Duration::from_secs(60);
/// Gossip streams a peer may have open to us at once. Each is one message, read to its end
/// as soon as it arrives, so a few are open at a time. The limit is also memory: quinn keeps
/// a receive state (about 130 bytes) for every stream it allows a peer to open, and with
/// 1,024 allowed, each connection grew to about 130 KiB over a node's first minutes.
const GOSSIP_STREAMS: u32 = 32;
/// Request streams (introductions, registrations) a peer may have open to us at once; the
/// same memory reasoning, and requests are rarer still.
const REQUEST_STREAMS: u32 = 16;
/// Gossip messages received and not yet taken by chitchat.
const INBOX_LEN: usize = 1024;

/// The first byte of every stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamKind {
    /// One chitchat message, unidirectional.
    Gossip = 1,
    /// One [`Request`] and its [`Response`], bidirectional.
    Request = 2,
}

/// A request received from a peer, with the channel its answer goes back on.
pub struct IncomingRequest {
    pub from: SocketAddr,
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no QUIC connection to {0} (nothing answers there, or its TLS handshake failed: another BO_CLUSTER_KEY, or UDP not forwarded)")]
    Unreachable(SocketAddr),
    #[error("request to {addr} failed: {reason}")]
    Failed { addr: SocketAddr, reason: String },
    #[error("no answer from {0} in time")]
    TimedOut(SocketAddr),
}

/// What precedes a gossip message on its stream: who sent it, as the address to answer to.
#[derive(Debug, Serialize, Deserialize)]
struct GossipHeader {
    from: SocketAddr,
    /// The sender's monotonic clock in ms, so late deliveries can be recognised.
    sent_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("address {addr} is already in use (UDP); is another node running there?")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot bind UDP {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A gossip message as received: the sender's advertised address and the raw chitchat bytes.
pub(crate) struct InboundGossip {
    pub from: SocketAddr,
    pub payload: Bytes,
}

struct Shared {
    endpoint: Endpoint,
    /// The address this node advertises; stamped on every gossip message it sends.
    advertised: SocketAddr,
    connections: Mutex<HashMap<SocketAddr, CachedConnection>>,
    peer_queues: Mutex<HashMap<SocketAddr, PeerQueue>>,
    next_queue_id: std::sync::atomic::AtomicU64,
    refusals: RefusalLog,
    /// Where received gossip goes (read by chitchat through [`GossipTransport`]).
    inbox: mpsc::Sender<InboundGossip>,
    /// Where received requests go (served by the node).
    requests: mpsc::Sender<IncomingRequest>,
    /// When this transport started: the origin of the clock stamped on gossip.
    started: Instant,
    staleness: Mutex<StalenessFilter>,
}

impl Shared {
    fn clock_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A connection to a peer and when it was established. When a peer reaches us over a newer
/// connection than the cached one (e.g. it restarted: the cached one is to its old process and
/// only times out later), the newer one replaces it.
struct CachedConnection {
    connection: Connection,
    since: Instant,
}

impl CachedConnection {
    fn usable(&self) -> Option<Connection> {
        self.connection
            .close_reason()
            .is_none()
            .then(|| self.connection.clone())
    }
}

/// One peer's outgoing queue; `id` tells a replaced queue from its successor.
struct PeerQueue {
    id: u64,
    tx: mpsc::Sender<(Instant, Bytes)>,
}

/// How a node reaches its peers: QUIC (what nodes use) or an in-process network (the edge
/// harness's one-process fleets). Cheap to clone.
#[derive(Clone)]
pub enum PeerLink {
    Quic(QuicTransport),
    Memory(MemoryPort),
}

impl PeerLink {
    /// Queues one encoded gossip message for `to`; never blocks.
    pub(crate) fn send_gossip(&self, to: SocketAddr, chitchat_bytes: &[u8]) {
        match self {
            PeerLink::Quic(quic) => quic.send_gossip(to, chitchat_bytes),
            PeerLink::Memory(port) => port.send_gossip(to, chitchat_bytes),
        }
    }

    /// Sends `request` to `addr` and waits up to `limit` for the answer.
    pub async fn request(
        &self,
        addr: SocketAddr,
        request: &Request,
        limit: Duration,
    ) -> Result<Response, RequestError> {
        match self {
            PeerLink::Quic(quic) => quic.request(addr, request, limit).await,
            PeerLink::Memory(port) => port.request(addr, request, limit).await,
        }
    }

    /// Waits until queued gossip has left, or `limit` passes.
    pub async fn flush(&self, limit: Duration) {
        if let PeerLink::Quic(quic) = self {
            quic.flush(limit).await;
        }
    }

    /// Stops all traffic to and from this node.
    pub async fn close(&self) {
        match self {
            PeerLink::Quic(quic) => quic.close().await,
            PeerLink::Memory(port) => port.close(),
        }
    }
}

/// The node's QUIC endpoint. Cheap to clone.
#[derive(Clone)]
pub struct QuicTransport {
    shared: Arc<Shared>,
}

impl QuicTransport {
    /// Binds the endpoint on `listen` and starts accepting connections. Gossip messages
    /// received are delivered to the [`GossipTransport`] returned alongside.
    pub fn bind(
        listen: SocketAddr,
        advertised: SocketAddr,
        identity: &ClusterIdentity,
        min_syn_spacing: Duration,
    ) -> Result<
        (
            QuicTransport,
            GossipTransport,
            mpsc::Receiver<IncomingRequest>,
        ),
        TransportError,
    > {
        let mut transport_config = TransportConfig::default();
        transport_config
            .max_idle_timeout(Some(
                IDLE_TIMEOUT
                    .try_into()
                    .map_err(|_| io::Error::other("idle timeout out of range"))
                    .map_err(|source| TransportError::Bind {
                        addr: listen,
                        source,
                    })?,
            ))
            .max_concurrent_uni_streams(GOSSIP_STREAMS.into())
            .max_concurrent_bidi_streams(REQUEST_STREAMS.into());
        let transport_config = Arc::new(transport_config);

        let mut server_config =
            quinn::ServerConfig::with_crypto(Arc::new(identity.quic_server_config()?));
        server_config.transport_config(transport_config.clone());
        let mut client_config = quinn::ClientConfig::new(Arc::new(identity.quic_client_config()?));
        client_config.transport_config(transport_config);

        let bind_error = |source: io::Error| {
            if source.kind() == io::ErrorKind::AddrInUse {
                TransportError::AddrInUse { addr: listen }
            } else {
                TransportError::Bind {
                    addr: listen,
                    source,
                }
            }
        };
        let socket = std::net::UdpSocket::bind(listen).map_err(bind_error)?;
        // A reset key that survives restarts: the restarted node answers packets of its old
        // connections with a stateless reset peers can verify, so they drop the dead
        // connection at once instead of writing into it until the idle timeout.
        let reset_key =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &identity.stateless_reset_key());
        let endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
        let mut endpoint = Endpoint::new(
            endpoint_config,
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(bind_error)?;
        endpoint.set_default_client_config(client_config);

        let (inbox_tx, inbox_rx) = mpsc::channel(INBOX_LEN);
        let (requests_tx, requests_rx) = mpsc::channel(INBOX_LEN);
        let shared = Arc::new(Shared {
            endpoint,
            advertised,
            connections: Mutex::new(HashMap::new()),
            peer_queues: Mutex::new(HashMap::new()),
            next_queue_id: Default::default(),
            refusals: RefusalLog::default(),
            inbox: inbox_tx,
            requests: requests_tx,
            started: Instant::now(),
            staleness: Mutex::new(StalenessFilter::default()),
        });
        tokio::spawn(accept_loop(shared.clone()));
        let transport = QuicTransport { shared };
        let gossip =
            GossipTransport::new(PeerLink::Quic(transport.clone()), inbox_rx, min_syn_spacing);
        Ok((transport, gossip, requests_rx))
    }

    /// The UDP address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    pub fn advertised(&self) -> SocketAddr {
        self.shared.advertised
    }

    /// Queues one encoded gossip message for `to`. Never blocks; drops the message when the
    /// peer's queue is full (the next gossip round carries the same information).
    pub(crate) fn send_gossip(&self, to: SocketAddr, chitchat_bytes: &[u8]) {
        let mut frame = Vec::with_capacity(chitchat_bytes.len() + 24);
        frame.push(StreamKind::Gossip as u8);
        let header = GossipHeader {
            from: self.shared.advertised,
            sent_ms: self.shared.clock_ms(),
        };
        match postcard::to_extend(&header, frame) {
            Ok(mut framed) => {
                framed.extend_from_slice(chitchat_bytes);
                self.enqueue(to, Bytes::from(framed));
            }
            Err(e) => warn!(error = %e, "cannot encode gossip header"),
        }
    }

    fn enqueue(&self, to: SocketAddr, frame: Bytes) {
        let mut queues = lock(&self.shared.peer_queues);
        let queue = match queues.get(&to) {
            Some(queue) if !queue.tx.is_closed() => queue.tx.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(PEER_QUEUE_LEN);
                let id = self
                    .shared
                    .next_queue_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(peer_task(self.shared.clone(), to, id, rx));
                queues.insert(to, PeerQueue { id, tx: tx.clone() });
                tx
            }
        };
        drop(queues);
        if queue.try_send((Instant::now(), frame)).is_err() {
            debug!(peer = %to, "peer queue full or closed; dropping a gossip message");
        }
    }

    /// Sends `request` to `addr` and waits up to `limit` for the answer.
    pub async fn request(
        &self,
        addr: SocketAddr,
        request: &Request,
        limit: Duration,
    ) -> Result<Response, RequestError> {
        let exchange = async {
            let connection = connection_to(&self.shared, addr)
                .await
                .ok_or(RequestError::Unreachable(addr))?;
            let failed = |reason: String| RequestError::Failed { addr, reason };
            let (mut send, mut recv) = connection
                .open_bi()
                .await
                .map_err(|e| failed(e.to_string()))?;
            let mut frame = vec![StreamKind::Request as u8];
            frame = postcard::to_extend(request, frame).map_err(|e| failed(e.to_string()))?;
            send.write_all(&frame)
                .await
                .map_err(|e| failed(e.to_string()))?;
            send.finish().map_err(|e| failed(e.to_string()))?;
            let bytes = recv
                .read_to_end(MAX_STREAM_BYTES)
                .await
                .map_err(|e| failed(e.to_string()))?;
            postcard::from_bytes::<Response>(&bytes).map_err(|e| failed(format!("bad answer: {e}")))
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| RequestError::TimedOut(addr))?
    }

    /// Closes every connection and waits (briefly) for the peers to be told.
    pub async fn close(&self) {
        self.shared.endpoint.close(0u32.into(), b"node stopping");
        let _ =
            tokio::time::timeout(Duration::from_secs(1), self.shared.endpoint.wait_idle()).await;
    }

    /// Waits until every queued message has been handed to QUIC, or `limit` passes.
    pub async fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let pending = lock(&self.shared.peer_queues)
                .values()
                .any(|q| !q.tx.is_closed() && q.tx.capacity() < PEER_QUEUE_LEN);
            if !pending || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold no invariants a panic could break halfway; keep going after a poison.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drains one peer's queue: each message on its own stream over the cached connection,
/// re-dialling once if the connection turns out dead.
async fn peer_task(
    shared: Arc<Shared>,
    peer: SocketAddr,
    queue_id: u64,
    mut queue: mpsc::Receiver<(Instant, Bytes)>,
) {
    loop {
        let frame = match tokio::time::timeout(PEER_TASK_IDLE, queue.recv()).await {
            Ok(Some((queued_at, _))) if queued_at.elapsed() > STALE_GOSSIP => continue,
            Ok(Some((_, frame))) => frame,
            Ok(None) | Err(_) => break,
        };
        for attempt in 0..2 {
            let Some(connection) = connection_to(&shared, peer).await else {
                break;
            };
            match write_uni(&connection, &frame).await {
                Ok(()) => break,
                Err(e) => {
                    debug!(peer = %peer, attempt, error = %e, "gossip write failed; dropping connection");
                    forget_connection(&shared, peer, &connection);
                }
            }
        }
    }
    let mut queues = lock(&shared.peer_queues);
    if queues.get(&peer).is_some_and(|q| q.id == queue_id) {
        queues.remove(&peer);
    }
}

async fn write_uni(connection: &Connection, frame: &[u8]) -> Result<(), String> {
    let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
    stream.write_all(frame).await.map_err(|e| e.to_string())?;
    stream.finish().map_err(|e| e.to_string())?;
    Ok(())
}

/// The cached live connection to `peer`, or a new one. A dialled connection is served like
/// an accepted one: the peer may answer over it.
async fn connection_to(shared: &Arc<Shared>, peer: SocketAddr) -> Option<Connection> {
    if let Some(conn) = lock(&shared.connections)
        .get(&peer)
        .and_then(CachedConnection::usable)
    {
        return Some(conn);
    }
    let connecting = match shared.endpoint.connect(peer, SERVER_NAME) {
        Ok(connecting) => connecting,
        Err(e) => {
            debug!(peer = %peer, error = %e, "cannot dial peer");
            return None;
        }
    };
    match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => {
            let cached = CachedConnection {
                connection: conn.clone(),
                since: Instant::now(),
            };
            lock(&shared.connections).insert(peer, cached);
            tokio::spawn(serve_connection(shared.clone(), conn.clone()));
            Some(conn)
        }
        Ok(Err(e)) => {
            if refusals::is_tls_refusal(&e) {
                if shared.refusals.should_log(peer) {
                    warn!(peer = %peer, error = %e,
                        "TLS handshake with peer failed: it holds another BO_CLUSTER_KEY (or none); not gossiping with it");
                }
            } else {
                debug!(peer = %peer, error = %e, "dial failed");
            }
            None
        }
        Err(_) => {
            debug!(peer = %peer, "dial timed out");
            None
        }
    }
}

fn forget_connection(shared: &Shared, peer: SocketAddr, dead: &Connection) {
    let mut connections = lock(&shared.connections);
    if connections
        .get(&peer)
        .is_some_and(|c| c.connection.stable_id() == dead.stable_id())
    {
        connections.remove(&peer);
    }
}

async fn accept_loop(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => serve_connection(shared, connection).await,
                Err(e) if refusals::is_tls_refusal(&e) => {
                    if shared.refusals.should_log(remote) {
                        warn!(peer = %remote, error = %e,
                            "refused a QUIC connection: the peer did not present a certificate of this cluster (another BO_CLUSTER_KEY?)");
                    }
                }
                Err(e) => debug!(peer = %remote, error = %e, "incoming connection failed"),
            }
        });
    }
}

/// Answers every request stream the peer opens on `connection`, until it closes.
async fn serve_requests(shared: Arc<Shared>, connection: Connection) {
    loop {
        let (mut send, mut recv) = match connection.accept_bi().await {
            Ok(streams) => streams,
            Err(_) => return,
        };
        let shared = shared.clone();
        let from = connection.remote_address();
        tokio::spawn(async move {
            let Ok(bytes) = recv.read_to_end(MAX_STREAM_BYTES).await else {
                return;
            };
            let response = match decode_request_frame(&bytes) {
                Some(request) => {
                    let (reply, answer) = oneshot::channel();
                    let incoming = IncomingRequest {
                        from,
                        request,
                        reply,
                    };
                    if shared.requests.send(incoming).await.is_err() {
                        return;
                    }
                    match answer.await {
                        Ok(response) => response,
                        Err(_) => Response::Error {
                            message: "the node is stopping".to_string(),
                        },
                    }
                }
                None => Response::Error {
                    message: "malformed request".to_string(),
                },
            };
            if let Ok(bytes) = postcard::to_allocvec(&response) {
                let _ = send.write_all(&bytes).await;
                let _ = send.finish();
            }
        });
    }
}

fn decode_request_frame(bytes: &[u8]) -> Option<Request> {
    let (&kind, rest) = bytes.split_first()?;
    if kind != StreamKind::Request as u8 {
        return None;
    }
    postcard::from_bytes(rest).ok()
}

/// Reads every stream the peer opens on `connection`, until it closes.
async fn serve_connection(shared: Arc<Shared>, connection: Connection) {
    tokio::spawn(serve_requests(shared.clone(), connection.clone()));
    let since = Instant::now();
    loop {
        let mut stream = match connection.accept_uni().await {
            Ok(stream) => stream,
            Err(e) => {
                debug!(peer = %connection.remote_address(), error = %e, "connection ended");
                return;
            }
        };
        let bytes = match stream.read_to_end(MAX_STREAM_BYTES).await {
            Ok(bytes) => bytes,
            Err(e) => {
                debug!(peer = %connection.remote_address(), error = %e, "stream read failed");
                continue;
            }
        };
        let Some((header, gossip)) = decode_gossip_frame(&bytes) else {
            debug!(peer = %connection.remote_address(), "ignoring a malformed stream");
            continue;
        };
        let stale = lock(&shared.staleness).is_stale(
            header.from,
            connection.stable_id(),
            header.sent_ms,
            shared.clock_ms(),
            STALE_GOSSIP,
        );
        if stale {
            debug!(peer = %header.from, "dropping gossip delivered late");
            continue;
        }
        {
            let mut connections = lock(&shared.connections);
            let replace = match connections.get(&gossip.from) {
                // A newer connection replaces the cached one only when it comes from the
                // address it claims: a header alone must not take over another peer's link.
                Some(cached) => {
                    cached.usable().is_none()
                        || (cached.since < since && connection.remote_address() == gossip.from)
                }
                None => true,
            };
            if replace {
                let cached = CachedConnection {
                    connection: connection.clone(),
                    since,
                };
                connections.insert(gossip.from, cached);
            }
        }
        if shared.inbox.send(gossip).await.is_err() {
            return;
        }
    }
}

fn decode_gossip_frame(bytes: &[u8]) -> Option<(GossipHeader, InboundGossip)> {
    let (&kind, rest) = bytes.split_first()?;
    if kind != StreamKind::Gossip as u8 {
        return None;
    }
    let (header, payload) = postcard::take_from_bytes::<GossipHeader>(rest).ok()?;
    let gossip = InboundGossip {
        from: header.from,
        payload: Bytes::copy_from_slice(payload),
    };
    Some((header, gossip))
}
