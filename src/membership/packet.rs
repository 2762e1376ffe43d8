//! The plaintext of one membership datagram (what the seal wraps): a kind byte, then its body.
//!
//! - `Swim`: one foca packet (probe, ack, gossip, announce...), passed to foca as is.
//! - `Leaving`: "this node stops now", sent by a node to every live member as it stops, so
//!   every peer lists it `left` at once instead of `dead` after a timeout. It names whom the
//!   leaver told (as a hash of their identities), so a receiver that knows members the leaver
//!   did not passes the goodbye on.
//! - `Digest`: anti-entropy: a digest of the records the sender holds; a receiver that holds
//!   something else pulls the difference over QUIC.
//! - `Suspected`: "I could not reach you, and now suspect you", sent straight to the suspect
//!   (Lifeguard's buddy system, which foca lacks): it refutes at once instead of waiting to
//!   hear of the suspicion through gossip, which a small fleet may spend on others first.
//! - `Alive`: the suspect's answer to `Suspected`: "I am alive, at this incarnation". A
//!   member whose own suspicion is about to run out asks the suspect itself first, and this
//!   small answer (not a feed of members) is what ends that suspicion.
//! - `Taken`: "your node id is held by this newer identity", sent to a process whose
//!   datagrams name an identity that lost its node id to a newer one (see `claims`): nothing
//!   else would tell it, since every peer has dropped it from its member list.
//! - `Hello`: "here I am, who are you?", sent to a node known by its address alone (a
//!   master's ADD CLIENT): the receiver takes the sender in and answers with a `Hello` of its
//!   own, so each holds the other alive, record and all, one round trip after the first
//!   datagram. Joining over QUIC takes a handshake first: two round trips, and on a small
//!   machine most of the time an ADD CLIENT took. The first hello is padded to a whole
//!   datagram, because the answer to an unknown source is never bigger than what it sent.
//!
//! Plaintexts opening with 0x20 or 0x21 are the transport's sealed requests and answers
//! (`transport::sealed_requests`) and never reach membership.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

const KIND_SWIM: u8 = 1;
const KIND_LEAVING: u8 = 2;
const KIND_DIGEST: u8 = 3;
const KIND_SUSPECTED: u8 = 4;
const KIND_ALIVE: u8 = 5;
const KIND_TAKEN: u8 = 6;
const KIND_HELLO: u8 = 7;

/// A decoded membership datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Swim(&'a [u8]),
    Leaving(Leaving),
    Digest(Digest),
    Suspected(Suspected),
    Alive(Alive),
    Taken(Taken),
    Hello(Hello),
}

/// "Here I am": the sender, its record (with the body when it fits), and whether this is the
/// answer to a hello (never answered itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub member: super::id::MemberId,
    pub record: super::record::RecordUpdate,
    pub answer: bool,
}

/// "Your node id is held by `holder`", from a peer that holds `holder` alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    pub holder: super::id::MemberId,
    pub incarnation: u16,
}

/// The answer to [`Suspected`]: the sender is alive at `incarnation` (raised past the
/// suspected one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alive {
    pub member: super::id::MemberId,
    pub incarnation: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspected {
    /// Who suspects (so the suspect can answer it directly).
    pub by: super::id::MemberId,
    /// The suspect, as the sender knows it, and the incarnation it suspects.
    pub suspect: super::id::MemberId,
    pub incarnation: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaving {
    pub node_id: String,
    pub generation: u64,
    /// The hash of the identities the leaver told directly (see
    /// `super::id::identities_hash`); none from a sender that predates it.
    pub told: Option<u64>,
}

/// What every version of `Leaving` starts with. `told` follows it on the wire: a receiver
/// that predates it ignores trailing bytes (postcard does), and one that knows it reads a
/// packet without it as `told: None`.
#[derive(Serialize, Deserialize)]
struct LeavingHead {
    node_id: String,
    generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Where the sender's records can be pulled (its advertised endpoint).
    pub from: SocketAddr,
    pub digest: u64,
    /// Set on the answer to a digest, which is never answered itself.
    pub reply: bool,
}

/// Why a datagram's plaintext was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("empty membership datagram")]
    Empty,
    #[error("unknown membership datagram kind {0}")]
    UnknownKind(u8),
    #[error("malformed {kind} datagram: {reason}")]
    Malformed { kind: &'static str, reason: String },
}

impl Packet<'_> {
    /// The name used in metrics and logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Packet::Swim(_) => "swim",
            Packet::Leaving(_) => "leaving",
            Packet::Digest(_) => "digest",
            Packet::Suspected(_) => "suspected",
            Packet::Alive(_) => "alive",
            Packet::Taken(_) => "taken",
            Packet::Hello(_) => "hello",
        }
    }
}

/// Parses a plaintext datagram; never panics on any input.
pub fn decode(bytes: &[u8]) -> Result<Packet<'_>, PacketError> {
    let (&kind, body) = bytes.split_first().ok_or(PacketError::Empty)?;
    let malformed = |kind: &'static str| {
        move |e: postcard::Error| PacketError::Malformed {
            kind,
            reason: e.to_string(),
        }
    };
    match kind {
        KIND_SWIM => Ok(Packet::Swim(body)),
        KIND_LEAVING => {
            let (head, rest): (LeavingHead, &[u8]) =
                postcard::take_from_bytes(body).map_err(malformed("leaving"))?;
            let told = match rest {
                [] => None,
                rest => Some(postcard::from_bytes(rest).map_err(malformed("leaving"))?),
            };
            Ok(Packet::Leaving(Leaving {
                node_id: head.node_id,
                generation: head.generation,
                told,
            }))
        }
        KIND_DIGEST => Ok(Packet::Digest(
            postcard::from_bytes(body).map_err(malformed("digest"))?,
        )),
        KIND_SUSPECTED => Ok(Packet::Suspected(
            postcard::from_bytes(body).map_err(malformed("suspected"))?,
        )),
        KIND_ALIVE => Ok(Packet::Alive(
            postcard::from_bytes(body).map_err(malformed("alive"))?,
        )),
        KIND_TAKEN => Ok(Packet::Taken(
            postcard::from_bytes(body).map_err(malformed("taken"))?,
        )),
        // A first hello is padded with zeros after its body: postcard reads the body and
        // leaves the rest.
        KIND_HELLO => Ok(Packet::Hello(
            postcard::from_bytes(body).map_err(malformed("hello"))?,
        )),
        other => Err(PacketError::UnknownKind(other)),
    }
}

/// Whether an encoded plaintext is a SWIM packet (for counting).
pub fn is_swim(bytes: &[u8]) -> bool {
    bytes.first() == Some(&KIND_SWIM)
}

/// `[kind] + foca bytes`.
pub fn encode_swim(foca_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(foca_bytes.len() + 1);
    out.push(KIND_SWIM);
    out.extend_from_slice(foca_bytes);
    out
}

pub fn encode_leaving(leaving: &Leaving) -> Vec<u8> {
    let head = LeavingHead {
        node_id: leaving.node_id.clone(),
        generation: leaving.generation,
    };
    // postcard writes a tuple as its fields one after the other: the head, then `told`.
    match leaving.told {
        Some(told) => encode_with(KIND_LEAVING, &(head, told)),
        None => encode_with(KIND_LEAVING, &head),
    }
}

pub fn encode_digest(digest: &Digest) -> Vec<u8> {
    encode_with(KIND_DIGEST, digest)
}

pub fn encode_suspected(suspected: &Suspected) -> Vec<u8> {
    encode_with(KIND_SUSPECTED, suspected)
}

pub fn encode_alive(alive: &Alive) -> Vec<u8> {
    encode_with(KIND_ALIVE, alive)
}

pub fn encode_taken(taken: &Taken) -> Vec<u8> {
    encode_with(KIND_TAKEN, taken)
}

/// A hello, padded with zeros up to `pad_to` bytes when it is shorter.
pub fn encode_hello(hello: &Hello, pad_to: usize) -> Vec<u8> {
    let mut bytes = encode_with(KIND_HELLO, hello);
    if bytes.len() < pad_to {
        bytes.resize(pad_to, 0);
    }
    bytes
}

fn encode_with(kind: u8, body: &impl Serialize) -> Vec<u8> {
    // Encoding these small plain structs into a Vec cannot fail; an empty body would be
    // refused by every receiver, which is the safe outcome if it ever did.
    postcard::to_extend(body, vec![kind]).unwrap_or_else(|_| vec![kind])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        for told in [None, Some(0), Some(u64::MAX)] {
            let leaving = Leaving {
                node_id: "n1".into(),
                generation: 7,
                told,
            };
            assert_eq!(
                decode(&encode_leaving(&leaving)),
                Ok(Packet::Leaving(leaving))
            );
        }
        let digest = Digest {
            from: ([127, 0, 0, 2], 9091).into(),
            digest: 42,
            reply: true,
        };
        assert_eq!(decode(&encode_digest(&digest)), Ok(Packet::Digest(digest)));
        assert_eq!(decode(&encode_swim(b"xyz")), Ok(Packet::Swim(b"xyz")));
        let alive = Alive {
            member: super::super::id::MemberId::new("n1", 7, ([127, 0, 0, 2], 9091).into()),
            incarnation: 3,
        };
        assert_eq!(
            decode(&encode_alive(&alive)),
            Ok(Packet::Alive(alive.clone()))
        );
        let taken = Taken {
            holder: alive.member,
            incarnation: 1,
        };
        assert_eq!(
            decode(&encode_taken(&taken)),
            Ok(Packet::Taken(taken.clone()))
        );
        let hello = Hello {
            member: taken.holder,
            record: super::super::record::RecordUpdate {
                node_id: "n1".into(),
                generation: 7,
                version: 2,
                owner_endpoint: ([127, 0, 0, 2], 9091).into(),
                body: None,
            },
            answer: false,
        };
        let padded = encode_hello(&hello, 1000);
        assert_eq!(padded.len(), 1000);
        assert_eq!(decode(&padded), Ok(Packet::Hello(hello.clone())));
        let short = encode_hello(&hello, 0);
        assert!(short.len() < 100, "{} bytes unpadded", short.len());
        assert!(matches!(
            decode(&short[..short.len() - 1]),
            Err(PacketError::Malformed { .. })
        ));
        assert_eq!(decode(&[]), Err(PacketError::Empty));
        assert_eq!(decode(&[9, 1]), Err(PacketError::UnknownKind(9)));
        assert!(matches!(
            decode(&[KIND_DIGEST, 0xff]),
            Err(PacketError::Malformed { .. })
        ));
    }

    /// A goodbye from a node that predates `told` reads as one without it, and a node that
    /// predates it reads the new one (it decodes the head and ignores the rest).
    #[test]
    fn a_goodbye_reads_across_versions() {
        let old = encode_with(
            KIND_LEAVING,
            &LeavingHead {
                node_id: "n1".into(),
                generation: 7,
            },
        );
        assert!(matches!(
            decode(&old),
            Ok(Packet::Leaving(Leaving { told: None, .. }))
        ));
        let new = encode_leaving(&Leaving {
            node_id: "n1".into(),
            generation: 7,
            told: Some(42),
        });
        let head: LeavingHead = postcard::from_bytes(&new[1..]).unwrap();
        assert_eq!((head.node_id.as_str(), head.generation), ("n1", 7));
        // A cut `told` is refused, not read as another number.
        let full = encode_leaving(&Leaving {
            node_id: "n1".into(),
            generation: 7,
            told: Some(u64::MAX),
        });
        assert!(matches!(
            decode(&full[..full.len() - 1]),
            Err(PacketError::Malformed { .. })
        ));
    }
}
