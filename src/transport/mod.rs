//! Node-to-node transport: one UDP socket for QUIC (streams, mutual TLS) and sealed
//! membership datagrams.
//!
//! - Membership datagrams (SWIM probes and their piggybacked updates) are small sealed UDP
//!   datagrams on the same socket as QUIC: [`udp_mux::MuxSocket`] takes them out before quinn
//!   reads the rest, and they are sent straight on the socket. No QUIC connection is needed
//!   per probed peer.
//! - QUIC carries what needs a stream: our [`Request`]s (introductions, joins, record pulls),
//!   one bidirectional stream each, over one cached connection per peer address.
//! - A client's first registration, the one request on the path of its start, also travels in
//!   one sealed datagram each way, with no handshake ([`sealed_requests`]); QUIC is its
//!   fallback.

mod closed_ports;
mod memory;
mod refusals;
pub mod sealed_requests;
pub mod sealing;
pub mod udp_mux;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use quinn::{Connection, Endpoint, TransportConfig};
use tokio::sync::{mpsc, oneshot, OnceCell};
use tracing::{debug, warn};

pub use memory::{MemoryNetwork, MemoryPort, MemoryStats};
use refusals::RefusalLog;
pub use refusals::RefusalSink;
use sealing::Sealer;

use crate::cluster_key::ClusterKeys;
use crate::membership::{
    GoneMember, Inbound, InboundDatagram, JoinView, MemberId, MembershipLink, RecordUpdate,
    RecordVersion, SenderStamp,
};
use crate::seal::{MAX_PLAINTEXT, SEAL_OVERHEAD};
use crate::tls::{ClusterIdentity, TlsError, SERVER_NAME};
use crate::wire::{Introduction, Request, Response};

/// Largest request accepted on one stream.
pub const MAX_STREAM_BYTES: usize = 1 << 20;
/// Largest answer read from one stream: a join view of a large fleet, or a pull of big
/// records, is larger than any request.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// How long a join or a record pull may take.
const PULL_LIMIT: Duration = Duration::from_secs(5);
/// Membership datagrams received and not yet taken by the engine.
const DATAGRAM_INBOX: usize = 4096;
/// How long a dial may take before the peer is considered unreachable for this message.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// A connection with no traffic for this long is closed (and re-dialled on next use).
/// A connection that has received nothing for this long is closed: a peer that crashed (or
/// was replaced by another node at the same address) is re-dialled soon after.
const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Request streams (introductions, joins, pulls) a peer may have open to us at once. The
/// limit is also memory: quinn keeps a receive state (about 130 bytes) for every stream it
/// allows a peer to open.
const REQUEST_STREAMS: u32 = 16;
/// Requests received and not yet served.
const INBOX_LEN: usize = 1024;

/// The first byte of every stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamKind {
    /// One [`Request`] and its [`Response`], bidirectional.
    Request = 2,
}

/// Membership datagrams received (opened), and word of peers' closed ports.
pub type Datagrams = mpsc::Receiver<Inbound>;

/// A request received from a peer, with the channel its answer goes back on.
pub struct IncomingRequest {
    pub from: SocketAddr,
    /// It came in one sealed datagram (see [`sealed_requests`]), not on a QUIC stream.
    pub sealed: bool,
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

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("address {addr} is already in use (UDP); is another node running there?")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot bind UDP {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
}

struct Shared {
    endpoint: Endpoint,
    /// The address this node advertises.
    advertised: SocketAddr,
    /// The same UDP socket quinn reads, for sending membership datagrams.
    datagram_socket: tokio::net::UdpSocket,
    sealer: Sealer,
    connections: Mutex<HashMap<SocketAddr, CachedConnection>>,
    /// Dials under way, one per peer: requests that start together (ADD CLIENT's join and
    /// introduction) share one handshake and its outcome instead of each paying for one.
    dialing: Mutex<HashMap<SocketAddr, Arc<OnceCell<Option<Connection>>>>>,
    refusals: RefusalLog,
    /// Counts every refusal (the log above shows only some).
    refusal_sink: Arc<dyn RefusalSink>,
    /// Where received requests go (served by the node).
    requests: mpsc::Sender<IncomingRequest>,
    /// Sealed requests sent and waiting for their answer.
    pending: sealed_requests::Pending,
}

/// A connection to a peer, dialled once and reused until it closes.
struct CachedConnection {
    connection: Connection,
}

impl CachedConnection {
    fn usable(&self) -> Option<Connection> {
        self.connection
            .close_reason()
            .is_none()
            .then(|| self.connection.clone())
    }
}

/// How a node reaches its peers: QUIC (what nodes use) or an in-process network (the edge
/// harness's one-process fleets). Cheap to clone.
#[derive(Clone)]
pub enum PeerLink {
    Quic(QuicTransport),
    Memory(MemoryPort),
}

impl PeerLink {
    /// Sends one membership datagram (plaintext; sealed here) to `to`; never blocks.
    pub fn send_datagram(&self, to: SocketAddr, plaintext: &[u8]) {
        match self {
            PeerLink::Quic(quic) => quic.send_datagram(to, plaintext),
            PeerLink::Memory(port) => port.send_datagram(to, plaintext),
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

    /// Sends `request` to `addr` in one sealed datagram and waits up to `limit` for the
    /// answer in one (see [`sealed_requests`]); an error when it does not fit, when the
    /// receiver asks for QUIC instead, or when no answer came in time. In memory, a request.
    pub async fn request_sealed(
        &self,
        addr: SocketAddr,
        request: &Request,
        limit: Duration,
    ) -> Result<Response, RequestError> {
        match self {
            PeerLink::Quic(quic) => quic.request_sealed(addr, request, limit).await,
            PeerLink::Memory(port) => port.request(addr, request, limit).await,
        }
    }

    /// Dials `addr` ahead of the requests that will reuse the connection (a no-op in memory);
    /// whether a connection is open within `limit`.
    pub async fn connect(&self, addr: SocketAddr, limit: Duration) -> bool {
        match self {
            PeerLink::Quic(quic) => {
                let dial = connection_to(&quic.shared, addr);
                matches!(tokio::time::timeout(limit, dial).await, Ok(Some(_)))
            }
            PeerLink::Memory(_) => true,
        }
    }

    /// Whether the node at `addr` answers a hello (from `us`, registering nothing) within
    /// `limit` as `node_id`: how a node id listed alive somewhere is told from a stale listing
    /// (a node killed and started again elsewhere is listed at its old address until it is
    /// detected dead, but nothing answers there).
    pub async fn answers_as(
        &self,
        addr: SocketAddr,
        node_id: &str,
        us: Introduction,
        limit: Duration,
    ) -> bool {
        let hello = Request::Hello {
            node: us,
            register: false,
        };
        matches!(
            self.request(addr, &hello, limit).await,
            Ok(Response::Hello { node }) if node.node_id == node_id
        )
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
    /// Binds the socket on `listen` and starts accepting connections. Membership datagrams
    /// received (opened, as plaintext) and requests come out of the two receivers; every
    /// datagram or TLS handshake refused is reported to `refusal_sink`.
    pub fn bind(
        listen: SocketAddr,
        advertised: SocketAddr,
        identity: &ClusterIdentity,
        keys: &ClusterKeys,
        refusal_sink: Arc<dyn RefusalSink>,
    ) -> Result<(QuicTransport, Datagrams, mpsc::Receiver<IncomingRequest>), TransportError> {
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
            .max_concurrent_uni_streams(0u32.into())
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
        // Without it, a dead peer is told from a silent one only by the longer suspicion.
        if let Err(e) = closed_ports::ask_for_errors(&socket) {
            warn!(error = %e, "cannot ask for ICMP errors (IP_RECVERR): a crashed peer is detected as slowly as a silent one");
        }
        let datagram_socket = socket
            .try_clone()
            .and_then(|clone| {
                clone.set_nonblocking(true)?;
                tokio::net::UdpSocket::from_std(clone)
            })
            .map_err(bind_error)?;
        // A reset key that survives restarts: the restarted node answers packets of its old
        // connections with a stateless reset peers can verify, so they drop the dead
        // connection at once instead of writing into it until the idle timeout.
        let reset_key =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &identity.stateless_reset_key());
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
        // Peers must always set QUIC's fixed bit: a first byte with it clear is membership's.
        endpoint_config.grease_quic_bit(false);
        let runtime = Arc::new(quinn::TokioRuntime);
        let (sealed_tx, sealed_rx) = mpsc::channel(DATAGRAM_INBOX);
        let mux = udp_mux::MuxSocket::new(socket, sealed_tx).map_err(bind_error)?;
        let mut endpoint = Endpoint::new_with_abstract_socket(
            endpoint_config,
            Some(server_config),
            Arc::new(mux),
            runtime,
        )
        .map_err(bind_error)?;
        endpoint.set_default_client_config(client_config);

        let (requests_tx, requests_rx) = mpsc::channel(INBOX_LEN);
        let (opened_tx, opened_rx) = mpsc::channel(DATAGRAM_INBOX);
        let shared = Arc::new(Shared {
            endpoint,
            advertised,
            datagram_socket,
            sealer: Sealer::new(keys),
            connections: Mutex::new(HashMap::new()),
            dialing: Mutex::new(HashMap::new()),
            refusals: RefusalLog::default(),
            refusal_sink,
            requests: requests_tx,
            pending: sealed_requests::Pending::default(),
        });
        tokio::spawn(accept_loop(shared.clone()));
        tokio::spawn(watch_closed_ports(shared.clone(), opened_tx.clone()));
        tokio::spawn(open_datagrams(shared.clone(), sealed_rx, opened_tx));
        let transport = QuicTransport { shared };
        Ok((transport, opened_rx, requests_rx))
    }

    /// The UDP address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    pub fn advertised(&self) -> SocketAddr {
        self.shared.advertised
    }

    /// Seals and sends one membership datagram. Never blocks: a full socket buffer drops it
    /// (SWIM tolerates loss).
    pub fn send_datagram(&self, to: SocketAddr, plaintext: &[u8]) {
        send_sealed(&self.shared, to, plaintext);
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
                .read_to_end(MAX_ANSWER_BYTES)
                .await
                .map_err(|e| failed(e.to_string()))?;
            postcard::from_bytes::<Response>(&bytes).map_err(|e| failed(format!("bad answer: {e}")))
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| RequestError::TimedOut(addr))?
    }

    /// [`PeerLink::request_sealed`] over the socket.
    pub async fn request_sealed(
        &self,
        addr: SocketAddr,
        request: &Request,
        limit: Duration,
    ) -> Result<Response, RequestError> {
        let failed = |reason: &str| RequestError::Failed {
            addr,
            reason: reason.to_string(),
        };
        // Forgotten however this ends (dropped with `waiting`), a cancelled wait included.
        let mut waiting = self.shared.pending.open(addr);
        let id = waiting.id;
        // Padded to a whole datagram: the answer may then be as big as the request.
        let Some(plaintext) =
            sealed_requests::encode_request(id, request, MAX_PLAINTEXT, MAX_PLAINTEXT)
        else {
            return Err(failed("too large for one datagram"));
        };
        // Sent waiting for the socket, not dropped when it is not ready yet (as a gossip
        // datagram may be).
        let sent = match self.shared.sealer.seal(&plaintext) {
            Some(sealed) => send_sealed_waiting(&self.shared, addr, &sealed).await,
            None => Err(io::Error::other("too large to seal")),
        };
        if let Err(e) = sent {
            return Err(failed(&e.to_string()));
        }
        match tokio::time::timeout(limit, &mut waiting.answer).await {
            Ok(Ok(sealed_requests::Answer::Answered(response))) => Ok(response),
            Ok(Ok(sealed_requests::Answer::AskOverQuic)) => Err(failed("asked to ask over QUIC")),
            Ok(Err(_)) => Err(failed("the transport stopped")),
            Err(_) => Err(RequestError::TimedOut(addr)),
        }
    }

    /// Closes every connection and waits (briefly) for the peers to be told.
    pub async fn close(&self) {
        self.shared.endpoint.close(0u32.into(), b"node stopping");
        let _ =
            tokio::time::timeout(Duration::from_secs(1), self.shared.endpoint.wait_idle()).await;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps hold no invariants a panic could break halfway; keep going after a poison.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cached live connection to `peer`, or a new one (shared with the requests that wait
/// for the same dial).
async fn connection_to(shared: &Arc<Shared>, peer: SocketAddr) -> Option<Connection> {
    if let Some(conn) = lock(&shared.connections)
        .get(&peer)
        .and_then(CachedConnection::usable)
    {
        return Some(conn);
    }
    let dial = lock(&shared.dialing).entry(peer).or_default().clone();
    let connection = dial.get_or_init(|| dial_peer(shared, peer)).await.clone();
    // This dial is over: the next request finds its connection in the cache, or dials afresh
    // after a failure.
    let mut dialing = lock(&shared.dialing);
    if dialing.get(&peer).is_some_and(|d| Arc::ptr_eq(d, &dial)) {
        dialing.remove(&peer);
    }
    connection
}

/// Dials `peer` and caches the connection. A dialled connection is served like an accepted
/// one: the peer may answer over it.
async fn dial_peer(shared: &Arc<Shared>, peer: SocketAddr) -> Option<Connection> {
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
            };
            lock(&shared.connections).insert(peer, cached);
            tokio::spawn(serve_connection(shared.clone(), conn.clone()));
            Some(conn)
        }
        Ok(Err(e)) => {
            if refusals::is_tls_refusal(&e) {
                shared.refusal_sink.tls_handshake_failed();
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

async fn accept_loop(shared: Arc<Shared>) {
    while let Some(incoming) = shared.endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => serve_connection(shared, connection).await,
                Err(e) if refusals::is_tls_refusal(&e) => {
                    shared.refusal_sink.tls_handshake_failed();
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
                        sealed: false,
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

/// Serves what the peer asks on `connection`, until it closes.
async fn serve_connection(shared: Arc<Shared>, connection: Connection) {
    serve_requests(shared, connection).await;
}

/// Opens every sealed datagram the socket set aside, and hands the plaintext to membership.
/// What does not open is dropped before it is decoded, counted, and logged at most once per
/// source per minute.
async fn open_datagrams(
    shared: Arc<Shared>,
    mut sealed: mpsc::Receiver<(SocketAddr, Bytes)>,
    opened: mpsc::Sender<Inbound>,
) {
    while let Some((from, datagram)) = sealed.recv().await {
        match shared.sealer.open(from, &datagram) {
            Ok((plaintext, stamp)) if sealed_requests::is_sealed_request_or_answer(&plaintext) => {
                take_sealed_request_or_answer(&shared, from, datagram.len(), &plaintext, stamp);
            }
            Ok((plaintext, stamp)) => {
                let datagram = Inbound::Datagram(InboundDatagram {
                    from,
                    plaintext: Bytes::from(plaintext),
                    stamp: Some(stamp),
                });
                if opened.try_send(datagram).is_err() && opened.is_closed() {
                    return;
                }
            }
            Err(refusal) => {
                shared.refusal_sink.datagram_refused(&refusal);
                if shared.refusals.should_log(from) {
                    warn!(peer = %from, reason = refusal.reason(), "refused a membership datagram that does not open with this cluster's key (another BO_CLUSTER_KEY, garbage, or a replay)");
                }
            }
        }
    }
}

/// A sealed request (served as a request over QUIC is, and answered in a sealed datagram no
/// bigger than `received` bytes) or the answer to one of ours.
fn take_sealed_request_or_answer(
    shared: &Arc<Shared>,
    from: SocketAddr,
    received: usize,
    plaintext: &[u8],
    stamp: SenderStamp,
) {
    use sealed_requests::{Answer, Message};
    let (id, request) = match sealed_requests::decode(plaintext) {
        Some(Message::Answer { id, answer }) => {
            if !shared.pending.answer(from, id, answer) {
                debug!(peer = %from, "a sealed answer nobody waits for (late, or not ours)");
            }
            return;
        }
        Some(Message::Request { id, request }) => (id, request),
        None => {
            debug!(peer = %from, "a malformed sealed request or answer, dropped");
            return;
        }
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let served = if !request.may_travel_sealed() || !sealed_requests::is_fresh(stamp.epoch, now_ms)
    {
        debug!(peer = %from, "a sealed request not served in a datagram (its kind, or its sender's clock); asked to use QUIC");
        None
    } else {
        let (reply, answered) = oneshot::channel();
        let incoming = IncomingRequest {
            from,
            sealed: true,
            request,
            reply,
        };
        // A full inbox: the asker is told to use QUIC, which waits for room.
        shared.requests.try_send(incoming).ok().map(|()| answered)
    };
    let shared = shared.clone();
    tokio::spawn(async move {
        let answer = match served {
            Some(answered) => answered.await.map_or(Answer::AskOverQuic, Answer::Answered),
            None => Answer::AskOverQuic,
        };
        let mut bytes = sealed_requests::encode_answer(id, &answer);
        // Never amplify: an answer bigger than its request is replaced by the refusal.
        if bytes.len() + SEAL_OVERHEAD > received {
            bytes = sealed_requests::encode_answer(id, &Answer::AskOverQuic);
        }
        let sent = match shared.sealer.seal(&bytes) {
            Some(sealed) => send_sealed_waiting(&shared, from, &sealed).await,
            None => Err(io::Error::other("too large to seal")),
        };
        if let Err(e) = sent {
            debug!(peer = %from, error = %e, "a sealed answer was not sent");
        }
    });
}

/// Sends one sealed datagram, waiting until the socket can take it (a fresh socket is not
/// known writable before its first event), past one ICMP error queued for an earlier
/// datagram (see [`closed_ports::send_past_queued_error`]).
async fn send_sealed_waiting(shared: &Shared, to: SocketAddr, sealed: &[u8]) -> io::Result<()> {
    let socket = &shared.datagram_socket;
    match socket.send_to(sealed, to).await {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            socket.send_to(sealed, to).await.map(|_| ())
        }
        sent => sent.map(|_| ()),
    }
}

/// Seals `plaintext` and sends it to `to`, never blocking (a full buffer drops it).
fn send_sealed(shared: &Shared, to: SocketAddr, plaintext: &[u8]) {
    let Some(sealed) = shared.sealer.seal(plaintext) else {
        warn!(peer = %to, len = plaintext.len(), "a datagram too large to seal was not sent");
        return;
    };
    let socket = &shared.datagram_socket;
    let sent = closed_ports::send_past_queued_error(|| socket.try_send_to(&sealed, to));
    if let Err(e) = sent {
        debug!(peer = %to, error = %e, "sealed datagram not sent");
    }
}

/// Drains the socket's error queue as errors arrive, and tells membership of every peer
/// port found closed (see [`closed_ports`]). Draining at once also clears the error the
/// socket's next send or receive would otherwise fail with.
async fn watch_closed_ports(shared: Arc<Shared>, inbound: mpsc::Sender<Inbound>) {
    use closed_ports::QueuedError;
    let socket = &shared.datagram_socket;
    loop {
        let read = socket
            .async_io(tokio::io::Interest::ERROR, || {
                closed_ports::read_error(socket)
            })
            .await;
        match read {
            Ok(QueuedError::PortClosed(addr)) => {
                if inbound.try_send(Inbound::PortClosed(addr)).is_err() && inbound.is_closed() {
                    return;
                }
            }
            Ok(QueuedError::Other) => {}
            Err(e) => {
                // Not expected; keep the queue from spinning this task.
                debug!(error = %e, "reading the socket's error queue");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The membership engine's way out, over this link.
#[async_trait]
impl MembershipLink for PeerLink {
    fn send_datagram(&self, to: SocketAddr, plaintext: &[u8]) {
        PeerLink::send_datagram(self, to, plaintext);
    }

    async fn join(
        &self,
        to: SocketAddr,
        me: MemberId,
        record: RecordUpdate,
    ) -> Result<JoinView, String> {
        match self
            .request(to, &Request::Join { member: me, record }, PULL_LIMIT)
            .await
        {
            Ok(Response::Join(view)) => Ok(view),
            Ok(Response::Error { message }) => Err(message),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn versions(&self, to: SocketAddr) -> Result<Vec<RecordVersion>, String> {
        match self.request(to, &Request::Versions, PULL_LIMIT).await {
            Ok(Response::Versions(versions)) => Ok(versions),
            Ok(Response::Error { message }) => Err(message),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn gone(&self, to: SocketAddr) -> Result<Vec<GoneMember>, String> {
        match self.request(to, &Request::Gone, PULL_LIMIT).await {
            Ok(Response::Gone(gone)) => Ok(gone),
            Ok(Response::Error { message }) => Err(message),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn records(
        &self,
        to: SocketAddr,
        nodes: Vec<String>,
    ) -> Result<Vec<RecordUpdate>, String> {
        match self
            .request(to, &Request::Records { nodes }, PULL_LIMIT)
            .await
        {
            Ok(Response::Records(records)) => Ok(records),
            Ok(Response::Error { message }) => Err(message),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::OpenError;
    use sealed_requests::{Answer, Message};

    const KEY: &str = "kL63lntqa/vXk0YjAysIOtioBkRiaRl3WhUBmpA+Mo8=";
    const LIMIT: Duration = Duration::from_secs(5);

    struct NoSink;
    impl RefusalSink for NoSink {
        fn datagram_refused(&self, _: &OpenError) {}
        fn tls_handshake_failed(&self) {}
    }

    fn keys() -> ClusterKeys {
        ClusterKeys::parse(KEY).unwrap()
    }

    fn bind(name: &str) -> (QuicTransport, SocketAddr, mpsc::Receiver<IncomingRequest>) {
        let identity = ClusterIdentity::new(&keys(), name).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (transport, _datagrams, requests) =
            QuicTransport::bind(any, any, &identity, &keys(), Arc::new(NoSink)).unwrap();
        let addr = transport.local_addr().unwrap();
        (transport, addr, requests)
    }

    fn introduction(node_id: &str, databases: usize) -> Introduction {
        Introduction {
            node_id: node_id.into(),
            generation: 1,
            endpoint: "127.0.0.1:9091".parse().unwrap(),
            host: "test".into(),
            databases: (0..databases).map(|i| format!("database_{i:04}")).collect(),
        }
    }

    fn register() -> Request {
        Request::Register {
            node: introduction("client", 2),
        }
    }

    /// Answers every request with a hello naming `databases` databases.
    fn answer_with_hello(mut requests: mpsc::Receiver<IncomingRequest>, databases: usize) {
        tokio::spawn(async move {
            while let Some(incoming) = requests.recv().await {
                let _ = incoming.reply.send(Response::Hello {
                    node: introduction("master", databases),
                });
            }
        });
    }

    /// Sends `request` sealed by a process started at `epoch`, from a plain socket, padded
    /// to `pad_to`; the answer's size and what it says.
    async fn raw_request(
        to: SocketAddr,
        epoch: u64,
        request: &Request,
        pad_to: usize,
    ) -> (usize, usize, Answer) {
        let sealer = sealing::Sealer::with_epoch(&keys(), epoch);
        let plaintext = sealed_requests::encode_request(9, request, pad_to, MAX_PLAINTEXT).unwrap();
        let sealed = sealer.seal(&plaintext).unwrap();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&sealed, to).await.unwrap();
        let mut buf = vec![0u8; 2048];
        let (len, from) = tokio::time::timeout(LIMIT, socket.recv_from(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let (opened, _) = sealing::Sealer::new(&keys())
            .open(from, &buf[..len])
            .unwrap();
        match sealed_requests::decode(&opened) {
            Some(Message::Answer { id: 9, answer }) => (sealed.len(), len, answer),
            other => panic!("not the answer to request 9: {other:?}"),
        }
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[tokio::test]
    async fn a_registration_travels_sealed_and_is_answered_sealed_without_a_connection() {
        let (master, master_addr, requests) = bind("master");
        let (client, client_addr, _) = bind("client");
        let mut requests = requests;
        let served = tokio::spawn(async move {
            let incoming = requests.recv().await.unwrap();
            let from = incoming.from;
            let request = incoming.request.clone();
            let _ = incoming.reply.send(Response::Hello {
                node: introduction("master", 3),
            });
            (from, request)
        });
        let answer = client
            .request_sealed(master_addr, &register(), LIMIT)
            .await
            .unwrap();
        assert_eq!(
            answer,
            Response::Hello {
                node: introduction("master", 3)
            }
        );
        assert_eq!(served.await.unwrap(), (client_addr, register()));
        // No handshake was made on either side.
        assert!(lock(&client.shared.connections).is_empty());
        assert!(lock(&master.shared.connections).is_empty());
    }

    #[tokio::test]
    async fn a_request_not_served_sealed_is_refused_at_once_and_never_served() {
        let (_master, master_addr, mut requests) = bind("master");
        let (client, _, _) = bind("client");
        let lookup = Request::Lookup {
            node_id: "client".into(),
        };
        let outcome = client.request_sealed(master_addr, &lookup, LIMIT).await;
        assert!(
            matches!(&outcome, Err(RequestError::Failed { reason, .. }) if reason.contains("QUIC")),
            "{outcome:?}"
        );
        assert!(requests.try_recv().is_err(), "the lookup was served");
    }

    #[tokio::test]
    async fn a_sealed_registration_from_a_process_started_long_ago_is_refused() {
        let (_master, master_addr, mut requests) = bind("master");
        let two_minutes_ago = now_ms() - 120_000;
        let (_, _, answer) =
            raw_request(master_addr, two_minutes_ago, &register(), MAX_PLAINTEXT).await;
        assert_eq!(answer, Answer::AskOverQuic);
        assert!(
            requests.try_recv().is_err(),
            "the stale registration was served"
        );
    }

    #[tokio::test]
    async fn a_sealed_answer_is_never_bigger_than_its_request() {
        let (_master, master_addr, requests) = bind("master");
        // A master with enough databases that its hello outgrows an unpadded request.
        answer_with_hello(requests, 20);
        let (asked, answered, answer) = raw_request(master_addr, now_ms(), &register(), 0).await;
        assert!(asked < 200, "the unpadded request takes {asked} bytes");
        assert_eq!(answer, Answer::AskOverQuic);
        assert!(answered <= asked, "{answered} bytes answered {asked}");
        // Padded to a whole datagram, the same request gets the whole answer.
        let (asked, answered, answer) =
            raw_request(master_addr, now_ms(), &register(), MAX_PLAINTEXT).await;
        assert!(matches!(answer, Answer::Answered(Response::Hello { .. })));
        assert!(answered <= asked, "{answered} bytes answered {asked}");
    }

    #[tokio::test]
    async fn a_request_too_big_for_a_datagram_is_not_sent() {
        let (_master, master_addr, _requests) = bind("master");
        let (client, _, _) = bind("client");
        let big = Request::Register {
            node: introduction("client", 200),
        };
        let outcome = client.request_sealed(master_addr, &big, LIMIT).await;
        assert!(
            matches!(&outcome, Err(RequestError::Failed { reason, .. }) if reason.contains("too large")),
            "{outcome:?}"
        );
    }
}
