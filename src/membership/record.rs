//! Each node's advertisement: one versioned [`Record`], and the store of everyone's.
//!
//! A node owns one record (API address, databases, masters, software version, host, whether it
//! is leaving) and bumps its `version` on every change. Changes spread as foca custom
//! broadcasts ([`RecordUpdate`]): the whole record when it is small, otherwise only its version,
//! and receivers pull the body over QUIC. Anti-entropy compares a [`digest`](RecordStore::digest)
//! of (node, generation, version) and pulls what differs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The largest record a node may advertise, encoded (3,000 databases of 64-character names
/// take about 200 KB). `CREATE DATABASE` refuses a database that would make it larger.
pub const MAX_RECORD_BYTES: usize = 512 * 1024;

/// Records up to this size (encoded update) ride whole in a broadcast; larger ones are
/// announced by version and pulled. It leaves room for SWIM's own header and updates in a
/// sealed datagram of 1,200 bytes.
pub const INLINE_RECORD_BYTES: usize = 480;

/// What a node advertises about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// Grows on every change; a restart starts again at 1 under its new generation.
    pub version: u64,
    /// The HTTP API address (`ip:port`).
    pub api: String,
    /// Sorted database names.
    pub databases: Vec<String>,
    /// Masters this node registers with (node ids).
    pub masters: Vec<String>,
    /// The bocluster version the node runs.
    pub software: String,
    pub host: String,
    /// Set just before a graceful stop, so peers list the node `left`, not `dead`.
    pub leaving: bool,
}

impl Record {
    /// Its size on the wire.
    pub fn encoded_len(&self) -> usize {
        postcard::to_allocvec(self).map_or(usize::MAX, |b| b.len())
    }
}

/// A record as carried by a broadcast or a pull: whose, which generation, and the body when
/// it fits (`None`: only the version is announced; pull it from `owner_endpoint`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordUpdate {
    pub node_id: String,
    pub generation: u64,
    pub version: u64,
    /// Where the owner listens: a record announced by version is pulled from there.
    pub owner_endpoint: SocketAddr,
    pub body: Option<Record>,
}

impl RecordUpdate {
    fn key(&self) -> RecordKey {
        RecordKey {
            node_id: self.node_id.clone(),
            generation: self.generation,
            version: self.version,
        }
    }
}

/// Which record version a broadcast carries; a newer one of the same node replaces an older
/// one in foca's backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    pub node_id: String,
    pub generation: u64,
    pub version: u64,
}

impl foca::Invalidates for RecordKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node_id == other.node_id
            && (self.generation, self.version) >= (other.generation, other.version)
    }
}

/// One node's record as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownRecord {
    pub generation: u64,
    pub version: u64,
    /// `None` until the body of an announced version has been pulled.
    pub body: Option<Arc<Record>>,
}

/// A (node, generation, version) triple, as exchanged by anti-entropy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordVersion {
    pub node_id: String,
    pub generation: u64,
    pub version: u64,
}

/// Everyone's records, newest (generation, version) wins.
#[derive(Debug, Default)]
pub struct RecordStore {
    known: HashMap<Arc<str>, KnownRecord>,
    /// Nodes whose newest version is known but not its body, and where to pull it.
    wanted: HashMap<String, SocketAddr>,
    /// Set when anything changed since the last [`RecordStore::take_changed`].
    changed: bool,
}

impl RecordStore {
    pub fn get(&self, node_id: &str) -> Option<&KnownRecord> {
        self.known.get(node_id)
    }

    /// Takes in an update; true when it was news (newer than what we held).
    pub fn learn(&mut self, update: RecordUpdate) -> bool {
        let newer = match self.known.get(update.node_id.as_str()) {
            Some(known) => (update.generation, update.version) > (known.generation, known.version),
            None => true,
        };
        if !newer {
            // The body of a version we only knew by number fills the gap.
            if let (Some(body), Some(known)) =
                (update.body, self.known.get_mut(update.node_id.as_str()))
            {
                if known.body.is_none()
                    && (known.generation, known.version) == (update.generation, update.version)
                {
                    known.body = Some(shared::body(body));
                    self.wanted.remove(&update.node_id);
                    self.changed = true;
                }
            }
            return false;
        }
        match &update.body {
            Some(_) => {
                self.wanted.remove(&update.node_id);
            }
            None => {
                self.wanted
                    .insert(update.node_id.clone(), update.owner_endpoint);
            }
        }
        self.known.insert(
            shared::name(update.node_id),
            KnownRecord {
                generation: update.generation,
                version: update.version,
                body: update.body.map(shared::body),
            },
        );
        self.changed = true;
        true
    }

    /// Records whose body must be pulled, grouped by the address to pull from (in address
    /// order: the pulls go out in the same order on every run of one seed).
    pub fn wanted(&self) -> BTreeMap<SocketAddr, BTreeSet<String>> {
        let mut by_addr: BTreeMap<SocketAddr, BTreeSet<String>> = BTreeMap::new();
        for (node, addr) in &self.wanted {
            by_addr.entry(*addr).or_default().insert(node.clone());
        }
        by_addr
    }

    /// Every record held (with a body), for answering pulls.
    pub fn updates_for(
        &self,
        nodes: &[String],
        endpoint_of: impl Fn(&str) -> Option<SocketAddr>,
    ) -> Vec<RecordUpdate> {
        nodes
            .iter()
            .filter_map(|node| {
                let known = self.known.get(node.as_str())?;
                let body = known.body.as_ref()?;
                Some(RecordUpdate {
                    node_id: node.clone(),
                    generation: known.generation,
                    version: known.version,
                    owner_endpoint: endpoint_of(node)?,
                    body: Some((**body).clone()),
                })
            })
            .collect()
    }

    /// (node, generation, version) of every record held.
    pub fn versions(&self) -> Vec<RecordVersion> {
        let mut versions: Vec<RecordVersion> = self
            .known
            .iter()
            .map(|(node, known)| RecordVersion {
                node_id: node.to_string(),
                generation: known.generation,
                version: known.version,
            })
            .collect();
        versions.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        versions
    }

    /// Of `theirs`, the nodes whose record is newer there than here.
    pub fn newer_in(&self, theirs: &[RecordVersion]) -> Vec<String> {
        theirs
            .iter()
            .filter(|v| match self.known.get(v.node_id.as_str()) {
                Some(known) => {
                    (v.generation, v.version) > (known.generation, known.version)
                        || ((v.generation, v.version) == (known.generation, known.version)
                            && known.body.is_none())
                }
                None => true,
            })
            .map(|v| v.node_id.clone())
            .collect()
    }

    /// An order-independent digest of (node, generation, version) over `nodes`: two stores
    /// that agree on those nodes have the same digest. Costs O(nodes), no sorting.
    pub fn digest<'a>(&self, nodes: impl Iterator<Item = &'a str>) -> u64 {
        nodes
            .filter_map(|node| {
                let known = self.known.get(node)?;
                Some(mix(fnv1a(node.as_bytes(), known.generation, known.version)))
            })
            .fold(0u64, |acc, h| acc.wrapping_add(h))
    }

    /// Forgets records of nodes membership no longer knows.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.known.len();
        self.known.retain(|node, _| keep(node));
        self.wanted
            .retain(|node, _| self.known.contains_key(node.as_str()));
        if self.known.len() != before {
            self.changed = true;
        }
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// Whether anything changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

/// Sharing of what thousands of stores in one process hold alike (the simulator's fleet):
/// one copy of each node id and of each record version, instead of one per store. Off unless
/// a thread asks for it ([`share_on_this_thread`]): a node process holds one store.
mod shared {
    use std::cell::RefCell;
    use std::collections::{HashMap, HashSet};
    use std::hash::{Hash, Hasher};
    use std::sync::{Arc, Weak};

    use super::Record;

    #[derive(Default)]
    struct Shared {
        names: HashSet<Arc<str>>,
        /// Record hash -> the bodies alive with that hash.
        bodies: HashMap<u64, Vec<Weak<Record>>>,
        /// Bodies shared since the last sweep of the dead ones.
        since_sweep: usize,
    }

    thread_local! {
        static SHARED: RefCell<Option<Shared>> = const { RefCell::new(None) };
    }

    pub fn enable() {
        SHARED.with(|s| {
            s.borrow_mut().get_or_insert_with(Shared::default);
        });
    }

    pub fn name(node_id: String) -> Arc<str> {
        SHARED.with(|s| match s.borrow_mut().as_mut() {
            None => Arc::from(node_id),
            Some(shared) => {
                if let Some(known) = shared.names.get(node_id.as_str()) {
                    return known.clone();
                }
                let name: Arc<str> = Arc::from(node_id);
                shared.names.insert(name.clone());
                name
            }
        })
    }

    pub fn body(record: Record) -> Arc<Record> {
        SHARED.with(|s| match s.borrow_mut().as_mut() {
            None => Arc::new(record),
            Some(shared) => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                record.hash(&mut hasher);
                let slot = shared.bodies.entry(hasher.finish()).or_default();
                if let Some(same) = slot
                    .iter()
                    .filter_map(Weak::upgrade)
                    .find(|b| **b == record)
                {
                    return same;
                }
                let body = Arc::new(record);
                slot.push(Arc::downgrade(&body));
                shared.since_sweep += 1;
                if shared.since_sweep > 4096 + shared.bodies.len() {
                    shared.since_sweep = 0;
                    shared.bodies.retain(|_, v| {
                        v.retain(|w| w.strong_count() > 0);
                        !v.is_empty()
                    });
                }
                body
            }
        })
    }
}

/// Makes every record store on this thread share node ids and record bodies with the others
/// (for a simulated fleet of thousands of engines in one thread; a node process has no use
/// for it).
pub fn share_on_this_thread() {
    shared::enable();
}

/// FNV-1a over the node id, then the generation and version: stable across builds and
/// platforms, so nodes of different releases still agree on a digest.
fn fnv1a(node: &[u8], generation: u64, version: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |byte: u8| {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    };
    node.iter().copied().for_each(&mut eat);
    eat(0xff);
    generation.to_le_bytes().into_iter().for_each(&mut eat);
    version.to_le_bytes().into_iter().for_each(&mut eat);
    hash
}

/// A finaliser (MurmurHash3's fmix64) applied to each node's hash before the sum: FNV-1a ends
/// in a multiply, so two versions one apart hash a small multiple of a constant apart, and
/// such differences cancel in a sum (the soak of the simulator found two stores, one at
/// n3 1.1 and n7 2.1, the other at n3 1.2 and n7 2.2, with one digest: anti-entropy never
/// repaired them). Mixed, the per-node hashes are unrelated and a sum collides by chance only.
pub(super) fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Why a received broadcast item was refused.
#[derive(Debug, thiserror::Error)]
#[error("malformed record broadcast: {0}")]
pub struct BadRecordUpdate(#[from] postcard::Error);

/// foca's view of our records: decodes each broadcast item and tells foca whether to keep
/// spreading it (only news is spread on).
pub struct RecordBroadcasts {
    pub store: Arc<Mutex<RecordStore>>,
}

impl<T> foca::BroadcastHandler<T> for RecordBroadcasts {
    type Key = RecordKey;
    type Error = BadRecordUpdate;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&T>,
    ) -> Result<Option<RecordKey>, BadRecordUpdate> {
        let update: RecordUpdate = postcard::from_bytes(data)?;
        let key = update.key();
        let news = lock(&self.store).learn(update);
        Ok(news.then_some(key))
    }
}

/// The store holds no invariant a panic could break halfway: keep going after a poison.
pub fn lock(store: &Mutex<RecordStore>) -> std::sync::MutexGuard<'_, RecordStore> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(node: &str, generation: u64, version: u64, body: bool) -> RecordUpdate {
        RecordUpdate {
            node_id: node.into(),
            generation,
            version,
            owner_endpoint: ([127, 0, 0, 1], 9091).into(),
            body: body.then(|| Record {
                version,
                ..Record::default()
            }),
        }
    }

    #[test]
    fn newest_generation_and_version_win() {
        let mut store = RecordStore::default();
        assert!(store.learn(update("a", 1, 2, true)));
        assert!(!store.learn(update("a", 1, 1, true)));
        assert!(!store.learn(update("a", 1, 2, true)));
        assert!(store.learn(update("a", 2, 1, true)));
        assert_eq!(
            store.get("a").map(|k| (k.generation, k.version)),
            Some((2, 1))
        );
    }

    #[test]
    fn an_announced_version_is_wanted_until_its_body_arrives() {
        let mut store = RecordStore::default();
        assert!(store.learn(update("a", 1, 1, false)));
        assert_eq!(store.wanted().values().flatten().count(), 1);
        assert_eq!(store.newer_in(&store.versions()), vec!["a".to_string()]);
        assert!(!store.learn(update("a", 1, 1, true)));
        assert!(store.wanted().is_empty());
        assert!(store.get("a").and_then(|k| k.body.clone()).is_some());
        assert!(store.newer_in(&store.versions()).is_empty());
    }

    #[test]
    fn digest_is_order_independent_and_sees_versions() {
        let mut a = RecordStore::default();
        let mut b = RecordStore::default();
        a.learn(update("x", 1, 1, true));
        a.learn(update("y", 1, 3, true));
        b.learn(update("y", 1, 3, true));
        b.learn(update("x", 1, 1, true));
        let nodes = ["x", "y"];
        assert_eq!(a.digest(nodes.into_iter()), b.digest(nodes.into_iter()));
        b.learn(update("x", 1, 2, true));
        assert_ne!(a.digest(nodes.into_iter()), b.digest(nodes.into_iter()));
        assert_eq!(a.newer_in(&b.versions()), vec!["x".to_string()]);
    }

    #[test]
    fn version_bumps_on_two_nodes_do_not_cancel_out_in_the_digest() {
        // The pair the simulator's soak found (seed 21): with a plain sum of FNV-1a hashes
        // the two stores had one digest.
        let mut a = RecordStore::default();
        let mut b = RecordStore::default();
        for (store, v) in [(&mut a, 1), (&mut b, 2)] {
            store.learn(update("n3", 1, v, true));
            store.learn(update("n7", 2, v, true));
        }
        let nodes = ["n3", "n7"];
        assert_ne!(a.digest(nodes.into_iter()), b.digest(nodes.into_iter()));
        // And over many such pairs, none cancels.
        for i in 0..200u64 {
            let mut a = RecordStore::default();
            let mut b = RecordStore::default();
            let (x, y) = (format!("n{i}"), format!("n{}", i + 1));
            for (store, v) in [(&mut a, 1), (&mut b, 2)] {
                store.learn(update(&x, 1, v, true));
                store.learn(update(&y, 1, v + 4, true));
            }
            let nodes = [x.as_str(), y.as_str()];
            assert_ne!(
                a.digest(nodes.into_iter()),
                b.digest(nodes.into_iter()),
                "{x} {y}"
            );
        }
    }

    #[test]
    fn newer_key_invalidates_older() {
        use foca::Invalidates;
        let k = |g, v| RecordKey {
            node_id: "a".into(),
            generation: g,
            version: v,
        };
        assert!(k(1, 2).invalidates(&k(1, 1)));
        assert!(!k(1, 1).invalidates(&k(1, 2)));
        assert!(k(2, 1).invalidates(&k(1, 9)));
    }
}
