//! The typed view of gossip: one [`Member`] per node id, read from chitchat's state.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chitchat::{ChitchatId, NodeState};

use super::keys;

/// A member's liveness as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// The failure detector hears its heartbeats.
    Alive,
    /// Silent for too long (crash, partition, pause).
    Dead,
    /// It announced a clean shutdown.
    Left,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Dead => "dead",
            MemberStatus::Left => "left",
        }
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What gossip says about one node (its latest generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_id: String,
    pub generation: u64,
    pub endpoint: SocketAddr,
    pub status: MemberStatus,
    pub databases: Vec<String>,
    pub masters: Vec<String>,
    pub version: String,
    pub api: String,
    pub host: String,
    pub is_self: bool,
}

/// Reads one node's state into a [`Member`]. The only function that knows key formats.
pub fn member_from_state(id: &ChitchatId, state: &NodeState, live: bool, is_self: bool) -> Member {
    let status = if state.get(keys::LEFT).is_some() {
        MemberStatus::Left
    } else if live || is_self {
        MemberStatus::Alive
    } else {
        MemberStatus::Dead
    };
    Member {
        node_id: id.node_id.to_string(),
        generation: id.generation_id,
        endpoint: id.gossip_advertise_addr,
        status,
        databases: split_list(state.get(keys::DATABASES)),
        masters: split_list(state.get(keys::MASTERS)),
        version: state.get(keys::VERSION).unwrap_or_default().to_string(),
        api: state.get(keys::API).unwrap_or_default().to_string(),
        host: state.get(keys::HOST).unwrap_or_default().to_string(),
        is_self,
    }
}

/// `a,b,c` -> sorted names; empty -> none.
pub fn split_list(value: Option<&str>) -> Vec<String> {
    let mut items: Vec<String> = value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    items.sort();
    items.dedup();
    items
}

/// Builds the member list from chitchat's node states: one entry per node id, the highest
/// generation winning, so a restarted node is one row, not two. Sorted by node id.
pub fn members_from_states<'a>(
    states: impl Iterator<Item = (&'a ChitchatId, &'a NodeState)>,
    live: &HashSet<ChitchatId>,
    self_id: &ChitchatId,
    mut listed: impl FnMut(&ChitchatId) -> bool,
) -> Vec<Member> {
    let mut latest: BTreeMap<&str, (&ChitchatId, &NodeState)> = BTreeMap::new();
    for (id, state) in states.filter(|(id, _)| listed(id)) {
        match latest.get(&*id.node_id) {
            Some((known, _)) if known.generation_id >= id.generation_id => {}
            _ => {
                latest.insert(&id.node_id, (id, state));
            }
        }
    }
    latest
        .into_values()
        .map(|(id, state)| member_from_state(id, state, live.contains(id), id == self_id))
        .collect()
}

/// Hides nodes that were just learned of and not yet confirmed alive.
///
/// chitchat's failure detector calls a node dead until it has heard two heartbeats from it,
/// so without this a node that just joined would flash `dead` on every peer. A node is listed
/// once it has been alive, or once it has been known for `settle` without ever being alive
/// (then it really is dead, e.g. a crashed node a newcomer hears about).
pub struct Settling {
    settle: Duration,
    first_seen: HashMap<ChitchatId, Instant>,
    ever_alive: HashSet<ChitchatId>,
}

impl Settling {
    pub fn new(settle: Duration) -> Settling {
        Settling {
            settle,
            first_seen: HashMap::new(),
            ever_alive: HashSet::new(),
        }
    }

    /// Whether `id` should be listed now.
    pub fn is_listed(&mut self, id: &ChitchatId, live: bool, now: Instant) -> bool {
        if live {
            self.ever_alive.insert(id.clone());
            return true;
        }
        if self.ever_alive.contains(id) {
            return true;
        }
        let first_seen = *self.first_seen.entry(id.clone()).or_insert(now);
        now.duration_since(first_seen) >= self.settle
    }

    /// Forgets nodes gossip has forgotten.
    pub fn retain_known(&mut self, known: &HashSet<&ChitchatId>) {
        self.first_seen.retain(|id, _| known.contains(id));
        self.ever_alive.retain(|id| known.contains(id));
    }
}

/// A change in membership, computed by diffing two member lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipChange {
    Joined(Member),
    Updated(Member),
    Failed(Member),
    Left(Member),
}

/// What changed from `before` to `after` (both sorted by node id, as built above).
pub fn diff_members(before: &[Member], after: &[Member]) -> Vec<MembershipChange> {
    let before: BTreeMap<&str, &Member> = before.iter().map(|m| (m.node_id.as_str(), m)).collect();
    let mut changes = Vec::new();
    for member in after {
        let change = match before.get(member.node_id.as_str()) {
            None => Some(MembershipChange::Joined(member.clone())),
            Some(old) if *old == member => None,
            Some(old) => Some(match member.status {
                MemberStatus::Dead if old.status != MemberStatus::Dead => {
                    MembershipChange::Failed(member.clone())
                }
                MemberStatus::Left if old.status != MemberStatus::Left => {
                    MembershipChange::Left(member.clone())
                }
                MemberStatus::Alive if old.status != MemberStatus::Alive => {
                    MembershipChange::Joined(member.clone())
                }
                _ => MembershipChange::Updated(member.clone()),
            }),
        };
        changes.extend(change);
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, generation: u64, port: u16) -> ChitchatId {
        ChitchatId::new(name, generation, ([127, 0, 0, 1], port).into())
    }

    #[test]
    fn split_list_sorts_and_skips_blanks() {
        assert_eq!(split_list(Some("b, a,,b")), ["a", "b"]);
        assert!(split_list(None).is_empty());
        assert!(split_list(Some("")).is_empty());
    }

    fn member(name: &str, status: MemberStatus) -> Member {
        Member {
            node_id: name.into(),
            generation: 1,
            endpoint: ([127, 0, 0, 1], 1).into(),
            status,
            databases: vec![],
            masters: vec![],
            version: String::new(),
            api: String::new(),
            host: String::new(),
            is_self: false,
        }
    }

    #[test]
    fn diff_reports_each_kind_of_change() {
        let before = vec![
            member("a", MemberStatus::Alive),
            member("b", MemberStatus::Alive),
            member("c", MemberStatus::Alive),
            member("d", MemberStatus::Dead),
        ];
        let mut after = vec![
            member("a", MemberStatus::Dead),
            member("b", MemberStatus::Left),
            member("c", MemberStatus::Alive),
            member("d", MemberStatus::Alive),
            member("e", MemberStatus::Alive),
        ];
        after[2].databases = vec!["x".into()];
        let changes = diff_members(&before, &after);
        assert!(matches!(&changes[0], MembershipChange::Failed(m) if m.node_id == "a"));
        assert!(matches!(&changes[1], MembershipChange::Left(m) if m.node_id == "b"));
        assert!(matches!(&changes[2], MembershipChange::Updated(m) if m.node_id == "c"));
        assert!(matches!(&changes[3], MembershipChange::Joined(m) if m.node_id == "d"));
        assert!(matches!(&changes[4], MembershipChange::Joined(m) if m.node_id == "e"));
        assert_eq!(changes.len(), 5);
    }

    #[test]
    fn settling_hides_new_nodes_until_alive_or_settled() {
        let mut settling = Settling::new(Duration::from_secs(2));
        let t0 = Instant::now();
        let a = id("a", 1, 1);
        let b = id("b", 1, 2);
        assert!(!settling.is_listed(&a, false, t0));
        assert!(settling.is_listed(&a, true, t0 + Duration::from_millis(300)));
        // Once alive, a node stays listed (as dead) when it dies.
        assert!(settling.is_listed(&a, false, t0 + Duration::from_millis(600)));
        assert!(!settling.is_listed(&b, false, t0));
        assert!(settling.is_listed(&b, false, t0 + Duration::from_secs(2)));
        settling.retain_known(&HashSet::new());
        assert!(!settling.is_listed(&a, false, t0 + Duration::from_secs(3)));
    }

    #[test]
    fn ids_compare_by_generation() {
        assert!(id("a", 2, 1).generation_id > id("a", 1, 1).generation_id);
    }
}
