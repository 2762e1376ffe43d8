//! Direct contacts: proof of life from an exchange of introductions, until gossip takes over.
//!
//! chitchat's failure detector lists a node alive only after two heartbeats from it, a round
//! or more apart, so a client gossip has just met shows up a second or so after it answered.
//! A master that has just exchanged [`Introduction`]s with a client (its `BO_MASTER` hello, or
//! the dial that follows ADD CLIENT) already knows it is alive: it lists it so at once. Gossip
//! stays the authority: as soon as it lists that node at that generation or a newer one, alive
//! or dead, the contact no longer counts (except while gossip lists that generation alive but
//! has not received its record yet: then the introduction says more), and it never vouches for
//! longer than
//! [`CONTACT_VALID`]. A contact gossip never confirmed then stands for that generation, dead:
//! the node introduced itself and was not heard from since. Otherwise a client that restarted
//! and crashed before gossip met its new generation would show its previous generation's
//! status, e.g. `left` from a clean stop before the restart.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::membership::{Member, MemberStatus};
use crate::wire::Introduction;

/// How long an introduction vouches for a node gossip does not list yet. Gossip lists a live
/// node within a few rounds; a node that never shows up in gossip is not vouched for longer.
pub const CONTACT_VALID: Duration = Duration::from_secs(10);

/// Contacts kept at most; expired ones are dropped first when this is reached.
const MAX_CONTACTS: usize = 4096;

/// The latest introduction from each node id, with when it came.
#[derive(Default)]
pub struct Contacts {
    by_node: Mutex<HashMap<String, (Introduction, Instant)>>,
}

impl Contacts {
    /// Remembers that `node` introduced itself at `now` (the newest generation wins).
    pub fn record(&self, node: Introduction, now: Instant) {
        let mut by_node = self.by_node.lock().unwrap_or_else(|p| p.into_inner());
        if by_node.len() >= MAX_CONTACTS && !by_node.contains_key(&node.node_id) {
            by_node.retain(|_, (_, at)| now.duration_since(*at) < CONTACT_VALID);
            if by_node.len() >= MAX_CONTACTS {
                return;
            }
        }
        match by_node.get(&node.node_id) {
            Some((known, _)) if known.generation > node.generation => {}
            _ => {
                by_node.insert(node.node_id.clone(), (node, now));
            }
        }
    }

    /// `members`, plus a member for every contact that gossip does not list at that
    /// generation or a newer one: alive while the contact is recent, dead after. A recent
    /// contact also stands in for gossip's listing of that very generation while gossip holds
    /// no record of it yet (no databases, no version): gossip has heard of the node (a probe,
    /// an announce) but knows less about it than the introduction, and would list the entry
    /// `no_db` until the record arrives and the next snapshot is published.
    pub fn vouch<'a>(&self, members: &'a [Member], now: Instant) -> Cow<'a, [Member]> {
        let by_node = self.by_node.lock().unwrap_or_else(|p| p.into_inner());
        if by_node.is_empty() {
            return Cow::Borrowed(members);
        }
        let listed: HashMap<&str, &Member> =
            members.iter().map(|m| (m.node_id.as_str(), m)).collect();
        let mut vouched: Vec<Member> = Vec::new();
        let mut stand_ins: HashMap<&str, Member> = HashMap::new();
        for (node, at) in by_node.values() {
            let recent = now.duration_since(*at) < CONTACT_VALID;
            match listed.get(node.node_id.as_str()) {
                Some(known) if known.generation > node.generation => {}
                Some(known) if known.generation == node.generation => {
                    if recent && known.status == MemberStatus::Alive && known.version.is_empty() {
                        stand_ins.insert(known.node_id.as_str(), member(node, MemberStatus::Alive));
                    }
                }
                // Not listed, or listed at an older generation (the node restarted).
                _ => {
                    let status = if recent {
                        MemberStatus::Alive
                    } else {
                        MemberStatus::Dead
                    };
                    vouched.push(member(node, status));
                }
            }
        }
        if vouched.is_empty() && stand_ins.is_empty() {
            return Cow::Borrowed(members);
        }
        let mut all: Vec<Member> = members
            .iter()
            .map(|m| match stand_ins.remove(m.node_id.as_str()) {
                Some(stand_in) => stand_in,
                None => m.clone(),
            })
            .collect();
        all.extend(vouched);
        Cow::Owned(all)
    }
}

/// The member an introduction stands for, with `status`.
fn member(node: &Introduction, status: MemberStatus) -> Member {
    Member {
        node_id: node.node_id.clone(),
        generation: node.generation,
        endpoint: node.endpoint,
        status,
        databases: node.databases.clone(),
        masters: Vec::new(),
        // Empty: what gossip has not delivered yet (registrations skip such members).
        version: String::new(),
        api: String::new(),
        host: node.host.clone(),
        is_self: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intro(node_id: &str, generation: u64) -> Introduction {
        Introduction {
            node_id: node_id.into(),
            generation,
            endpoint: "10.0.0.1:19091".parse().unwrap(),
            host: "edge".into(),
            databases: vec!["log1".into()],
        }
    }

    /// A member as gossip lists it once it holds the node's record.
    fn gossip_member(node_id: &str, generation: u64, status: MemberStatus) -> Member {
        Member {
            status,
            generation,
            version: "0.1.0".into(),
            ..member(&intro(node_id, generation), MemberStatus::Alive)
        }
    }

    /// A member gossip has heard of (a probe, an announce) before its record arrived.
    fn recordless_member(node_id: &str, generation: u64, status: MemberStatus) -> Member {
        Member {
            databases: Vec::new(),
            host: String::new(),
            version: String::new(),
            ..gossip_member(node_id, generation, status)
        }
    }

    #[test]
    fn a_fresh_contact_stands_in_for_a_listing_without_its_record() {
        let contacts = Contacts::default();
        let t0 = Instant::now();
        contacts.record(intro("c", 3), t0);
        let members = vec![recordless_member("c", 3, MemberStatus::Alive)];
        let seen = contacts.vouch(&members, t0);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].status, MemberStatus::Alive);
        assert_eq!(seen[0].databases, ["log1"], "the introduction's databases");

        // Gossip's own verdict on that generation still wins without a record...
        for status in [MemberStatus::Dead, MemberStatus::Left] {
            let members = vec![recordless_member("c", 3, status)];
            assert_eq!(contacts.vouch(&members, t0)[0].status, status);
        }
        // ...and so does its listing once the record is there.
        let members = vec![gossip_member("c", 3, MemberStatus::Alive)];
        assert_eq!(contacts.vouch(&members, t0)[0].version, "0.1.0");
        // An old contact vouches for nothing: gossip's listing stays as it is.
        let members = vec![recordless_member("c", 3, MemberStatus::Alive)];
        let seen = contacts.vouch(&members, t0 + CONTACT_VALID);
        assert_eq!(seen.len(), 1);
        assert_eq!(
            (seen[0].status, seen[0].databases.len()),
            (MemberStatus::Alive, 0)
        );
    }

    #[test]
    fn a_fresh_contact_is_listed_alive_until_gossip_lists_it() {
        let contacts = Contacts::default();
        let t0 = Instant::now();
        contacts.record(intro("c", 3), t0);
        let none: Vec<Member> = Vec::new();
        let vouched = contacts.vouch(&none, t0);
        assert_eq!(vouched.len(), 1);
        assert_eq!(vouched[0].status, MemberStatus::Alive);
        assert_eq!(vouched[0].databases, ["log1"]);

        // Gossip's word wins, dead or alive, at that generation or a newer one.
        for status in [MemberStatus::Dead, MemberStatus::Alive, MemberStatus::Left] {
            let members = vec![gossip_member("c", 3, status)];
            let seen = contacts.vouch(&members, t0);
            assert_eq!(seen.len(), 1);
            assert_eq!(seen[0].status, status);
        }
        // An older generation in gossip (the node restarted) does not hide the new contact.
        let members = vec![gossip_member("c", 2, MemberStatus::Dead)];
        let seen = contacts.vouch(&members, t0);
        assert_eq!(seen.len(), 2);
        assert!(seen
            .iter()
            .any(|m| m.generation == 3 && m.status == MemberStatus::Alive));
    }

    #[test]
    fn a_contact_gossip_never_confirms_turns_dead() {
        let contacts = Contacts::default();
        let t0 = Instant::now();
        contacts.record(intro("c", 2), t0);
        let expired = contacts.vouch(&[], t0 + CONTACT_VALID);
        assert_eq!(expired.len(), 1);
        assert_eq!(
            (expired[0].generation, expired[0].status),
            (2, MemberStatus::Dead)
        );
        // Gossip still lists the previous generation, which left cleanly: the newer
        // generation, dead, stands beside it (the newest generation is the one shown).
        let members = vec![gossip_member("c", 1, MemberStatus::Left)];
        let seen = contacts.vouch(&members, t0 + CONTACT_VALID);
        assert!(seen
            .iter()
            .any(|m| m.generation == 2 && m.status == MemberStatus::Dead));
        // Once gossip lists that generation, its word alone counts.
        let members = vec![gossip_member("c", 2, MemberStatus::Alive)];
        assert_eq!(contacts.vouch(&members, t0 + CONTACT_VALID).len(), 1);
    }

    #[test]
    fn the_newest_generation_wins_and_the_map_stays_bounded() {
        let contacts = Contacts::default();
        let t0 = Instant::now();
        contacts.record(intro("c", 5), t0);
        contacts.record(intro("c", 4), t0);
        assert_eq!(contacts.vouch(&[], t0)[0].generation, 5);

        let later = t0 + CONTACT_VALID;
        for i in 0..MAX_CONTACTS + 10 {
            contacts.record(intro(&format!("n{i}"), 1), later);
        }
        let by_node = contacts.by_node.lock().unwrap();
        assert_eq!(by_node.len(), MAX_CONTACTS);
        assert!(!by_node.contains_key("c"), "the expired contact went first");
    }
}
