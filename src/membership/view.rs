//! The typed view of membership: one [`Member`] per node id, and changes as a diff of two views.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

/// A member's liveness as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    /// SWIM hears it (it answers probes, directly or through others).
    Alive,
    /// Its suspicion was not refuted in time (crash, partition, long pause).
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

/// What membership says about one node (its latest generation).
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
}
