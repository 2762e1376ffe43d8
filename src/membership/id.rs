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
///
/// Build one with [`MemberId::new`] and do not change `node_id` afterwards: the identity
/// keeps a key derived from it (see [`NodeKey`]).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "WireMemberId", into = "WireMemberId")]
pub struct MemberId {
    pub node_id: String,
    pub generation: u64,
    pub endpoint: SocketAddr,
    pub renewal: u16,
    key: NodeKey,
}

/// What foca compares to tell whether two identities are one node: a 128-bit hash of the
/// node id, held inline. foca looks a member up by a scan of its whole member list on every
/// datagram (the sender) and every update, calling `addr()` on each member; returning the
/// node id itself cost two String copies per member scanned (at 1,000 members, most of the
/// simulator's time). A collision between two node ids is as likely as guessing a 128-bit
/// key, and a peer that holds the cluster key can claim any node id anyway.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct NodeKey(u128);

impl NodeKey {
    /// FNV-1a, 128 bits: stable, and the key never leaves the process.
    pub fn of(node_id: &str) -> NodeKey {
        const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
        const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
        let mut hash = OFFSET;
        for byte in node_id.bytes() {
            hash ^= u128::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
        NodeKey(hash)
    }
}

/// A [`MemberId`] as it goes on the wire (the key is derived, not sent).
#[derive(Serialize, Deserialize)]
struct WireMemberId {
    node_id: String,
    generation: u64,
    endpoint: SocketAddr,
    renewal: u16,
}

impl From<WireMemberId> for MemberId {
    fn from(w: WireMemberId) -> MemberId {
        MemberId {
            key: NodeKey::of(&w.node_id),
            node_id: w.node_id,
            generation: w.generation,
            endpoint: w.endpoint,
            renewal: w.renewal,
        }
    }
}

impl From<MemberId> for WireMemberId {
    fn from(m: MemberId) -> WireMemberId {
        WireMemberId {
            node_id: m.node_id,
            generation: m.generation,
            endpoint: m.endpoint,
            renewal: m.renewal,
        }
    }
}

impl MemberId {
    pub fn new(node_id: impl Into<String>, generation: u64, endpoint: SocketAddr) -> MemberId {
        let node_id = node_id.into();
        MemberId {
            key: NodeKey::of(&node_id),
            node_id,
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

/// An order-free hash of a set of identities (node id and generation; a renewal is the same
/// start): a leaver sends the hash of the members it told, and a receiver that knows another
/// set passes the goodbye on. Each identity is mixed before the sum (see
/// [`super::record::mix`]), so two different sets collide by chance only.
pub fn identities_hash<'a>(ids: impl Iterator<Item = &'a MemberId>) -> u64 {
    ids.map(|id| {
        let key = id.key.0;
        super::record::mix((key as u64) ^ ((key >> 64) as u64) ^ id.generation.rotate_left(29))
    })
    .fold(0u64, u64::wrapping_add)
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
    type Addr = NodeKey;

    fn renew(&self) -> Option<Self> {
        let renewal = self.renewal.checked_add(1)?;
        Some(MemberId {
            renewal,
            ..self.clone()
        })
    }

    fn addr(&self) -> NodeKey {
        self.key
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
        assert_ne!(
            id(1, 1).addr(),
            MemberId::new("b", 1, ([127, 0, 0, 1], 1).into()).addr()
        );
    }

    #[test]
    fn the_identities_hash_is_of_the_set_not_its_order_or_endpoints() {
        let a = id(1, 1);
        let b = MemberId::new("b", 5, ([127, 0, 0, 2], 1).into());
        let c = MemberId::new("c", 5, ([127, 0, 0, 3], 1).into());
        let hash = |ids: &[&MemberId]| identities_hash(ids.iter().copied());
        assert_eq!(hash(&[&a, &b]), hash(&[&b, &a]));
        // A renewal or a move is the same start of the same node.
        assert_eq!(hash(&[&a, &b]), hash(&[&id(1, 9).renew().unwrap(), &b]));
        assert_ne!(hash(&[&a, &b]), hash(&[&a, &c]));
        assert_ne!(hash(&[&a, &b]), hash(&[&a]));
        // A restart is another identity: a leaver that knew the old one did not tell it.
        assert_ne!(hash(&[&a, &b]), hash(&[&id(2, 1), &b]));
    }

    #[test]
    fn the_wire_form_is_the_four_fields_and_the_key_is_derived_again() {
        let original = id(3, 7).renew().unwrap();
        let bytes = postcard::to_allocvec(&original).unwrap();
        let wire = postcard::to_allocvec(&("a", 3u64, original.endpoint, 1u16)).unwrap();
        assert_eq!(bytes, wire);
        let back: MemberId = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, original);
        assert_eq!(back.addr(), original.addr());
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
