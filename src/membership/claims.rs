//! Updates that give this node's own id to another live identity.
//!
//! Two processes can hold one node id at once: a partition heals onto a node and the process
//! started with its id on the other side while it was cut off (the start-time check could not
//! see it). foca's answer to an update that gives its own id to another, live identity is to
//! declare that identity down and spread it; the other holder does the same, and the id's row
//! flaps between the two, `dead` half the time, for as long as both run. So the engine takes
//! such updates out of each foca packet before foca reads it ([`take_claims`]), and settles
//! the conflict itself (see `Engine::own_id_claimed`): the process that started later (the
//! newer generation, which every node's foca already prefers) keeps the id, and the earlier
//! one, once the newer one has answered it directly, hands its peers over and stops.

use foca::{Header, Member as FocaMember, Message, State};

use super::id::MemberId;

/// A foca packet with the claims on this node's id taken out, and those claims.
#[derive(Debug)]
pub struct Claims {
    /// The packet to hand to foca instead of the one received.
    pub packet: Vec<u8>,
    /// Live identities, other than this node's, that carry its node id.
    pub claims: Vec<FocaMember<MemberId>>,
}

/// Takes every update that gives `own`'s node id to another identity that is alive or
/// suspect out of one foca packet; `None` when there is none (nearly always: a cheap scan
/// for the node id's bytes rules most packets out before anything is decoded). Updates that
/// say such an identity is down are left in: they are what a restart looks like.
pub fn take_claims(data: &[u8], own: &MemberId) -> Option<Claims> {
    // The header names us as the destination once; a claim needs a second mention.
    if occurrences(data, own.node_id.as_bytes()) < 2 {
        return None;
    }
    let (header, after_header): (Header<MemberId>, &[u8]) = postcard::take_from_bytes(data).ok()?;
    if header.message == Message::Broadcast || after_header.len() < 2 {
        return None;
    }
    let header_len = data.len() - after_header.len();
    let count = u16::from_be_bytes([after_header[0], after_header[1]]);
    let mut rest = &after_header[2..];
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut claims = Vec::new();
    for _ in 0..count {
        let (member, after): (FocaMember<MemberId>, &[u8]) =
            postcard::take_from_bytes(rest).ok()?;
        let raw = &rest[..rest.len() - after.len()];
        rest = after;
        let id = member.id();
        if id.node_id == own.node_id && id != own && member.state() != State::Down {
            claims.push(member);
        } else {
            kept.push(raw);
        }
    }
    if claims.is_empty() {
        return None;
    }
    let mut packet = Vec::with_capacity(data.len());
    packet.extend_from_slice(&data[..header_len]);
    // At most `count`, so it fits the u16 it came from.
    packet.extend_from_slice(&(kept.len() as u16).to_be_bytes());
    for raw in kept {
        packet.extend_from_slice(raw);
    }
    packet.extend_from_slice(rest);
    Some(Claims { packet, claims })
}

/// Whether `claimant` keeps the node id over `own` when both run: the later start (the newer
/// generation, as foca's own conflict rule says), and between two starts in one millisecond
/// the higher endpoint, so that every node settles it the same way.
pub fn wins_over(claimant: &MemberId, own: &MemberId) -> bool {
    (claimant.generation, claimant.endpoint) > (own.generation, own.endpoint)
}

fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() || needle.len() > haystack.len() {
        return 0;
    }
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

#[cfg(test)]
mod tests {
    use foca::{Codec, PostcardCodec};

    use super::*;

    fn id(node: &str, generation: u64, port: u16) -> MemberId {
        MemberId::new(node, generation, ([127, 0, 0, 1], port).into())
    }

    /// A foca packet as foca writes it: header, update count, updates, then trailing bytes
    /// (custom broadcasts).
    fn packet(dst: &MemberId, updates: &[FocaMember<MemberId>], trailer: &[u8]) -> Vec<u8> {
        let mut codec = PostcardCodec;
        let mut buf = Vec::new();
        let header = Header {
            src: id("other", 1, 9),
            src_incarnation: 0,
            dst: dst.clone(),
            message: Message::Ping(7),
        };
        codec.encode_header(&header, &mut buf).unwrap();
        buf.extend_from_slice(&(updates.len() as u16).to_be_bytes());
        for update in updates {
            codec.encode_member(update, &mut buf).unwrap();
        }
        buf.extend_from_slice(trailer);
        buf
    }

    fn decode_updates(data: &[u8]) -> (Header<MemberId>, Vec<FocaMember<MemberId>>, Vec<u8>) {
        let mut codec = PostcardCodec;
        let mut buf = data;
        let header = codec.decode_header(&mut buf).unwrap();
        let count = u16::from_be_bytes([buf[0], buf[1]]);
        buf = &buf[2..];
        let updates = (0..count)
            .map(|_| codec.decode_member(&mut buf).unwrap())
            .collect();
        (header, updates, buf.to_vec())
    }

    #[test]
    fn a_live_other_holder_of_our_id_is_taken_out_and_the_rest_kept() {
        let own = id("a", 5, 1);
        let twin = id("a", 9, 2);
        let bystander = FocaMember::new(id("b", 1, 3), 2, State::Suspect);
        let data = packet(
            &own,
            &[
                bystander.clone(),
                FocaMember::new(twin.clone(), 4, State::Alive),
                FocaMember::new(own.clone(), 1, State::Suspect),
            ],
            b"broadcasts",
        );
        let claims = take_claims(&data, &own).expect("a claim");
        assert_eq!(claims.claims.len(), 1);
        assert_eq!(claims.claims[0].id(), &twin);
        assert_eq!(claims.claims[0].incarnation(), 4);
        let (header, updates, trailer) = decode_updates(&claims.packet);
        assert_eq!(header.dst, own);
        assert_eq!(
            updates,
            vec![bystander, FocaMember::new(own.clone(), 1, State::Suspect)]
        );
        assert_eq!(trailer, b"broadcasts");
    }

    #[test]
    fn packets_without_claims_are_left_alone() {
        let own = id("a", 5, 1);
        // Down: a previous run of this node, as a restart leaves it.
        let data = packet(&own, &[FocaMember::new(id("a", 2, 1), 0, State::Down)], b"");
        assert!(take_claims(&data, &own).is_none());
        // Only the header names us.
        let data = packet(
            &own,
            &[FocaMember::new(id("b", 2, 1), 0, State::Alive)],
            b"",
        );
        assert!(take_claims(&data, &own).is_none());
        // Garbage never panics.
        assert!(take_claims(b"aaaa", &own).is_none());
        let mut cut = packet(
            &own,
            &[FocaMember::new(id("a", 9, 2), 0, State::Alive)],
            b"",
        );
        cut.truncate(cut.len() - 3);
        assert!(take_claims(&cut, &own).is_none());
    }

    #[test]
    fn the_later_start_keeps_the_id() {
        assert!(wins_over(&id("a", 9, 1), &id("a", 5, 2)));
        assert!(!wins_over(&id("a", 5, 2), &id("a", 9, 1)));
        // One millisecond, two starts: the endpoint decides, the same way everywhere.
        assert!(wins_over(&id("a", 5, 2), &id("a", 5, 1)));
        assert!(!wins_over(&id("a", 5, 1), &id("a", 5, 2)));
    }
}
