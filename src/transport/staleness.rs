//! Recognising gossip that arrives late.
//!
//! QUIC streams are reliable: gossip written during a partition is retransmitted when it
//! heals and arrives as a burst of old heartbeats, which makes chitchat's failure detector
//! believe heartbeats come every millisecond and then call the node dead after one quiet
//! round. Each message carries the sender's monotonic clock (ms since its transport started);
//! the receiver keeps, per sender, the smallest `local clock - sender clock` seen (one-way delay
//! plus the clocks' offset) and treats a message whose difference exceeds that minimum by more
//! than the threshold as stale. No synchronised clocks are needed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Per-sender clock tracking.
#[derive(Default)]
pub struct StalenessFilter {
    senders: HashMap<SocketAddr, SenderClock>,
}

struct SenderClock {
    min_offset_ms: i128,
    last_sent_ms: u64,
    /// The connection the sender's messages came over; a new one may be a new process.
    connection: usize,
}

impl StalenessFilter {
    /// Whether a message `from`, stamped `sent_ms` by the sender and received at `local_ms`,
    /// is older than `threshold`.
    pub fn is_stale(
        &mut self,
        from: SocketAddr,
        connection: usize,
        sent_ms: u64,
        local_ms: u64,
        threshold: Duration,
    ) -> bool {
        let offset = i128::from(local_ms) - i128::from(sent_ms);
        let clock = self.senders.entry(from).or_insert(SenderClock {
            min_offset_ms: offset,
            last_sent_ms: sent_ms,
            connection,
        });
        // Another connection, or a sender clock that went back, may be a new process there (a
        // restart, with a clock of its own): start over from this message.
        if connection != clock.connection || sent_ms < clock.last_sent_ms {
            clock.min_offset_ms = offset;
            clock.last_sent_ms = sent_ms;
            clock.connection = connection;
        }
        clock.last_sent_ms = clock.last_sent_ms.max(sent_ms);
        clock.min_offset_ms = clock.min_offset_ms.min(offset);
        offset - clock.min_offset_ms > threshold.as_millis() as i128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_messages_are_stale_and_restarts_reset() {
        let mut filter = StalenessFilter::default();
        let peer: SocketAddr = "127.0.0.2:9091".parse().unwrap();
        let limit = Duration::from_secs(1);
        // Sender clock 100 ms behind ours, 5 ms of delay.
        assert!(!filter.is_stale(peer, 1, 1_000, 1_105, limit));
        assert!(!filter.is_stale(peer, 1, 1_250, 1_354, limit));
        // Written at 1_500, delivered after a 20 s partition.
        assert!(filter.is_stale(peer, 1, 1_500, 21_400, limit));
        // Fresh messages after the heal are fine.
        assert!(!filter.is_stale(peer, 1, 21_300, 21_410, limit));
        // The sender restarted: its clock starts again near zero.
        assert!(!filter.is_stale(peer, 1, 10, 30_000, limit));
        assert!(!filter.is_stale(peer, 1, 260, 30_251, limit));
        // Restarted again, its clock already past the old one's, over a new connection.
        assert!(!filter.is_stale(peer, 2, 5_000, 90_000, limit));
        assert!(!filter.is_stale(peer, 2, 5_250, 90_251, limit));
    }
}
