//! chitchat's `Transport` / `Socket` traits, carried over [`QuicTransport`].
//!
//! chitchat answers a message by sending to the address `recv` returned, so `recv` returns the
//! sender's *advertised* endpoint (from the stream header), never the UDP source address, which
//! behind NAT or port mapping is not one anybody can dial.

use std::net::SocketAddr;
use std::sync::Mutex;

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use tokio::sync::mpsc;
use tracing::debug;

use super::{InboundGossip, QuicTransport};

/// Hands chitchat a socket over the node's QUIC endpoint. It can be opened once.
pub struct GossipTransport {
    quic: QuicTransport,
    inbox: Mutex<Option<mpsc::Receiver<InboundGossip>>>,
}

impl GossipTransport {
    pub(crate) fn new(quic: QuicTransport, inbox: mpsc::Receiver<InboundGossip>) -> Self {
        GossipTransport {
            quic,
            inbox: Mutex::new(Some(inbox)),
        }
    }
}

#[async_trait]
impl Transport for GossipTransport {
    async fn open(&self, _listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inbox = self
            .inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| anyhow::anyhow!("the gossip socket is already open"))?;
        Ok(Box::new(GossipSocket {
            quic: self.quic.clone(),
            inbox,
            buf: Vec::new(),
        }))
    }
}

struct GossipSocket {
    quic: QuicTransport,
    inbox: mpsc::Receiver<InboundGossip>,
    buf: Vec<u8>,
}

#[async_trait]
impl Socket for GossipSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        self.buf.clear();
        msg.serialize(&mut self.buf);
        self.quic.send_gossip(to, &self.buf);
        Ok(())
    }

    /// Cancel-safe: the only await is on an mpsc receiver, which loses nothing when dropped.
    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        loop {
            let inbound = self
                .inbox
                .recv()
                .await
                .ok_or_else(|| anyhow::anyhow!("the QUIC endpoint is closed"))?;
            let mut payload: &[u8] = &inbound.payload;
            match ChitchatMessage::deserialize(&mut payload) {
                Ok(msg) => return Ok((inbound.from, msg)),
                Err(e) => {
                    debug!(from = %inbound.from, error = %e, "ignoring an invalid chitchat message")
                }
            }
        }
    }
}
