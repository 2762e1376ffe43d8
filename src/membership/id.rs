//! Who a member is: node id, generation, advertised endpoint (and a renewal count).

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A member's identity as SWIM (foca) sees it.
///
/// - `node_id` is the *address* in foca's sense: two identities with one node id are the same
///   node, and the newer replaces the older in the same row (a restart, or a move to a new
///   endpoint, is followed by node id).
/// - `generation` grows on every start of the node (kept in its data dir).
/// - `renewal` grows when a running node finds itself declared dead by mistake and rejoins
///   (foca's [`foca::Identity::renew`]): it must win over the identity that was declared dead.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MemberId {
    pub node_id: String,
    pub generation: u64,
    pub endpoint: SocketAddr,
    pub renewal: u16,
}

impl MemberId {
    pub fn new(node_id: impl Into<String>, generation: u64, endpoint: SocketAddr) -> MemberId {
        MemberId {
            node_id: node_id.into(),
            generation,
            endpoint,
            renewal: 0,
        }
    }

    /// Orders two identities of one node: the later start wins, then the later renewal.
    pub fn is_newer_than(&self, other: &MemberId) -> bool {
        (self.generation, self.renewal) > (other.generation, other.renewal)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}#{}.{}@{}",
            self.node_id, self.generation, self.renewal, self.endpoint
        )
    }
}

impl foca::Identity for MemberId {
    type Addr = String;

    fn renew(&self) -> Option<Self> {
        let renewal = self.renewal.checked_add(1)?;
        Some(MemberId {
            renewal,
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.node_id.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.is_newer_than(adversary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    fn id(generation: u64, port: u16) -> MemberId {
        MemberId::new("a", generation, ([127, 0, 0, 1], port).into())
    }

    #[test]
    fn a_restart_wins_over_the_old_generation_whatever_the_endpoint() {
        assert!(id(2, 1).win_addr_conflict(&id(1, 2)));
        assert!(!id(1, 2).win_addr_conflict(&id(2, 1)));
        assert_eq!(id(1, 1).addr(), id(2, 9).addr());
    }

    #[test]
    fn a_renewal_wins_over_the_identity_declared_dead() {
        let renewed = id(5, 1).renew().unwrap();
        assert_eq!(renewed.generation, 5);
        assert!(renewed.win_addr_conflict(&id(5, 1)));
        // A later start still wins over any renewal of an earlier one.
        assert!(id(6, 1).win_addr_conflict(&renewed));
    }
}
