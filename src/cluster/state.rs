//! A master's topology: its entries and DROP tombstones, with the rules that change them.
//!
//! Pure data and pure functions: no I/O, no clock, so every rule is unit-tested here. The
//! store (see `mod.rs`) persists the state after each change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::db_name::DatabaseName;
use crate::sql::{ClientHost, ClientSpec};

/// How an entry entered the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `ADD CLIENT` on this master.
    Add,
    /// A client started with `BO_MASTER` naming this master.
    Register,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Add => "add",
            Source::Register => "register",
        }
    }
}

/// What identifies a row of SHOW CLUSTER: the client endpoint and the database. Ordered by
/// ip (IPv4, then IPv6, then DNS names), port, db, which is SHOW CLUSTER's order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntryKey {
    pub host: ClientHost,
    pub port: u16,
    pub db: DatabaseName,
}

impl From<&ClientSpec> for EntryKey {
    fn from(spec: &ClientSpec) -> EntryKey {
        EntryKey {
            host: spec.host.clone(),
            port: spec.port,
            db: spec.db.clone(),
        }
    }
}

/// One entry of the master's cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: EntryKey,
    pub source: Source,
    /// The client that registered the entry (`register`), or the node last found at the
    /// endpoint (`add`, learned when dropped or registered over).
    pub node_id: Option<String>,
}

/// "Keep (node, db) out": left by DROP CLIENT so the client's own registration does not bring
/// the entry straight back. Lifted by an ADD CLIENT of the same database at that client.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Tombstone {
    pub node_id: String,
    pub db: DatabaseName,
    /// Where the client was when dropped (an ADD CLIENT there lifts the tombstone).
    pub host: ClientHost,
    pub port: u16,
}

/// The outcome of ADD CLIENT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    AlreadyThere,
}

/// The master's topology.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ClusterFile", into = "ClusterFile")]
pub struct ClusterState {
    entries: BTreeMap<EntryKey, Entry>,
    tombstones: BTreeSet<Tombstone>,
}

/// The on-disk shape: lists (JSON maps need string keys), with a format version.
#[derive(Serialize, Deserialize)]
struct ClusterFile {
    format: u32,
    entries: Vec<Entry>,
    tombstones: Vec<Tombstone>,
}

/// The only format this version writes and reads.
const FORMAT: u32 = 1;

impl TryFrom<ClusterFile> for ClusterState {
    type Error = String;
    fn try_from(file: ClusterFile) -> Result<ClusterState, String> {
        if file.format != FORMAT {
            return Err(format!(
                "format {} is not {FORMAT}, the only one this version of bocluster reads",
                file.format
            ));
        }
        // No client listens on port 0, and such an entry could not be named to drop it.
        if let Some(bad) = file.entries.iter().find(|e| e.key.port == 0) {
            let host = match &bad.key.host {
                ClientHost::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
                host => host.to_string(),
            };
            return Err(format!(
                "entry {host}:0 db {} has port 0, which no client can listen on; fix its port or remove the entry",
                bad.key.db
            ));
        }
        Ok(ClusterState {
            entries: file
                .entries
                .into_iter()
                .map(|e| (e.key.clone(), e))
                .collect(),
            tombstones: file.tombstones.into_iter().collect(),
        })
    }
}

impl From<ClusterState> for ClusterFile {
    fn from(state: ClusterState) -> ClusterFile {
        ClusterFile {
            format: FORMAT,
            entries: state.entries.into_values().collect(),
            tombstones: state.tombstones.into_iter().collect(),
        }
    }
}

impl ClusterState {
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn tombstones(&self) -> impl Iterator<Item = &Tombstone> {
        self.tombstones.iter()
    }

    /// ADD CLIENT: adds the entry (unless there) and lifts any DROP tombstone for that database
    /// at that endpoint, or of the node currently found there (`node_there`).
    pub fn add(&mut self, spec: &ClientSpec, node_there: Option<&str>) -> AddOutcome {
        self.add_changed(spec, node_there).0
    }

    /// [`ClusterState::add`], and whether it changed anything (an entry added or a
    /// tombstone lifted), found without comparing whole states.
    pub fn add_changed(
        &mut self,
        spec: &ClientSpec,
        node_there: Option<&str>,
    ) -> (AddOutcome, bool) {
        let key = EntryKey::from(spec);
        let tombstones = self.tombstones.len();
        self.tombstones.retain(|t| {
            let same_place = t.host == key.host && t.port == key.port;
            let same_node = node_there == Some(t.node_id.as_str());
            !(t.db == key.db && (same_place || same_node))
        });
        let lifted = self.tombstones.len() != tombstones;
        if self.entries.contains_key(&key) {
            return (AddOutcome::AlreadyThere, lifted);
        }
        self.entries.insert(
            key.clone(),
            Entry {
                key,
                source: Source::Add,
                node_id: node_there.map(str::to_string),
            },
        );
        (AddOutcome::Added, true)
    }

    /// DROP CLIENT: removes the entry. When a node is known there (from the entry or from
    /// gossip: `node_there`), a tombstone keeps its registration from bringing it back.
    /// Returns the removed entry, or `None` when there was no such entry.
    pub fn drop_entry(&mut self, spec: &ClientSpec, node_there: Option<&str>) -> Option<Entry> {
        let key = EntryKey::from(spec);
        let removed = self.entries.remove(&key)?;
        let nodes = [removed.node_id.as_deref(), node_there];
        for node_id in nodes.into_iter().flatten() {
            self.tombstones.insert(Tombstone {
                node_id: node_id.to_string(),
                db: key.db.clone(),
                host: key.host.clone(),
                port: key.port,
            });
        }
        Some(removed)
    }

    /// Applies what a client registered with this master: its endpoint and all its databases.
    /// Its `register` entries follow it to a new endpoint and track its database list; entries
    /// an operator dropped stay out. Returns whether anything changed.
    pub fn apply_registration(
        &mut self,
        node_id: &str,
        endpoint: SocketAddr,
        databases: &[DatabaseName],
    ) -> bool {
        let host = ClientHost::Ip(endpoint.ip());
        let wanted: BTreeSet<EntryKey> = databases
            .iter()
            .filter(|db| {
                !self
                    .tombstones
                    .iter()
                    .any(|t| t.node_id == node_id && &t.db == *db)
            })
            .map(|db| EntryKey {
                host: host.clone(),
                port: endpoint.port(),
                db: db.clone(),
            })
            .collect();
        let before = self.entries.len();
        self.entries.retain(|key, entry| {
            !(entry.source == Source::Register
                && entry.node_id.as_deref() == Some(node_id)
                && !wanted.contains(key))
        });
        let mut changed = self.entries.len() != before;
        for key in wanted {
            match self.entries.get_mut(&key) {
                Some(entry) if entry.node_id.as_deref() == Some(node_id) => {}
                Some(entry) => {
                    entry.node_id = Some(node_id.to_string());
                    changed = true;
                }
                None => {
                    self.entries.insert(
                        key.clone(),
                        Entry {
                            key,
                            source: Source::Register,
                            node_id: Some(node_id.to_string()),
                        },
                    );
                    changed = true;
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str) -> DatabaseName {
        DatabaseName::new(name).unwrap()
    }

    fn spec(host: &str, port: u16, name: &str) -> ClientSpec {
        ClientSpec {
            host: host.parse().unwrap(),
            port,
            db: db(name),
        }
    }

    fn keys(state: &ClusterState) -> Vec<String> {
        state
            .entries()
            .map(|e| {
                format!(
                    "{}:{}/{} {}",
                    e.key.host,
                    e.key.port,
                    e.key.db,
                    e.source.as_str()
                )
            })
            .collect()
    }

    #[test]
    fn add_is_idempotent_and_sorted_by_ip_port_db() {
        let mut state = ClusterState::default();
        assert_eq!(
            state.add(&spec("10.0.0.10", 9091, "b"), None),
            AddOutcome::Added
        );
        assert_eq!(
            state.add(&spec("10.0.0.9", 9091, "a"), None),
            AddOutcome::Added
        );
        assert_eq!(
            state.add(&spec("10.0.0.10", 9091, "a"), None),
            AddOutcome::Added
        );
        assert_eq!(
            state.add(&spec("client.example", 1, "a"), None),
            AddOutcome::Added
        );
        assert_eq!(
            state.add(&spec("10.0.0.10", 9091, "a"), None),
            AddOutcome::AlreadyThere
        );
        assert_eq!(
            keys(&state),
            [
                "10.0.0.9:9091/a add",
                "10.0.0.10:9091/a add",
                "10.0.0.10:9091/b add",
                "client.example:1/a add"
            ]
        );
    }

    #[test]
    fn registration_follows_the_client_and_its_databases() {
        let mut state = ClusterState::default();
        let old: SocketAddr = "10.0.0.3:19091".parse().unwrap();
        let new: SocketAddr = "10.0.0.7:29091".parse().unwrap();
        assert!(state.apply_registration("c1", old, &[db("log1"), db("log2")]));
        assert!(!state.apply_registration("c1", old, &[db("log1"), db("log2")]));
        assert_eq!(
            keys(&state),
            [
                "10.0.0.3:19091/log1 register",
                "10.0.0.3:19091/log2 register"
            ]
        );
        // Moved to a new address and dropped log2 locally: no stale row.
        assert!(state.apply_registration("c1", new, &[db("log1")]));
        assert_eq!(keys(&state), ["10.0.0.7:29091/log1 register"]);
    }

    #[test]
    fn drop_sticks_until_added_back() {
        let mut state = ClusterState::default();
        let at: SocketAddr = "10.0.0.3:9091".parse().unwrap();
        state.apply_registration("c1", at, &[db("log1"), db("log2")]);
        let removed = state
            .drop_entry(&spec("10.0.0.3", 9091, "log1"), None)
            .unwrap();
        assert_eq!(removed.source, Source::Register);
        assert!(state
            .drop_entry(&spec("10.0.0.3", 9091, "log1"), None)
            .is_none());
        // The client keeps registering both (also after a restart elsewhere): log1 stays out.
        state.apply_registration("c1", at, &[db("log1"), db("log2")]);
        state.apply_registration(
            "c1",
            "10.0.0.4:9091".parse().unwrap(),
            &[db("log1"), db("log2")],
        );
        assert_eq!(keys(&state), ["10.0.0.4:9091/log2 register"]);
        // ADD CLIENT of that database at the client lifts the tombstone.
        assert_eq!(
            state.add(&spec("10.0.0.4", 9091, "log1"), Some("c1")),
            AddOutcome::Added
        );
        assert_eq!(state.tombstones().count(), 0);
        state.apply_registration(
            "c1",
            "10.0.0.4:9091".parse().unwrap(),
            &[db("log1"), db("log2")],
        );
        let entries: Vec<_> = state
            .entries()
            .map(|e| (e.key.db.to_string(), e.source, e.node_id.clone()))
            .collect();
        assert_eq!(
            entries,
            [
                ("log1".into(), Source::Add, Some("c1".into())),
                ("log2".into(), Source::Register, Some("c1".into()))
            ]
        );
    }

    #[test]
    fn dropping_an_added_entry_of_a_registered_node_keeps_it_out() {
        let mut state = ClusterState::default();
        state.add(&spec("10.0.0.5", 9091, "log1"), None);
        state.drop_entry(&spec("10.0.0.5", 9091, "log1"), Some("c5"));
        assert!(!state.apply_registration("c5", "10.0.0.5:9091".parse().unwrap(), &[db("log1")]));
        assert!(state.is_empty());
    }

    #[test]
    fn serializes_and_reads_back() {
        let mut state = ClusterState::default();
        state.add(&spec("::1", 9091, "a"), None);
        state.apply_registration("c1", "10.0.0.3:9091".parse().unwrap(), &[db("b")]);
        state.drop_entry(&spec("10.0.0.3", 9091, "b"), None);
        let json = serde_json::to_string(&state).unwrap();
        let back: ClusterState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        let port_0 = json.replace("\"port\":9091", "\"port\":0");
        let err = serde_json::from_str::<ClusterState>(&port_0).unwrap_err();
        assert!(err.to_string().contains("[::1]:0 db a has port 0"), "{err}");
        let future = json.replace("\"format\":1", "\"format\":2");
        let err = serde_json::from_str::<ClusterState>(&future).unwrap_err();
        assert!(err.to_string().contains("format 2"), "{err}");
    }
}
