//! Records of members that came up before their record reached this node, and how they are
//! fetched: in one batch from one peer, rather than over a QUIC connection to each member.
//!
//! In a cold start most members are first heard of without their record (the piggyback space
//! is crowded with joins). Pulling each from the member itself cost one QUIC handshake per
//! member on every node, N² in the fleet: at N = 100 one node made about 350 connections in its
//! first 50 s, which took CPU from the probes of a forming fleet and left private memory at the
//! high-water mark of all those connections. A peer that has been in the fleet a while holds
//! most records, so one pull from it fetches them all; only what it lacks is then pulled from
//! the members themselves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::id::MemberId;

/// How long after the first member is found missing its record the batch is asked for: the
/// members of a join or a feed arrive together, and one batch takes them all.
pub const GATHER_FOR: Duration = Duration::from_millis(100);

/// The most records asked of one peer in one batch.
pub const MAX_BATCH: usize = 256;

/// A batch unanswered this long is over (what it asked for is pulled from the members).
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Missing {
    id: MemberId,
    since: Duration,
    /// Asked of a peer once already, which lacked it.
    asked_before: bool,
}

#[derive(Debug, Clone)]
struct Batch {
    from: SocketAddr,
    asked: Vec<Missing>,
    at: Duration,
}

/// The members whose records are missing here, and the batch asked for them.
#[derive(Debug, Default)]
pub struct MissingRecords {
    missing: BTreeMap<String, Missing>,
    batch: Option<Batch>,
}

impl MissingRecords {
    /// `id`'s record is missing here.
    pub fn want(&mut self, id: &MemberId, now: Duration) {
        self.missing.insert(
            id.node_id.clone(),
            Missing {
                id: id.clone(),
                since: now,
                asked_before: false,
            },
        );
    }

    /// Forgets the members whose records are held now (`held`), or that are no longer
    /// wanted.
    pub fn retain(&mut self, mut wanted: impl FnMut(&MemberId) -> bool) {
        self.missing.retain(|_, m| wanted(&m.id));
    }

    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
    }

    /// Whether `node_id`'s record is missing here.
    pub fn contains(&self, node_id: &str) -> bool {
        self.missing.contains_key(node_id)
    }

    /// When [`MissingRecords::take_batch`] next has something to do (`None`: nothing).
    pub fn due_at(&self) -> Option<Duration> {
        match &self.batch {
            Some(batch) => Some(batch.at + BATCH_TIMEOUT),
            None => self.missing.values().map(|m| m.since + GATHER_FOR).min(),
        }
    }

    /// A batch overdue at `now` (unanswered for [`BATCH_TIMEOUT`]): it is over, and what it
    /// asked for is returned, to be pulled from the members themselves.
    pub fn take_overdue(&mut self, now: Duration) -> Vec<MemberId> {
        match &self.batch {
            Some(batch) if now >= batch.at + BATCH_TIMEOUT => self
                .batch
                .take()
                .map(|b| b.asked.into_iter().map(|m| m.id).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The records to ask `source` for now, if it is time: none while a batch is out, or
    /// before the first missing record has waited [`GATHER_FOR`]. What is asked leaves the
    /// missing set (it comes back through [`MissingRecords::answered`] if `source` lacks it).
    pub fn take_batch(&mut self, now: Duration, source: SocketAddr) -> Option<Vec<String>> {
        if self.batch.is_some() || self.due_at().is_none_or(|due| now < due) {
            return None;
        }
        // In node-id order (the map is a BTreeMap), so one seed gives one run (the simulator
        // replays runs): the answer's order decides which unknown members are knocked on first.
        let nodes: Vec<String> = self.missing.keys().take(MAX_BATCH).cloned().collect();
        let asked: Vec<Missing> = nodes
            .iter()
            .filter_map(|node| self.missing.remove(node))
            .collect();
        self.batch = Some(Batch {
            from: source,
            asked,
            at: now,
        });
        Some(nodes)
    }

    /// Takes the members whose records are missing, to be pulled from the members
    /// themselves (when no peer can be asked).
    pub fn take_all(&mut self) -> Vec<MemberId> {
        std::mem::take(&mut self.missing)
            .into_values()
            .map(|m| m.id)
            .collect()
    }

    /// The batch asked of `from` was answered (or failed) at `now`: it is over. Of what it
    /// asked for, `held` tells what arrived; the rest is asked once more in the next batch
    /// (the peer may have heard of it by then: in a cold start records spread fast), and
    /// what was asked twice is returned, for the caller to pull from the members themselves.
    pub fn answered(
        &mut self,
        from: SocketAddr,
        now: Duration,
        mut held: impl FnMut(&MemberId) -> bool,
    ) -> Vec<MemberId> {
        if self.batch.as_ref().is_none_or(|b| b.from != from) {
            return Vec::new();
        }
        let asked = self.batch.take().map(|b| b.asked).unwrap_or_default();
        let mut from_members = Vec::new();
        for mut missing in asked.into_iter().filter(|m| !held(&m.id)) {
            if missing.asked_before {
                from_members.push(missing.id);
            } else {
                missing.asked_before = true;
                missing.since = now;
                self.missing.insert(missing.id.node_id.clone(), missing);
            }
        }
        from_members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MemberId {
        MemberId::new(format!("n{n}"), 1, SocketAddr::from(([10, 0, 0, n], 9091)))
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 99], 9091))
    }

    #[test]
    fn a_batch_names_its_members_in_one_order_whatever_the_map_holds() {
        // Two stores holding the same wants give the same batch (one seed, one run).
        let batch = |order: &mut dyn Iterator<Item = u8>| {
            let mut missing = MissingRecords::default();
            for n in order {
                missing.want(&id(n), Duration::ZERO);
            }
            missing.take_batch(GATHER_FOR, peer()).unwrap()
        };
        let forward = batch(&mut (10..60));
        assert_eq!(forward, batch(&mut (10..60).rev()));
        let mut sorted = forward.clone();
        sorted.sort();
        assert_eq!(forward, sorted);
    }

    #[test]
    fn members_missing_together_are_asked_of_one_peer_in_one_batch() {
        let mut missing = MissingRecords::default();
        missing.want(&id(1), Duration::ZERO);
        missing.want(&id(2), Duration::from_millis(10));
        // Gathering: not yet.
        assert_eq!(missing.take_batch(Duration::from_millis(50), peer()), None);
        let batch = missing.take_batch(GATHER_FOR, peer()).unwrap();
        assert_eq!(batch, vec!["n1".to_string(), "n2".to_string()]);
        // One batch at a time.
        missing.want(&id(3), GATHER_FOR);
        assert_eq!(missing.take_batch(GATHER_FOR * 3, peer()), None);
        // The answer ends it: n1 arrived, n2 did not and is asked once more, with n3.
        let from_members = missing.answered(peer(), GATHER_FOR * 2, |m| m.node_id == "n1");
        assert!(from_members.is_empty());
        assert_eq!(
            missing.take_batch(GATHER_FOR * 3, peer()),
            Some(vec!["n2".to_string(), "n3".to_string()])
        );
        // Lacked twice: pulled from the member itself.
        let from_members = missing.answered(peer(), GATHER_FOR * 4, |_| false);
        assert_eq!(from_members, vec![id(2)]);
        assert!(!missing.contains("n2"));
    }

    #[test]
    fn an_unanswered_batch_is_over_after_its_timeout() {
        let mut missing = MissingRecords::default();
        missing.want(&id(1), Duration::ZERO);
        assert!(missing.take_batch(GATHER_FOR, peer()).is_some());
        assert_eq!(missing.due_at(), Some(GATHER_FOR + BATCH_TIMEOUT));
        assert!(missing.take_overdue(GATHER_FOR).is_empty());
        assert_eq!(
            missing.take_overdue(GATHER_FOR + BATCH_TIMEOUT),
            vec![id(1)]
        );
        assert_eq!(missing.due_at(), None);
    }

    #[test]
    fn an_answer_from_another_peer_does_not_end_the_batch() {
        let mut missing = MissingRecords::default();
        missing.want(&id(1), Duration::ZERO);
        assert!(missing.take_batch(GATHER_FOR, peer()).is_some());
        let other = SocketAddr::from(([10, 0, 0, 1], 9091));
        assert!(missing.answered(other, GATHER_FOR, |_| false).is_empty());
        assert!(!missing.contains("n1"), "still out in the batch");
        assert!(missing.answered(peer(), GATHER_FOR, |_| false).is_empty());
        assert!(missing.contains("n1"), "asked once more");
    }

    #[test]
    fn records_held_meanwhile_are_not_asked_for() {
        let mut missing = MissingRecords::default();
        missing.want(&id(1), Duration::ZERO);
        missing.want(&id(2), Duration::ZERO);
        missing.retain(|m| m.node_id != "n1");
        assert!(!missing.contains("n1"));
        assert_eq!(
            missing.take_batch(GATHER_FOR, peer()),
            Some(vec!["n2".to_string()])
        );
    }
}
