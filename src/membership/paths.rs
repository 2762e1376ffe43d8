//! Return paths: where a member is reached when its advertised endpoint is not the way back.
//!
//! A member advertises one endpoint, but a peer may only reach it by another address: a
//! master on two networks advertises its address on one, and the clients on the other reach
//! it only at its address there (the one its datagrams to them come from). Sending to the
//! advertised endpoint would lose every answer, and the member would be suspected, declared
//! dead and taken back in a loop. So, as WireGuard roams a peer to the source of its latest
//! authenticated packet, the engine sends to the address it last heard a member from, while
//! that was lately; otherwise, and whenever the member is heard from its advertised endpoint
//! again, to the advertised endpoint.
//!
//! Only sealed datagrams that opened with the cluster key reach the engine, and a path is
//! learned only for a member the engine already knew. The seal's replay guard is kept per
//! source address, so a datagram captured and sent again from a forged source would open
//! there: a path therefore moves only with a datagram newer (by its sender's epoch and
//! sequence number, see [`SenderStamp`]) than any heard from that member before. A replay is
//! older than what the member itself has sent since, so a forged source cannot steer a node's
//! traffic, nor be answered in full, unless it is on the path and beats the original there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a path is used after the member was last heard by it. A node behind a NAT is
/// heard from its mapping, which a NAT keeps for at least 30 s after the last packet (the
/// shortest UDP timeout of Linux conntrack): within that, answers sent there get back.
pub const PATH_FRESH_FOR: Duration = Duration::from_secs(20);

/// Where a sealed datagram stands in its sender's stream: the sending process's epoch and
/// its sequence number, from the seal (both grow: a later datagram, or a later process,
/// has a greater stamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SenderStamp {
    pub epoch: u64,
    pub seq: u64,
}

/// How long the newest stamp of a member is kept after it was last heard (far longer than a
/// path is used: a replay must not move a path back after a quiet spell).
const STAMPS_KEPT_FOR: Duration = Duration::from_secs(600);

/// A member's way back, other than its advertised endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Path {
    via: SocketAddr,
    heard_at: Duration,
}

/// The return paths of the members heard from somewhere other than their advertised endpoint.
#[derive(Debug, Default)]
pub struct ReturnPaths {
    /// Advertised endpoint -> where the member was last heard from.
    by_endpoint: HashMap<SocketAddr, Path>,
    /// The other way: where a member was heard from -> its advertised endpoint (so telling a
    /// datagram's source costs a lookup, not a walk over the paths).
    by_source: HashMap<SocketAddr, SocketAddr>,
    /// Advertised endpoint -> the newest stamp heard from that member, and when.
    newest: HashMap<SocketAddr, (SenderStamp, Duration)>,
}

impl ReturnPaths {
    /// The member advertised at `endpoint` was heard from `from`, at `now`, in a datagram
    /// stamped `stamp` (`None` where datagrams are not sealed: in-process and simulated
    /// networks, which forge nothing). Returns whether `from` is where the member is reached
    /// now: false for a datagram that would move the path but is not newer than everything
    /// heard from the member (a replay from a forged source, or one overtaken on the way).
    pub fn heard(
        &mut self,
        endpoint: SocketAddr,
        from: SocketAddr,
        stamp: Option<SenderStamp>,
        now: Duration,
    ) -> bool {
        let newer = match (stamp, self.newest.get(&endpoint)) {
            (Some(stamp), Some((newest, _))) => stamp > *newest,
            _ => true,
        };
        if newer {
            if let Some(stamp) = stamp {
                self.newest.insert(endpoint, (stamp, now));
            }
        }
        if self.route(endpoint, now) == from {
            if let Some(path) = self.by_endpoint.get_mut(&endpoint) {
                path.heard_at = now;
            }
            return true;
        }
        if !newer {
            return false;
        }
        self.move_path(endpoint, from, now);
        true
    }

    /// The member advertised at `endpoint` is reached at `from` from now on.
    fn move_path(&mut self, endpoint: SocketAddr, from: SocketAddr, now: Duration) {
        if let Some(old) = self.by_endpoint.remove(&endpoint) {
            self.by_source.remove(&old.via);
        }
        // Heard from its advertised endpoint: that works (again), no detour.
        if from != endpoint {
            let path = Path {
                via: from,
                heard_at: now,
            };
            self.by_endpoint.insert(endpoint, path);
            if let Some(previous) = self.by_source.insert(from, endpoint) {
                // Another member was heard from this address before: it has moved on.
                if previous != endpoint {
                    self.by_endpoint.remove(&previous);
                }
            }
        }
    }

    /// Where to send to the member advertised at `endpoint`.
    pub fn route(&self, endpoint: SocketAddr, now: Duration) -> SocketAddr {
        match self.by_endpoint.get(&endpoint) {
            Some(path) if now.saturating_sub(path.heard_at) < PATH_FRESH_FOR => path.via,
            _ => endpoint,
        }
    }

    /// The advertised endpoint of the member whose fresh path is `from`, if any: a datagram
    /// from there comes from a member we know.
    pub fn endpoint_via(&self, from: SocketAddr, now: Duration) -> Option<SocketAddr> {
        let endpoint = self.by_source.get(&from)?;
        (self.route(*endpoint, now) == from).then_some(*endpoint)
    }

    /// Forgets the paths not heard by lately.
    pub fn prune(&mut self, now: Duration) {
        self.by_endpoint
            .retain(|_, path| now.saturating_sub(path.heard_at) < PATH_FRESH_FOR);
        let by_endpoint = &self.by_endpoint;
        self.by_source
            .retain(|via, endpoint| by_endpoint.get(endpoint).is_some_and(|p| p.via == *via));
        self.newest
            .retain(|_, (_, heard_at)| now.saturating_sub(*heard_at) < STAMPS_KEPT_FOR);
    }

    pub fn len(&self) -> usize {
        self.by_endpoint.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_endpoint.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_member_heard_elsewhere_is_answered_there_while_the_path_is_fresh() {
        let advertised = addr("10.0.1.10:9091");
        let other_network = addr("10.0.2.10:9091");
        let mut paths = ReturnPaths::default();
        assert_eq!(paths.route(advertised, Duration::ZERO), advertised);

        paths.heard(advertised, other_network, None, Duration::from_secs(1));
        assert_eq!(
            paths.route(advertised, Duration::from_secs(2)),
            other_network
        );
        assert_eq!(
            paths.endpoint_via(other_network, Duration::from_secs(2)),
            Some(advertised)
        );

        let stale = Duration::from_secs(1) + PATH_FRESH_FOR;
        assert_eq!(paths.route(advertised, stale), advertised);
        assert_eq!(paths.endpoint_via(other_network, stale), None);
        paths.prune(stale);
        assert!(paths.is_empty());
    }

    #[test]
    fn heard_from_its_advertised_endpoint_again_ends_the_detour() {
        let advertised = addr("10.0.1.10:9091");
        let mut paths = ReturnPaths::default();
        paths.heard(
            advertised,
            addr("10.0.2.10:9091"),
            None,
            Duration::from_secs(1),
        );
        paths.heard(advertised, advertised, None, Duration::from_secs(2));
        assert_eq!(paths.route(advertised, Duration::from_secs(3)), advertised);
        assert_eq!(paths.len(), 0);
        assert_eq!(
            paths.endpoint_via(addr("10.0.2.10:9091"), Duration::from_secs(3)),
            None
        );
    }

    #[test]
    fn the_latest_source_wins() {
        let advertised = addr("10.0.1.10:9091");
        let mut paths = ReturnPaths::default();
        paths.heard(
            advertised,
            addr("10.0.2.10:9091"),
            None,
            Duration::from_secs(1),
        );
        paths.heard(
            advertised,
            addr("10.0.3.10:9091"),
            None,
            Duration::from_secs(2),
        );
        assert_eq!(
            paths.route(advertised, Duration::from_secs(3)),
            addr("10.0.3.10:9091")
        );
        assert_eq!(
            paths.endpoint_via(addr("10.0.2.10:9091"), Duration::from_secs(3)),
            None
        );
    }

    fn stamp(seq: u64) -> Option<SenderStamp> {
        Some(SenderStamp { epoch: 7, seq })
    }

    #[test]
    fn a_replay_from_a_forged_source_does_not_move_the_path() {
        let advertised = addr("10.0.1.10:9091");
        let forged = addr("203.0.113.9:9091");
        let mut paths = ReturnPaths::default();
        assert!(paths.heard(advertised, advertised, stamp(10), Duration::from_secs(1)));
        // A copy of datagram 5 (or of 10 itself), sent again from elsewhere.
        assert!(!paths.heard(advertised, forged, stamp(5), Duration::from_secs(2)));
        assert!(!paths.heard(advertised, forged, stamp(10), Duration::from_secs(2)));
        assert_eq!(paths.route(advertised, Duration::from_secs(2)), advertised);
        assert_eq!(paths.endpoint_via(forged, Duration::from_secs(2)), None);
        // The member itself, from a new address, with what it sends next.
        let moved = addr("10.0.2.10:9091");
        assert!(paths.heard(advertised, moved, stamp(11), Duration::from_secs(3)));
        assert_eq!(paths.route(advertised, Duration::from_secs(3)), moved);
        // An older datagram still on its way from the old address does not move it back,
        // and one from the path in use is heard as usual.
        assert!(!paths.heard(advertised, advertised, stamp(9), Duration::from_secs(4)));
        assert_eq!(paths.route(advertised, Duration::from_secs(4)), moved);
        assert!(paths.heard(advertised, moved, stamp(8), Duration::from_secs(4)));
    }

    #[test]
    fn an_address_heard_for_another_member_moves_to_it() {
        let (first, second) = (addr("10.0.1.10:9091"), addr("10.0.1.11:9091"));
        let nat = addr("192.0.2.1:40000");
        let mut paths = ReturnPaths::default();
        paths.heard(first, nat, None, Duration::from_secs(1));
        paths.heard(second, nat, None, Duration::from_secs(2));
        assert_eq!(paths.route(first, Duration::from_secs(3)), first);
        assert_eq!(paths.route(second, Duration::from_secs(3)), nat);
        assert_eq!(
            paths.endpoint_via(nat, Duration::from_secs(3)),
            Some(second)
        );
    }
}
