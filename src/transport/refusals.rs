//! Refused peers: every refusal is reported to a [`RefusalSink`] (the node's counters), and
//! logged at most once per peer address (IP, whatever the port) per minute, never a flood.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::seal::OpenError;

/// How often refusals from the same IP are logged.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Entries kept before old ones are pruned (bounds memory under a scan of many addresses).
const MAX_TRACKED: usize = 4096;

/// Where the transport reports each refusal. A trait, so the transport feeds the node's
/// metrics without depending on the layers above it (the node passes its `Metrics`).
pub trait RefusalSink: Send + Sync {
    /// A sealed membership datagram was dropped before it was decoded.
    fn datagram_refused(&self, refusal: &OpenError);
    /// A QUIC handshake, dialled or accepted, failed in TLS (a peer of another cluster key).
    fn tls_handshake_failed(&self);
}

#[derive(Default)]
pub struct RefusalLog {
    /// By IP only: one host with many source ports is one peer.
    last_logged: Mutex<HashMap<IpAddr, Instant>>,
}

impl RefusalLog {
    /// True when a refusal from `peer` should be logged now: the first from its IP in a minute.
    pub fn should_log(&self, peer: SocketAddr) -> bool {
        let now = Instant::now();
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() >= MAX_TRACKED {
            last.retain(|_, at| now.duration_since(*at) < LOG_EVERY);
        }
        let ip = peer.ip();
        match last.get(&ip) {
            Some(at) if now.duration_since(*at) < LOG_EVERY => false,
            _ => {
                last.insert(ip, now);
                true
            }
        }
    }
}

/// Whether a connection error is the TLS layer refusing (a certificate of another cluster),
/// as opposed to a peer that is simply down.
pub fn is_tls_refusal(error: &quinn::ConnectionError) -> bool {
    // QUIC carries TLS alerts as transport error codes 0x100..0x200 (RFC 9001, 4.8).
    let is_crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match error {
        quinn::ConnectionError::TransportError(e) => is_crypto(e.code),
        quinn::ConnectionError::ConnectionClosed(close) => is_crypto(close.error_code),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_per_ip_per_minute_whatever_the_port() {
        let log = RefusalLog::default();
        let a: SocketAddr = "127.0.0.2:9091".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:9091".parse().unwrap();
        assert!(log.should_log(a));
        assert!(!log.should_log(a));
        assert!(log.should_log(b));
        // Many source ports of one address: still one line a minute.
        for port in 1..500 {
            assert!(
                !log.should_log(SocketAddr::new(a.ip(), port)),
                "port {port}"
            );
        }
    }
}
