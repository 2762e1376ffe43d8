//! An in-process network: nodes in one process exchange membership datagrams and requests
//! over channels.
//!
//! It exists for `edge-fleet scale` and the in-process tests, which run many real nodes (real
//! membership engine, real master view) in one process, where a QUIC endpoint, a TLS session
//! and a UDP socket per node would measure the machine rather than the protocol. Everything
//! above the transport is the same code as over QUIC. It can drop a share of datagrams to
//! stand for packet loss, and it counts what it carries (plaintext bytes: the seal's overhead
//! is not added here).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{Datagrams, IncomingRequest, PeerLink, RequestError, TransportError};
use crate::membership::{Inbound, InboundDatagram};
use crate::wire::{Request, Response};

/// Datagrams waiting for one node, like a socket's receive buffer: beyond it, they are
/// dropped (SWIM tolerates loss).
const INBOX_LEN: usize = 256;

/// The network: who listens at which address, how much to lose, what was carried.
/// Cheap to clone; every clone is the same network.
#[derive(Clone, Default)]
pub struct MemoryNetwork {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    ports: RwLock<HashMap<SocketAddr, Port>>,
    /// Share of datagrams dropped, in millionths.
    loss_ppm: AtomicU64,
    stats: Counters,
}

#[derive(Default)]
struct Counters {
    datagrams: AtomicU64,
    datagram_bytes: AtomicU64,
    lost: AtomicU64,
}

/// What the network carried since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub datagrams: u64,
    pub datagram_bytes: u64,
    /// Datagrams dropped on purpose (see [`MemoryNetwork::set_loss`]).
    pub lost: u64,
}

/// Where one node's traffic is delivered.
struct Port {
    datagrams: mpsc::Sender<Inbound>,
    requests: mpsc::Sender<IncomingRequest>,
}

/// One node's place on a [`MemoryNetwork`].
#[derive(Clone)]
pub struct MemoryPort {
    network: MemoryNetwork,
    addr: SocketAddr,
}

impl MemoryNetwork {
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    /// Drops each datagram with probability `share` (0 to 1) from now on.
    pub fn set_loss(&self, share: f64) {
        let ppm = (share.clamp(0.0, 1.0) * 1e6).round() as u64;
        self.inner.loss_ppm.store(ppm, Ordering::Relaxed);
    }

    pub fn stats(&self) -> MemoryStats {
        let c = &self.inner.stats;
        MemoryStats {
            datagrams: c.datagrams.load(Ordering::Relaxed),
            datagram_bytes: c.datagram_bytes.load(Ordering::Relaxed),
            lost: c.lost.load(Ordering::Relaxed),
        }
    }

    /// Takes `addr` on this network, as [`super::QuicTransport::bind`] takes a UDP port.
    pub fn bind(
        &self,
        addr: SocketAddr,
    ) -> Result<(PeerLink, Datagrams, mpsc::Receiver<IncomingRequest>), TransportError> {
        let (datagrams_tx, datagrams_rx) = mpsc::channel(INBOX_LEN);
        let (requests_tx, requests_rx) = mpsc::channel(INBOX_LEN);
        {
            let mut ports = self.inner.ports.write().unwrap_or_else(|p| p.into_inner());
            if ports.contains_key(&addr) {
                return Err(TransportError::AddrInUse { addr });
            }
            ports.insert(
                addr,
                Port {
                    datagrams: datagrams_tx,
                    requests: requests_tx,
                },
            );
        }
        let link = PeerLink::Memory(MemoryPort {
            network: self.clone(),
            addr,
        });
        Ok((link, datagrams_rx, requests_rx))
    }

    fn port<T>(&self, addr: SocketAddr, pick: impl FnOnce(&Port) -> T) -> Option<T> {
        let ports = self.inner.ports.read().unwrap_or_else(|p| p.into_inner());
        ports.get(&addr).map(pick)
    }
}

impl MemoryPort {
    /// Delivers one datagram to `to`, unless it is lost or `to`'s inbox is full.
    pub(crate) fn send_datagram(&self, to: SocketAddr, plaintext: &[u8]) {
        let inner = &self.network.inner;
        let loss = inner.loss_ppm.load(Ordering::Relaxed);
        if loss > 0 && rand::random_range(0..1_000_000) < loss {
            inner.stats.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(inbox) = self.network.port(to, |port| port.datagrams.clone()) else {
            // Nothing listens there: the host says so, as a real one does (ICMP port
            // unreachable; see `closed_ports`).
            if let Some(own) = self.network.port(self.addr, |port| port.datagrams.clone()) {
                let _ = own.try_send(Inbound::PortClosed(to));
            }
            return;
        };
        let datagram = Inbound::Datagram(InboundDatagram {
            from: self.addr,
            plaintext: Bytes::copy_from_slice(plaintext),
            stamp: None,
        });
        if inbox.try_send(datagram).is_ok() {
            inner.stats.datagrams.fetch_add(1, Ordering::Relaxed);
            inner
                .stats
                .datagram_bytes
                .fetch_add(plaintext.len() as u64, Ordering::Relaxed);
        }
    }

    pub(crate) async fn request(
        &self,
        addr: SocketAddr,
        request: &Request,
        limit: Duration,
    ) -> Result<Response, RequestError> {
        let requests = self
            .network
            .port(addr, |port| port.requests.clone())
            .ok_or(RequestError::Unreachable(addr))?;
        let (reply, answer) = oneshot::channel();
        let incoming = IncomingRequest {
            from: self.addr,
            sealed: false,
            request: request.clone(),
            reply,
        };
        let exchange = async {
            requests
                .send(incoming)
                .await
                .map_err(|_| RequestError::Unreachable(addr))?;
            answer.await.map_err(|_| RequestError::Failed {
                addr,
                reason: "the peer dropped the request".to_string(),
            })
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| RequestError::TimedOut(addr))?
    }

    /// Leaves the network: the address is free and nothing reaches this node any more.
    pub(crate) fn close(&self) {
        let mut ports = self
            .network
            .inner
            .ports
            .write()
            .unwrap_or_else(|p| p.into_inner());
        ports.remove(&self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 9, 0, last], 9091))
    }

    #[tokio::test]
    async fn datagrams_and_requests_reach_the_bound_address_only() {
        let network = MemoryNetwork::new();
        let (a, _datagrams_a, _requests_a) = network.bind(addr(1)).unwrap();
        let (_b, _datagrams_b, mut requests_b) = network.bind(addr(2)).unwrap();
        assert!(matches!(
            network.bind(addr(2)),
            Err(TransportError::AddrInUse { .. })
        ));

        let PeerLink::Memory(port_a) = &a else {
            panic!("a memory link")
        };
        port_a.send_datagram(addr(2), b"hello");
        port_a.send_datagram(addr(3), b"nobody there");
        assert_eq!(network.stats().datagrams, 1);
        assert_eq!(network.stats().datagram_bytes, 5);

        let served = tokio::spawn(async move {
            let incoming = requests_b.recv().await.unwrap();
            assert_eq!(incoming.from, addr(1));
            let _ = incoming.reply.send(Response::Error {
                message: "no".into(),
            });
        });
        let request = Request::Hello {
            node: crate::wire::Introduction {
                node_id: "a".into(),
                generation: 1,
                endpoint: addr(1),
                host: String::new(),
                databases: Vec::new(),
            },
            register: false,
        };
        let answer = a
            .request(addr(2), &request, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            answer,
            Response::Error {
                message: "no".into()
            }
        );
        served.await.unwrap();
        assert!(matches!(
            a.request(addr(3), &request, Duration::from_secs(5)).await,
            Err(RequestError::Unreachable(_))
        ));
    }

    #[tokio::test]
    async fn loss_drops_datagrams_and_close_frees_the_address() {
        let network = MemoryNetwork::new();
        let (a, _ga, _ra) = network.bind(addr(1)).unwrap();
        let (_b, _gb, _rb) = network.bind(addr(2)).unwrap();
        network.set_loss(1.0);
        let PeerLink::Memory(port_a) = &a else {
            panic!("a memory link")
        };
        port_a.send_datagram(addr(2), b"x");
        assert_eq!(network.stats().lost, 1);
        assert_eq!(network.stats().datagrams, 0);
        a.close().await;
        assert!(network.bind(addr(1)).is_ok());
    }
}
