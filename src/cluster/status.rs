//! SHOW CLUSTER: the master's entries joined with what gossip says about each client.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::membership::{Member, MemberStatus};
use crate::sql::ClientHost;

use super::state::{ClusterState, Entry, Source};

/// Columns of SHOW CLUSTER, in order.
pub const SHOW_CLUSTER_COLUMNS: [&str; 7] =
    ["host", "ip", "port", "db", "source", "status", "node_id"];

/// An entry's live status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryStatus {
    /// The node at the endpoint is live and has the database.
    Alive,
    /// Live, but without that database.
    NoDb,
    /// The failure detector declared it dead.
    Dead,
    /// It shut down cleanly.
    Left,
    /// Nothing has answered at that endpoint since this master started.
    Unreachable,
}

impl EntryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Alive => "alive",
            EntryStatus::NoDb => "no_db",
            EntryStatus::Dead => "dead",
            EntryStatus::Left => "left",
            EntryStatus::Unreachable => "unreachable",
        }
    }
}

/// One row of SHOW CLUSTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRow {
    pub host: String,
    pub ip: String,
    pub port: u16,
    pub db: String,
    pub source: Source,
    pub status: EntryStatus,
    pub node_id: String,
}

/// Gossip members indexed for the join: by node id and by advertised endpoint.
pub struct MemberIndex<'a> {
    by_node: HashMap<&'a str, &'a Member>,
    by_endpoint: HashMap<SocketAddr, &'a Member>,
}

/// Which member to believe when several claim one endpoint: the same node's newest
/// generation (its latest word, even `dead` after an earlier generation `left`); between
/// different nodes (a node replaced by another), a live one over one that left over a dead one.
fn believe_over(member: &Member, known: &Member) -> bool {
    if member.node_id == known.node_id {
        member.generation > known.generation
    } else {
        (rank(member), member.generation) > (rank(known), known.generation)
    }
}

fn rank(member: &Member) -> u8 {
    match member.status {
        MemberStatus::Alive => 2,
        MemberStatus::Left => 1,
        MemberStatus::Dead => 0,
    }
}

impl<'a> MemberIndex<'a> {
    pub fn new(members: &'a [Member]) -> MemberIndex<'a> {
        let mut by_endpoint: HashMap<SocketAddr, &Member> = HashMap::new();
        for member in members {
            by_endpoint
                .entry(member.endpoint)
                .and_modify(|known| {
                    if believe_over(member, known) {
                        *known = member;
                    }
                })
                .or_insert(member);
        }
        MemberIndex {
            by_node: members.iter().map(|m| (m.node_id.as_str(), m)).collect(),
            by_endpoint,
        }
    }

    pub fn by_node(&self, node_id: &str) -> Option<&'a Member> {
        self.by_node.get(node_id).copied()
    }

    /// The member advertising `host:port`; DNS names through `resolved`.
    pub fn at(
        &self,
        host: &ClientHost,
        port: u16,
        resolved: &HashMap<String, Vec<IpAddr>>,
    ) -> Option<&'a Member> {
        match host {
            ClientHost::Ip(ip) => self.by_endpoint.get(&SocketAddr::new(*ip, port)).copied(),
            ClientHost::Dns(name) => resolved
                .get(name)?
                .iter()
                .filter_map(|ip| self.by_endpoint.get(&SocketAddr::new(*ip, port)).copied())
                .max_by_key(|m| (rank(m), m.generation)),
        }
    }

    /// The member an entry refers to: a registered entry by its node id (it follows the
    /// client), an added one by its endpoint (what the operator typed).
    pub fn for_entry(
        &self,
        entry: &Entry,
        resolved: &HashMap<String, Vec<IpAddr>>,
    ) -> Option<&'a Member> {
        let registered = match (entry.source, entry.node_id.as_deref()) {
            (Source::Register, Some(node_id)) => self.by_node(node_id),
            _ => None,
        };
        registered.or_else(|| self.at(&entry.key.host, entry.key.port, resolved))
    }
}

/// The status of `entry` given the member found for it.
pub fn entry_status(entry: &Entry, member: Option<&Member>) -> EntryStatus {
    match member {
        None => EntryStatus::Unreachable,
        Some(m) => match m.status {
            MemberStatus::Alive if m.databases.iter().any(|d| d == entry.key.db.as_str()) => {
                EntryStatus::Alive
            }
            MemberStatus::Alive => EntryStatus::NoDb,
            MemberStatus::Dead => EntryStatus::Dead,
            MemberStatus::Left => EntryStatus::Left,
        },
    }
}

/// Every entry as a SHOW CLUSTER row, in entry order (ip, port, db).
pub fn cluster_rows(
    state: &ClusterState,
    members: &[Member],
    resolved: &HashMap<String, Vec<IpAddr>>,
) -> Vec<ClusterRow> {
    let index = MemberIndex::new(members);
    state
        .entries()
        .map(|entry| {
            let member = index.for_entry(entry, resolved);
            ClusterRow {
                host: member.map(|m| m.host.clone()).unwrap_or_default(),
                ip: entry.key.host.to_string(),
                port: entry.key.port,
                db: entry.key.db.to_string(),
                source: entry.source,
                status: entry_status(entry, member),
                node_id: member.map(|m| m.node_id.clone()).unwrap_or_default(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db_name::DatabaseName;
    use crate::sql::ClientSpec;

    fn member(node_id: &str, endpoint: &str, status: MemberStatus, dbs: &[&str]) -> Member {
        Member {
            node_id: node_id.into(),
            generation: 1,
            endpoint: endpoint.parse().unwrap(),
            status,
            databases: dbs.iter().map(|d| d.to_string()).collect(),
            masters: vec![],
            version: "0.1.0".into(),
            api: String::new(),
            host: format!("{node_id}-host"),
            is_self: false,
        }
    }

    fn add(state: &mut ClusterState, host: &str, port: u16, db: &str) {
        state.add(
            &ClientSpec {
                host: host.parse().unwrap(),
                port,
                db: DatabaseName::new(db).unwrap(),
            },
            None,
        );
    }

    #[test]
    fn statuses_come_from_gossip() {
        let mut state = ClusterState::default();
        add(&mut state, "10.0.0.1", 9091, "log1");
        add(&mut state, "10.0.0.1", 9091, "nope");
        add(&mut state, "10.0.0.2", 9091, "log1");
        add(&mut state, "10.0.0.3", 9091, "log1");
        add(&mut state, "10.0.0.4", 9091, "log1");
        add(&mut state, "edge.example", 19091, "log1");
        state.apply_registration(
            "mover",
            "10.0.0.9:9091".parse().unwrap(),
            &[DatabaseName::new("log1").unwrap()],
        );
        let members = vec![
            member("a", "10.0.0.1:9091", MemberStatus::Alive, &["log1"]),
            member("b", "10.0.0.2:9091", MemberStatus::Dead, &["log1"]),
            member("c", "10.0.0.3:9091", MemberStatus::Left, &["log1"]),
            member("e", "10.0.0.50:19091", MemberStatus::Alive, &["log1"]),
            // Registered entries follow the node id, wherever gossip says it is now.
            member("mover", "10.0.0.99:9091", MemberStatus::Alive, &["log1"]),
        ];
        let resolved = HashMap::from([(
            "edge.example".to_string(),
            vec!["10.0.0.50".parse().unwrap()],
        )]);
        let rows = cluster_rows(&state, &members, &resolved);
        let got: Vec<(String, &str, &str, &str)> = rows
            .iter()
            .map(|r| {
                (
                    format!("{}:{}/{}", r.ip, r.port, r.db),
                    r.status.as_str(),
                    r.node_id.as_str(),
                    r.source.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1:9091/log1".to_string(), "alive", "a", "add"),
                ("10.0.0.1:9091/nope".to_string(), "no_db", "a", "add"),
                ("10.0.0.2:9091/log1".to_string(), "dead", "b", "add"),
                ("10.0.0.3:9091/log1".to_string(), "left", "c", "add"),
                ("10.0.0.4:9091/log1".to_string(), "unreachable", "", "add"),
                (
                    "10.0.0.9:9091/log1".to_string(),
                    "alive",
                    "mover",
                    "register"
                ),
                ("edge.example:19091/log1".to_string(), "alive", "e", "add"),
            ]
        );
        assert_eq!(rows[0].host, "a-host");
        assert_eq!(rows[4].host, "");
    }

    #[test]
    fn a_live_node_wins_over_a_dead_one_at_the_same_endpoint() {
        let members = vec![
            member("old", "10.0.0.1:9091", MemberStatus::Dead, &["log1"]),
            member("new", "10.0.0.1:9091", MemberStatus::Alive, &["log1"]),
        ];
        let index = MemberIndex::new(&members);
        let found = index
            .at(&"10.0.0.1".parse().unwrap(), 9091, &HashMap::new())
            .unwrap();
        assert_eq!(found.node_id, "new");
    }

    #[test]
    fn the_same_nodes_newest_generation_wins_whatever_its_status() {
        let mut left = member("c", "10.0.0.1:9091", MemberStatus::Left, &["log1"]);
        left.generation = 1;
        let mut crashed = member("c", "10.0.0.1:9091", MemberStatus::Dead, &["log1"]);
        crashed.generation = 2;
        for members in [vec![left.clone(), crashed.clone()], vec![crashed, left]] {
            let index = MemberIndex::new(&members);
            let found = index
                .at(&"10.0.0.1".parse().unwrap(), 9091, &HashMap::new())
                .unwrap();
            assert_eq!((found.generation, found.status), (2, MemberStatus::Dead));
        }
    }
}
