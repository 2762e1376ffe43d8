//! Rate-limited reporting of refused peers: once per peer per minute, never a flood.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the same peer's refusal is logged.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// Entries kept before old ones are pruned (bounds memory under a scan of many addresses).
const MAX_TRACKED: usize = 4096;

#[derive(Default)]
pub struct RefusalLog {
    last_logged: Mutex<HashMap<SocketAddr, Instant>>,
}

impl RefusalLog {
    /// True when a refusal from `peer` should be logged now.
    pub fn should_log(&self, peer: SocketAddr) -> bool {
        let now = Instant::now();
        let mut last = self.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() >= MAX_TRACKED {
            last.retain(|_, at| now.duration_since(*at) < LOG_EVERY);
        }
        match last.get(&peer) {
            Some(at) if now.duration_since(*at) < LOG_EVERY => false,
            _ => {
                last.insert(peer, now);
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
    fn logs_once_per_peer_per_minute() {
        let log = RefusalLog::default();
        let a: SocketAddr = "127.0.0.2:9091".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:9091".parse().unwrap();
        assert!(log.should_log(a));
        assert!(!log.should_log(a));
        assert!(log.should_log(b));
    }
}
