//! The master's view: the only place that decides what is in this node's cluster.
//!
//! Entries enter by ADD CLIENT or by a client's registration (read from gossip: the client
//! advertises the node ids of the masters it registered with) and leave by DROP CLIENT or by
//! the client dropping the database it registered. Gossip never adds or removes anything
//! else: it only says whether and where each client is alive. Every change is durable before
//! it is acknowledged: appended to `<data dir>/cluster.log` and fsynced, with a snapshot in
//! `cluster.json` (see `journal`).

pub mod contacts;
pub mod dialable;
pub mod journal;
pub mod master;
pub mod master_ids;
pub mod registration;
pub mod state;
pub mod status;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::db_name::DatabaseName;
use crate::membership::Member;
use crate::sql::{ClientHost, ClientSpec};
use crate::wire::Introduction;
use contacts::Contacts;
use journal::{Change, Journal, JournalError};

pub use state::{AddOutcome, ClusterState, Entry, Source};
pub use status::{cluster_rows, ClusterRow, EntryStatus, MemberIndex, SHOW_CLUSTER_COLUMNS};

#[cfg(test)]
const CLUSTER_FILE: &str = journal::SNAPSHOT_FILE;

/// Why the cluster cannot be read or saved (see [`JournalError`]).
pub type ClusterError = JournalError;

/// The durable cluster of this node (as a master), plus the DNS answers for added names.
pub struct ClusterView {
    data_dir: PathBuf,
    state: Mutex<ClusterState>,
    journal: Mutex<Journal>,
    resolved: Mutex<HashMap<String, Vec<IpAddr>>>,
    /// Clients that just introduced themselves, live before gossip says so.
    contacts: Contacts,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Memory is only kept changed after a successful write, so a panic cannot leave it torn.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClusterView {
    /// Loads the cluster from `data_dir` (empty if this node never was a master).
    pub fn open(data_dir: &Path) -> Result<ClusterView, ClusterError> {
        let (journal, state) = Journal::open(data_dir)?;
        Ok(ClusterView {
            data_dir: data_dir.to_path_buf(),
            state: Mutex::new(state),
            journal: Mutex::new(journal),
            resolved: Mutex::new(HashMap::new()),
            contacts: Contacts::default(),
        })
    }

    /// Applies `change` to the state, then writes the changes it reports: what is in memory
    /// is always what is on disk (when the write fails, the state is read back from disk).
    fn update<T>(
        &self,
        change: impl FnOnce(&mut ClusterState) -> (Vec<Change>, T),
    ) -> Result<T, ClusterError> {
        let mut state = lock(&self.state);
        let mut journal = lock(&self.journal);
        let (changes, outcome) = change(&mut state);
        if let Err(e) = journal.append(&changes, &state) {
            // Nothing was written: go back to what the disk holds.
            match Journal::open(&self.data_dir) {
                Ok((reopened, on_disk)) => {
                    *journal = reopened;
                    *state = on_disk;
                }
                Err(reread) => {
                    tracing::error!(error = %reread, "cannot read the cluster back after a failed write");
                    for change in changes.iter().rev() {
                        tracing::error!(?change, "this change is in memory but not on disk");
                    }
                }
            }
            return Err(e);
        }
        Ok(outcome)
    }

    fn node_at(&self, spec: &ClientSpec, members: &[Member]) -> Option<String> {
        let members = self.contacts.vouch(members, Instant::now());
        let resolved = lock(&self.resolved);
        MemberIndex::new(&members)
            .at(&spec.host, spec.port, &resolved)
            .map(|m| m.node_id.clone())
    }

    /// Creates the files a first change would otherwise create (see [`Journal::prepare`]).
    pub fn prepare_journal(&self) -> Result<(), ClusterError> {
        let state = lock(&self.state);
        lock(&self.journal).prepare(&state)
    }

    /// ADD CLIENT, durable before it returns.
    pub fn add_client(
        &self,
        spec: &ClientSpec,
        members: &[Member],
    ) -> Result<AddOutcome, ClusterError> {
        let node_there = self.node_at(spec, members);
        self.update(|state| {
            let (outcome, changed) = state.add_changed(spec, node_there.as_deref());
            let change = Change::Add {
                key: spec.into(),
                node_there,
            };
            (changed.then_some(change).into_iter().collect(), outcome)
        })
    }

    /// DROP CLIENT, durable before it returns; `None` when there was no such entry.
    pub fn drop_client(
        &self,
        spec: &ClientSpec,
        members: &[Member],
    ) -> Result<Option<Entry>, ClusterError> {
        let node_there = self.node_at(spec, members);
        self.update(|state| {
            let removed = state.drop_entry(spec, node_there.as_deref());
            let change = Change::Drop {
                key: spec.into(),
                node_there,
            };
            (
                removed.is_some().then_some(change).into_iter().collect(),
                removed,
            )
        })
    }

    /// Applies the registrations gossip carries: every member that advertises this node
    /// (`self_node_id`) among its masters registers its endpoint and all its databases.
    pub fn apply_registrations(
        &self,
        self_node_id: &str,
        members: &[Member],
    ) -> Result<bool, ClusterError> {
        let registrants: Vec<&Member> = members
            .iter()
            // A member whose state has not fully arrived yet (no version) is skipped, so a
            // partial view never unregisters databases.
            .filter(|m| !m.version.is_empty() && m.masters.iter().any(|id| id == self_node_id))
            .collect();
        if registrants.is_empty() {
            return Ok(false);
        }
        self.update(|state| {
            let mut changes = Vec::new();
            for member in registrants {
                let change = Change::Register {
                    node_id: member.node_id.clone(),
                    endpoint: member.endpoint,
                    databases: valid_databases(&member.databases),
                };
                if change.apply(state) {
                    changes.push(change);
                }
            }
            let changed = !changes.is_empty();
            (changes, changed)
        })
    }

    /// A client's registration brought by its own introduction (a `BO_MASTER` hello), durable
    /// before it returns; gossip brings the same registration a moment later.
    pub fn register_introduction(&self, node: &Introduction) -> Result<bool, ClusterError> {
        let change = Change::Register {
            node_id: node.node_id.clone(),
            endpoint: node.endpoint,
            databases: valid_databases(&node.databases),
        };
        self.update(|state| {
            let changed = change.apply(state);
            (if changed { vec![change] } else { Vec::new() }, changed)
        })
    }

    /// Remembers that `node` just introduced itself: proof of life until gossip lists it.
    pub fn record_contact(&self, node: Introduction) {
        self.contacts.record(node, Instant::now());
    }

    /// SHOW CLUSTER's rows.
    pub fn rows(&self, members: &[Member]) -> Vec<ClusterRow> {
        let members = self.contacts.vouch(members, Instant::now());
        let state = lock(&self.state);
        let resolved = lock(&self.resolved);
        cluster_rows(&state, &members, &resolved)
    }

    /// A copy of the durable state.
    pub fn state(&self) -> ClusterState {
        lock(&self.state).clone()
    }

    /// Remembers what `name` resolved to, for matching gossip endpoints.
    /// Addresses a master must never dial are left out (see [`dialable`]).
    pub fn set_resolved(&self, name: &str, mut ips: Vec<IpAddr>) {
        ips.retain(|ip| dialable::undialable_reason(*ip).is_none());
        lock(&self.resolved).insert(name.to_string(), ips);
    }

    /// The DNS names among the entries.
    pub fn dns_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.state)
            .entries()
            .filter_map(|e| match &e.key.host {
                ClientHost::Dns(name) => Some(name.clone()),
                ClientHost::Ip(_) => None,
            })
            .collect();
        names.dedup();
        names
    }

    /// The socket addresses `host:port` stands for (DNS names as last resolved).
    pub fn addresses_of(&self, host: &ClientHost, port: u16) -> Vec<SocketAddr> {
        match host {
            ClientHost::Ip(ip) => vec![SocketAddr::new(*ip, port)],
            ClientHost::Dns(name) => lock(&self.resolved)
                .get(name)
                .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
                .unwrap_or_default(),
        }
    }

    /// Endpoints of entries whose client is not live: the master dials them so a client that
    /// knows nothing of it (no seeds, no BO_MASTER) still joins.
    pub fn endpoints_to_reach(&self, members: &[Member]) -> Vec<SocketAddr> {
        let members = self.contacts.vouch(members, Instant::now());
        let unreached: Vec<(ClientHost, u16)> = {
            let state = lock(&self.state);
            let resolved = lock(&self.resolved);
            let index = MemberIndex::new(&members);
            state
                .entries()
                .filter(|e| {
                    let status = status::entry_status(e, index.for_entry(e, &resolved));
                    matches!(
                        status,
                        EntryStatus::Unreachable | EntryStatus::Dead | EntryStatus::Left
                    )
                })
                .map(|e| (e.key.host.clone(), e.key.port))
                .collect()
        };
        let mut targets: Vec<SocketAddr> = unreached
            .iter()
            .flat_map(|(host, port)| self.addresses_of(host, *port))
            // Entries written before ADD CLIENT refused such addresses are never dialled.
            .filter(|addr| dialable::undialable_reason(addr.ip()).is_none())
            .collect();
        targets.sort();
        targets.dedup();
        targets
    }
}

/// The valid database names among those a client advertises (others cannot be entries).
fn valid_databases(names: &[String]) -> Vec<DatabaseName> {
    names
        .iter()
        .filter_map(|d| DatabaseName::new(d).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: &str, db: &str) -> ClientSpec {
        ClientSpec {
            host: host.parse().unwrap(),
            port: 9091,
            db: DatabaseName::new(db).unwrap(),
        }
    }

    #[test]
    fn changes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let view = ClusterView::open(dir.path()).unwrap();
        assert_eq!(
            view.add_client(&spec("10.0.0.1", "a"), &[]).unwrap(),
            AddOutcome::Added
        );
        assert_eq!(
            view.add_client(&spec("10.0.0.1", "a"), &[]).unwrap(),
            AddOutcome::AlreadyThere
        );
        view.add_client(&spec("10.0.0.2", "b"), &[]).unwrap();
        assert!(view
            .drop_client(&spec("10.0.0.2", "b"), &[])
            .unwrap()
            .is_some());
        assert!(view
            .drop_client(&spec("10.0.0.2", "b"), &[])
            .unwrap()
            .is_none());
        let reopened = ClusterView::open(dir.path()).unwrap();
        assert_eq!(reopened.state(), view.state());
        assert_eq!(reopened.state().len(), 1);
    }

    #[test]
    fn a_damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CLUSTER_FILE),
            b"{\"format\": 1, \"entries\": [",
        )
        .unwrap();
        let err = ClusterView::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("cluster.json"), "{err}");
    }
}
