//! A thin, typed layer over chitchat.
//!
//! It owns the chitchat handle, knows every key (see [`keys`]), and publishes what gossip knows
//! as a snapshot of [`Member`]s on a watch channel, so readers (SHOW NODES, the cluster view)
//! never wait on chitchat's lock. Membership changes are logged and broadcast as
//! [`MembershipChange`] events.

pub mod keys;
pub mod members;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tracing::info;

pub use members::{Member, MemberStatus, MembershipChange};

use crate::transport::GossipTransport;

/// chitchat's cluster id. Which cluster a node belongs to is decided by the TLS key, so this
/// is a constant: nodes of another key never get this far.
const CLUSTER_ID: &str = "bocluster";
/// Heartbeat intervals longer than this are not used to estimate the mean interval.
const MAX_SAMPLED_INTERVAL: Duration = Duration::from_secs(10);
/// The member snapshot is rebuilt at most this often: a small delay for SHOW NODES, and a
/// bound on the work while a large fleet forms.
const MIN_PUBLISH_SPACING: Duration = Duration::from_millis(50);
/// Heartbeat intervals each peer's failure detector remembers to estimate the mean: 100 is
/// 25 s of history at the default interval, plenty for a mean. chitchat allocates the window
/// up front for every peer on every node (8 bytes a sample); its default of 1,000 cost 8 KB
/// per peer per node, 8 GB in all for 1,000 nodes in one process.
const SAMPLING_WINDOW: usize = 100;
/// Tombstones of deleted keys are kept this long so late peers still learn of the deletion.
const DELETED_KEY_GRACE: Duration = Duration::from_secs(3600);

/// Gossip rounds a newly learned node may take to be confirmed alive before it is listed
/// as dead (see [`members::Settling`]).
const SETTLE_ROUNDS: u32 = 12;

/// Everything gossip needs to start.
#[derive(Debug, Clone)]
pub struct GossipSettings {
    pub node_id: String,
    pub generation: u64,
    /// The address peers dial: advertised in our chitchat id.
    pub endpoint: SocketAddr,
    pub seeds: Vec<String>,
    pub gossip_interval: Duration,
    pub phi_threshold: f64,
    pub dead_node_grace: Duration,
    /// Keys advertised from the first message on.
    pub initial_keys: Vec<(String, String)>,
}

/// The running gossip layer.
pub struct Gossip {
    handle: ChitchatHandle,
    self_id: ChitchatId,
    gossip_interval: Duration,
    members: watch::Receiver<Arc<Vec<Member>>>,
    snapshot: Arc<SnapshotPublisher>,
    publisher: JoinHandle<()>,
}

impl Gossip {
    pub async fn start(
        settings: GossipSettings,
        transport: GossipTransport,
    ) -> anyhow::Result<Gossip> {
        let self_id = ChitchatId::new(
            settings.node_id.clone(),
            settings.generation,
            settings.endpoint,
        );
        let config = ChitchatConfig {
            chitchat_id: self_id.clone(),
            cluster_id: CLUSTER_ID.to_string(),
            gossip_interval: settings.gossip_interval,
            listen_addr: settings.endpoint,
            seed_nodes: settings.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: settings.phi_threshold,
                sampling_window_size: SAMPLING_WINDOW,
                max_interval: MAX_SAMPLED_INTERVAL,
                initial_interval: settings.gossip_interval,
                dead_node_grace_period: settings.dead_node_grace,
            },
            marked_for_deletion_grace_period: DELETED_KEY_GRACE,
            catchup_callback: None,
            extra_liveness_predicate: None,
        };
        let handle = spawn_chitchat(config, settings.initial_keys.clone(), &transport).await?;
        let (members_tx, members) = watch::channel(Arc::new(Vec::new()));
        let (changes, _) = broadcast::channel(1024);
        let snapshot = Arc::new(SnapshotPublisher {
            chitchat: handle.chitchat(),
            self_id: self_id.clone(),
            members_tx,
            changes,
            settling: std::sync::Mutex::new(members::Settling::new(
                settings.gossip_interval * SETTLE_ROUNDS,
            )),
        });
        snapshot.publish().await;
        let publisher = tokio::spawn(snapshot.clone().run(settings.gossip_interval));
        Ok(Gossip {
            handle,
            self_id,
            gossip_interval: settings.gossip_interval,
            members,
            snapshot,
            publisher,
        })
    }

    pub fn self_id(&self) -> &ChitchatId {
        &self.self_id
    }

    /// The latest member snapshot (this node included), sorted by node id.
    pub fn members(&self) -> Arc<Vec<Member>> {
        self.members.borrow().clone()
    }

    /// A receiver that sees every new member snapshot.
    pub fn watch_members(&self) -> watch::Receiver<Arc<Vec<Member>>> {
        self.members.clone()
    }

    /// Membership changes as they are observed.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<MembershipChange> {
        self.snapshot.changes.subscribe()
    }

    /// Advertises `key = value`; peers learn it in the next gossip rounds.
    pub async fn set(&self, key: &str, value: &str) {
        self.handle
            .with_chitchat(|chitchat| chitchat.self_node_state().set(key, value))
            .await;
        self.refresh_now().await;
    }

    /// Starts a gossip exchange with `addr` at once, without waiting for a round.
    pub fn gossip_with(&self, addr: SocketAddr) {
        let _ = self.handle.gossip(addr);
    }

    /// Recomputes the member snapshot right away (e.g. after a local change).
    async fn refresh_now(&self) {
        self.snapshot.publish().await;
    }

    /// Leaves the cluster cleanly: marks this node `left`, pushes that to every known peer at
    /// once, keeps answering gossip for a moment so the mark spreads, then stops.
    pub async fn leave(&self) {
        let peers: Vec<SocketAddr> = self
            .members()
            .iter()
            .filter(|m| !m.is_self && m.status == MemberStatus::Alive)
            .map(|m| m.endpoint)
            .collect();
        self.handle
            .with_chitchat(|chitchat| chitchat.self_node_state().set(keys::LEFT, "true"))
            .await;
        for peer in &peers {
            let _ = self.handle.gossip(*peer);
        }
        // A Syn/SynAck/Ack exchange needs a round trip or two; meanwhile peers that gossip
        // with us get the mark in our answers.
        let grace =
            (self.gossip_interval * 4).clamp(Duration::from_millis(500), Duration::from_secs(2));
        tokio::time::sleep(grace).await;
        self.publisher.abort();
        let _ = self.handle.initiate_shutdown();
    }
}

/// Computes the member snapshot from chitchat's state and publishes it when it changed.
struct SnapshotPublisher {
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    self_id: ChitchatId,
    members_tx: watch::Sender<Arc<Vec<Member>>>,
    changes: broadcast::Sender<MembershipChange>,
    settling: std::sync::Mutex<members::Settling>,
}

impl SnapshotPublisher {
    /// Keeps the snapshot current: on every change chitchat reports, and every gossip interval
    /// (failure detection and heartbeats do not trigger chitchat's watcher).
    async fn run(self: Arc<Self>, interval: Duration) {
        let mut live_watcher = self.chitchat.lock().await.live_nodes_watcher();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                changed = live_watcher.changed() => if changed.is_err() { return },
                _ = ticker.tick() => {}
            }
            // Changes that come in a burst (a fleet forming: the live set changes with every
            // peer confirmed) make one snapshot, not one each: each costs O(members).
            tokio::time::sleep_until(last + MIN_PUBLISH_SPACING).await;
            self.publish().await;
            last = tokio::time::Instant::now();
        }
    }

    async fn publish(&self) {
        // Held until the snapshot is sent, so two publishers cannot reorder snapshots.
        let guard = self.chitchat.lock().await;
        let live: HashSet<ChitchatId> = guard.live_nodes().cloned().collect();
        let now = std::time::Instant::now();
        let mut settling = self.settling.lock().unwrap_or_else(|p| p.into_inner());
        settling.retain_known(&guard.node_states().keys().collect());
        let members =
            members::members_from_states(guard.node_states().iter(), &live, &self.self_id, |id| {
                settling.is_listed(id, live.contains(id) || *id == self.self_id, now)
            });
        drop(settling);
        let previous = self.members_tx.borrow().clone();
        if *previous == members {
            return;
        }
        for change in members::diff_members(&previous, &members) {
            log_change(&change);
            let _ = self.changes.send(change);
        }
        self.members_tx.send_replace(Arc::new(members));
        drop(guard);
    }
}

fn log_change(change: &MembershipChange) {
    match change {
        MembershipChange::Joined(m) if !m.is_self => {
            info!(node_id = %m.node_id, endpoint = %m.endpoint, generation = m.generation, "member alive")
        }
        MembershipChange::Failed(m) => {
            info!(node_id = %m.node_id, endpoint = %m.endpoint, "member dead (failure detector)")
        }
        MembershipChange::Left(m) => {
            info!(node_id = %m.node_id, endpoint = %m.endpoint, "member left")
        }
        _ => {}
    }
}
