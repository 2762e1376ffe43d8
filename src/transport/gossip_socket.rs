//! chitchat's `Transport` / `Socket` traits, carried over a [`PeerLink`] (QUIC, or the
//! in-process network of the edge harness).
//!
//! chitchat answers a message by sending to the address `recv` returned, so `recv` returns the
//! sender's *advertised* endpoint (from the stream header), never the UDP source address, which
//! behind NAT or port mapping is not one anybody can dial.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{gossip_guard, InboundGossip, PeerLink};

/// Hands chitchat a socket over the node's QUIC endpoint. It can be opened once.
pub struct GossipTransport {
    link: PeerLink,
    inbox: Mutex<Option<mpsc::Receiver<InboundGossip>>>,
    min_syn_spacing: Duration,
}

impl GossipTransport {
    pub(crate) fn new(
        link: PeerLink,
        inbox: mpsc::Receiver<InboundGossip>,
        min_syn_spacing: Duration,
    ) -> Self {
        GossipTransport {
            link,
            inbox: Mutex::new(Some(inbox)),
            min_syn_spacing,
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
            link: self.link.clone(),
            inbox,
            buf: Vec::new(),
            min_syn_spacing: self.min_syn_spacing,
            syn_budgets: HashMap::new(),
        }))
    }
}

struct GossipSocket {
    link: PeerLink,
    inbox: mpsc::Receiver<InboundGossip>,
    buf: Vec<u8>,
    /// Gossip rounds (Syns) to one peer are paced: a burst of at most [`SYN_BURST`], then one
    /// per this spacing. chitchat's round timer fires all its missed ticks at once after the
    /// process was frozen (docker pause, a stopped VM); a burst of heartbeats would make peers'
    /// failure detectors expect heartbeats every millisecond and then call the node dead after
    /// one quiet round. Explicit exchanges (a leave, an ADD CLIENT) fit in the burst allowance.
    min_syn_spacing: Duration,
    syn_budgets: HashMap<SocketAddr, SynBudget>,
}

/// Syns a peer may receive back to back before pacing applies.
const SYN_BURST: f64 = 3.0;

/// A token bucket: `tokens` Syns may go now; one more every `min_syn_spacing`.
struct SynBudget {
    tokens: f64,
    at: Instant,
}

impl GossipSocket {
    /// Takes a Syn token for `to`; false when the peer's budget is spent.
    fn take_syn_token(&mut self, to: SocketAddr) -> bool {
        let now = Instant::now();
        let spacing = self.min_syn_spacing.as_secs_f64().max(1e-3);
        if self.syn_budgets.len() > 4096 {
            self.syn_budgets
                .retain(|_, b| now.duration_since(b.at).as_secs_f64() < spacing * SYN_BURST);
        }
        let budget = self.syn_budgets.entry(to).or_insert(SynBudget {
            tokens: SYN_BURST,
            at: now,
        });
        let refill = now.duration_since(budget.at).as_secs_f64() / spacing;
        budget.tokens = (budget.tokens + refill).min(SYN_BURST);
        budget.at = now;
        if budget.tokens >= 1.0 {
            budget.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[async_trait]
impl Socket for GossipSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        if matches!(msg, ChitchatMessage::Syn { .. }) && !self.take_syn_token(to) {
            return Ok(());
        }
        self.buf.clear();
        msg.serialize(&mut self.buf);
        self.link.send_gossip(to, &self.buf);
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
            if let Err(refused) = gossip_guard::check(&inbound.payload) {
                warn!(from = %inbound.from, "ignoring a gossip message: {refused}");
                continue;
            }
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
