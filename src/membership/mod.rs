//! Membership: who is alive, where, and what each node advertises.
//!
//! SWIM ([foca]) over small sealed datagrams on the node's UDP port, plus one versioned
//! [`Record`] per node spread as piggybacked broadcasts and repaired by anti-entropy. The
//! sans-IO core is [`engine::Engine`]; this module drives it from one tokio task and publishes
//! what it knows as a snapshot of [`Member`]s on a watch channel, so readers (SHOW NODES, the
//! master view) never wait on the engine. Changes are logged and broadcast as
//! [`MembershipChange`]s.
//!
//! The driver reaches the network only through a [`MembershipLink`] (datagrams out, and QUIC
//! requests for joins and record pulls), so the same engine runs over QUIC, over an
//! in-process network, or in a simulator.

pub mod claims;
pub mod engine;
pub mod health;
pub mod id;
pub mod missing;
pub mod packet;
pub mod paths;
pub mod record;
pub mod settings;
pub mod sim;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info};

pub use engine::{Engine, EngineStats, GoneMember, JoinView, Pull, RecordError};
pub use id::MemberId;
pub use paths::SenderStamp;
pub use record::{Record, RecordUpdate, RecordVersion, MAX_RECORD_BYTES};
pub use settings::{Profile, Timings};
pub use view::{diff_members, Member, MemberStatus, MembershipChange};

/// One membership datagram received: its source, its plaintext, and where it stands in its
/// sender's stream (from the seal; `None` on networks that do not seal).
#[derive(Debug, Clone)]
pub struct InboundDatagram {
    pub from: SocketAddr,
    pub plaintext: Bytes,
    pub stamp: Option<SenderStamp>,
}

/// What the link hands membership.
#[derive(Debug, Clone)]
pub enum Inbound {
    /// One membership datagram received.
    Datagram(InboundDatagram),
    /// Something we sent to this address was answered by its host with "port unreachable":
    /// no process listens there any more (see `transport::closed_ports`).
    PortClosed(SocketAddr),
}

/// How the driver reaches other nodes. Implemented over QUIC + the shared UDP socket by the
/// transport, and by the in-process network.
#[async_trait]
pub trait MembershipLink: Send + Sync + 'static {
    /// Sends one membership datagram's plaintext to `to` (the link seals it); never blocks.
    fn send_datagram(&self, to: SocketAddr, plaintext: &[u8]);
    /// Asks `to` for its view, announcing `me` (and its record) to it.
    async fn join(
        &self,
        to: SocketAddr,
        me: MemberId,
        record: RecordUpdate,
    ) -> Result<JoinView, String>;
    /// Asks `to` for the versions of every record it holds.
    async fn versions(&self, to: SocketAddr) -> Result<Vec<RecordVersion>, String>;
    /// Asks `to` for these nodes' records.
    async fn records(
        &self,
        to: SocketAddr,
        nodes: Vec<String>,
    ) -> Result<Vec<RecordUpdate>, String>;
    /// Asks `to` for the members it holds dead or left.
    async fn gone(&self, to: SocketAddr) -> Result<Vec<GoneMember>, String>;
}

/// Everything membership needs to start.
#[derive(Debug, Clone)]
pub struct MembershipSettings {
    pub node_id: String,
    pub generation: u64,
    /// The address peers reach this node at (its exposed UDP port).
    pub endpoint: SocketAddr,
    /// Seed addresses to join through.
    pub seeds: Vec<SocketAddr>,
    pub timings: Timings,
    /// The record advertised from the start.
    pub record: Record,
}

/// The member snapshot is rebuilt at most this often: a small delay for SHOW NODES, and a
/// bound on the work while a large fleet forms.
const MIN_PUBLISH_SPACING: Duration = Duration::from_millis(50);
/// The engine's counters (for `/metrics`) are published at most this often.
const STATS_SPACING: Duration = Duration::from_secs(1);
/// While this node knows no one, it asks its seeds again this often.
const REJOIN_EVERY: Duration = Duration::from_secs(2);
/// A join through one address is not asked again sooner than this.
const JOIN_SPACING: Duration = Duration::from_secs(1);
/// Datagrams handled in one go before timers get their turn.
const DRAIN_BATCH: usize = 256;

enum Command {
    UpdateRecord(
        Box<dyn FnOnce(&mut Record) + Send>,
        oneshot::Sender<Result<(), RecordError>>,
    ),
    CheckRecord(
        Box<dyn FnOnce(&mut Record) + Send>,
        oneshot::Sender<Result<(), RecordError>>,
    ),
    JoinThrough(SocketAddr),
    SayHello(SocketAddr),
    Joined(SocketAddr, Result<JoinView, String>),
    JoinView(oneshot::Sender<JoinView>),
    Introduce(MemberId, RecordUpdate),
    Versions(oneshot::Sender<Vec<RecordVersion>>),
    Records(Vec<String>, oneshot::Sender<Vec<RecordUpdate>>),
    Gone(oneshot::Sender<Vec<GoneMember>>),
    VersionsPulled(SocketAddr, Result<Vec<RecordVersion>, String>),
    RecordsPulled(SocketAddr, Result<Vec<RecordUpdate>, String>),
    GonePulled(SocketAddr, Result<Vec<GoneMember>, String>),
    Leave(oneshot::Sender<()>),
}

/// The running membership layer. Dropping it stops the engine's task.
pub struct Membership {
    commands: mpsc::UnboundedSender<Command>,
    members: watch::Receiver<Arc<Vec<Member>>>,
    stats: watch::Receiver<EngineStats>,
    changes: broadcast::Sender<MembershipChange>,
    self_id: MemberId,
    lost_id: watch::Receiver<Option<MemberId>>,
    task: JoinHandle<()>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Membership {
    /// Starts the engine's task; datagrams received for membership arrive on `inbound`
    /// (plaintext, already opened by the link).
    pub fn start(
        settings: MembershipSettings,
        link: Arc<dyn MembershipLink>,
        inbound: mpsc::Receiver<Inbound>,
    ) -> Membership {
        let self_id = MemberId::new(
            settings.node_id.clone(),
            settings.generation,
            settings.endpoint,
        );
        let origin = Instant::now();
        let engine = Engine::new(
            self_id.clone(),
            settings.record.clone(),
            settings.timings.clone(),
            rand::random(),
            Duration::ZERO,
        );
        let initial = Arc::new(engine.members());
        let (members_tx, members) = watch::channel(initial);
        let (stats_tx, stats) = watch::channel(EngineStats::default());
        let (changes, _) = broadcast::channel(1024);
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let (lost_id_tx, lost_id) = watch::channel(None);
        let driver = Driver {
            lost_id_tx,
            engine,
            origin,
            link,
            inbound,
            commands: commands_rx,
            self_commands: commands_tx.clone(),
            members_tx,
            stats_tx,
            changes: changes.clone(),
            seeds: settings.seeds,
            joins: std::collections::HashMap::new(),
            last_publish: origin,
            publish_pending: false,
            last_stats: origin,
        };
        let task = tokio::spawn(driver.run());
        Membership {
            commands: commands_tx,
            members,
            stats,
            changes,
            self_id,
            lost_id,
            task,
        }
    }

    /// Resolves when a later process holding this node's id has taken it over (see
    /// `claims`): the node must then stop, without a goodbye. Never resolves otherwise.
    pub async fn id_taken_over(&self) -> MemberId {
        let mut lost = self.lost_id.clone();
        loop {
            if let Some(winner) = lost.borrow_and_update().clone() {
                return winner;
            }
            if lost.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// This node's identity as it started.
    pub fn self_id(&self) -> &MemberId {
        &self.self_id
    }

    /// The latest member snapshot (this node included), sorted by node id.
    pub fn members(&self) -> Arc<Vec<Member>> {
        self.members.borrow().clone()
    }

    /// Whether the latest snapshot lists a member alive at `endpoint`.
    pub fn alive_at(&self, endpoint: SocketAddr) -> bool {
        self.members
            .borrow()
            .iter()
            .any(|m| m.endpoint == endpoint && m.status == MemberStatus::Alive)
    }

    /// Waits until a snapshot lists a member alive at one of `endpoints`, for at most
    /// `limit`; whether one did.
    pub async fn wait_alive_at(&self, endpoints: &[SocketAddr], limit: Duration) -> bool {
        let mut members = self.members.clone();
        let alive_there = |members: &Arc<Vec<Member>>| {
            members
                .iter()
                .any(|m| endpoints.contains(&m.endpoint) && m.status == MemberStatus::Alive)
        };
        let found = tokio::time::timeout(limit, members.wait_for(alive_there)).await;
        matches!(found, Ok(Ok(_)))
    }

    /// Where, and at which generation, the latest snapshot lists `node_id` alive.
    pub fn alive_as(&self, node_id: &str) -> Option<(SocketAddr, u64)> {
        self.members
            .borrow()
            .iter()
            .find(|m| m.node_id == node_id && m.status == MemberStatus::Alive)
            .map(|m| (m.endpoint, m.generation))
    }

    /// A receiver that sees every new member snapshot.
    pub fn watch_members(&self) -> watch::Receiver<Arc<Vec<Member>>> {
        self.members.clone()
    }

    /// Membership changes as they are observed.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<MembershipChange> {
        self.changes.subscribe()
    }

    /// What the engine has sent, received and refused so far.
    pub fn stats(&self) -> EngineStats {
        self.stats.borrow().clone()
    }

    async fn record_command(
        &self,
        make: impl FnOnce(
            Box<dyn FnOnce(&mut Record) + Send>,
            oneshot::Sender<Result<(), RecordError>>,
        ) -> Command,
        change: impl FnOnce(&mut Record) + Send + 'static,
    ) -> Result<(), RecordError> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(make(Box::new(change), tx)).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// Advertises this database list (sorted here).
    pub async fn set_databases(&self, mut databases: Vec<String>) -> Result<(), RecordError> {
        databases.sort();
        databases.dedup();
        self.record_command(Command::UpdateRecord, move |r| r.databases = databases)
            .await
    }

    /// Whether this database list would fit in the advertisement.
    pub async fn check_databases(&self, mut databases: Vec<String>) -> Result<(), RecordError> {
        databases.sort();
        self.record_command(Command::CheckRecord, move |r| r.databases = databases)
            .await
    }

    /// Advertises the node ids of the masters this node registers with.
    pub async fn set_masters(&self, mut masters: Vec<String>) {
        masters.sort();
        masters.dedup();
        let _ = self
            .record_command(Command::UpdateRecord, move |r| r.masters = masters)
            .await;
    }

    /// Joins (or re-joins) through the node at `addr` now: exchanges views over QUIC.
    pub fn join_through(&self, addr: SocketAddr) {
        let _ = self.commands.send(Command::JoinThrough(addr));
    }

    /// Says hello to the node at `addr` in one sealed datagram: it is alive here, record and
    /// all, one round trip later if it answers (see [`packet::Hello`]). Beside
    /// [`Membership::join_through`], which takes a QUIC handshake first.
    pub fn say_hello(&self, addr: SocketAddr) {
        let _ = self.commands.send(Command::SayHello(addr));
    }

    /// Our view, for a node that joins through us.
    pub async fn join_view(&self) -> Option<JoinView> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::JoinView(tx)).ok()?;
        rx.await.ok()
    }

    /// A node that joined through us, to be taken in and spread.
    pub fn introduce(&self, member: MemberId, record: RecordUpdate) {
        let _ = self.commands.send(Command::Introduce(member, record));
    }

    /// The versions of every record held, for a peer's anti-entropy pull.
    pub async fn versions(&self) -> Vec<RecordVersion> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Versions(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The members held dead or left, for a peer's pull.
    pub async fn gone(&self) -> Vec<GoneMember> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Gone(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The records held for `nodes`, for a peer's pull.
    pub async fn records(&self, nodes: Vec<String>) -> Vec<RecordUpdate> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Records(nodes, tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Leaves the cluster gracefully: every live member is told at once, so all list this
    /// node `left`. Returns once the goodbyes have been handed to the link.
    pub async fn leave(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Leave(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }
}

/// The task that owns the engine.
struct Driver {
    engine: Engine,
    origin: Instant,
    link: Arc<dyn MembershipLink>,
    inbound: mpsc::Receiver<Inbound>,
    commands: mpsc::UnboundedReceiver<Command>,
    self_commands: mpsc::UnboundedSender<Command>,
    members_tx: watch::Sender<Arc<Vec<Member>>>,
    stats_tx: watch::Sender<EngineStats>,
    lost_id_tx: watch::Sender<Option<MemberId>>,
    changes: broadcast::Sender<MembershipChange>,
    seeds: Vec<SocketAddr>,
    /// When a join through each address was last started.
    joins: std::collections::HashMap<SocketAddr, Instant>,
    last_publish: Instant,
    publish_pending: bool,
    last_stats: Instant,
}

impl Driver {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    async fn run(mut self) {
        for seed in self.seeds.clone() {
            self.start_join(seed);
        }
        let mut rejoin = tokio::time::interval(REJOIN_EVERY);
        rejoin.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.origin + self.engine.next_deadline();
            let publish_at = self.last_publish + MIN_PUBLISH_SPACING;
            tokio::select! {
                // Datagrams first: an ack that has arrived is taken in before a timer can
                // time its probe out (a starved node must not blame its peers).
                biased;
                received = self.inbound.recv() => match received {
                    Some(inbound) => {
                        self.take_inbound(inbound);
                        self.drain_inbound();
                    }
                    None => return,
                },
                command = self.commands.recv() => match command {
                    Some(Command::Leave(done)) => {
                        self.drain_inbound();
                        let now = self.now();
                        self.engine.leave(now);
                        self.flush();
                        self.publish();
                        let _ = done.send(());
                        return;
                    }
                    Some(command) => self.handle(command),
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    self.drain_inbound();
                    let now = self.now();
                    self.engine.advance(now);
                }
                _ = rejoin.tick() => {
                    if self.engine.active_members() == 0 {
                        for seed in self.seeds.clone() {
                            self.start_join(seed);
                        }
                    }
                }
                _ = tokio::time::sleep_until(publish_at), if self.publish_pending => {}
            }
            self.flush();
            if let Some(winner) = self.engine.lost_id_to() {
                // The handover datagrams are out; this identity says nothing more.
                self.lost_id_tx.send_replace(Some(winner.clone()));
                return;
            }
            if self.engine.take_changed() {
                self.publish_pending = true;
            }
            if self.publish_pending && Instant::now() >= self.last_publish + MIN_PUBLISH_SPACING {
                self.publish();
            }
            // The counters move with every datagram: refreshed about once a second.
            if self.last_stats.elapsed() >= STATS_SPACING {
                self.last_stats = Instant::now();
                self.stats_tx.send_replace(self.engine.stats().clone());
            }
        }
    }

    fn take_inbound(&mut self, inbound: Inbound) {
        let now = self.now();
        let datagram = match inbound {
            Inbound::Datagram(datagram) => datagram,
            Inbound::PortClosed(addr) => {
                self.engine.handle_port_closed(now, addr);
                return;
            }
        };
        let InboundDatagram {
            from,
            plaintext,
            stamp,
        } = datagram;
        if let Err(e) = self.engine.handle_datagram(now, from, stamp, &plaintext) {
            debug!(peer = %from, error = %e, "membership datagram refused");
        }
    }

    fn drain_inbound(&mut self) {
        for _ in 0..DRAIN_BATCH {
            match self.inbound.try_recv() {
                Ok(inbound) => self.take_inbound(inbound),
                Err(_) => return,
            }
        }
    }

    fn handle(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::UpdateRecord(change, reply) => {
                let _ = reply.send(self.engine.update_record(now, change));
            }
            Command::CheckRecord(change, reply) => {
                let _ = reply.send(self.engine.check_record(change));
            }
            Command::JoinThrough(addr) => self.start_join(addr),
            Command::SayHello(addr) => {
                if addr != self.engine.id().endpoint {
                    self.engine.say_hello(now, addr);
                }
            }
            Command::Joined(addr, Ok(view)) => {
                debug!(peer = %addr, members = view.members.len(), "joined through peer");
                self.engine.join(now, view);
            }
            Command::Joined(addr, Err(e)) => debug!(peer = %addr, error = %e, "join failed"),
            Command::JoinView(reply) => {
                let _ = reply.send(self.engine.join_view());
            }
            Command::Introduce(member, record) => self.engine.introduce(now, member, Some(record)),
            Command::Versions(reply) => {
                let _ = reply.send(self.engine.versions());
            }
            Command::Records(nodes, reply) => {
                let _ = reply.send(self.engine.records_for(&nodes));
            }
            Command::VersionsPulled(from, Ok(versions)) => {
                self.engine.handle_versions(now, from, &versions)
            }
            Command::RecordsPulled(from, Ok(records)) => {
                self.engine.handle_records(now, Some(from), records)
            }
            Command::Gone(reply) => {
                let _ = reply.send(self.engine.gone_members());
            }
            Command::GonePulled(from, Ok(gone)) => self.engine.handle_gone(now, from, &gone),
            Command::VersionsPulled(from, Err(e))
            | Command::RecordsPulled(from, Err(e))
            | Command::GonePulled(from, Err(e)) => {
                debug!(peer = %from, error = %e, "record pull failed");
                self.engine.pull_failed(from);
            }
            Command::Leave(_) => {}
        }
    }

    fn start_join(&mut self, addr: SocketAddr) {
        if addr == self.engine.id().endpoint {
            return;
        }
        if self
            .joins
            .get(&addr)
            .is_some_and(|at| at.elapsed() < JOIN_SPACING)
        {
            return;
        }
        self.joins.insert(addr, Instant::now());
        let now = self.now();
        self.engine.expect(now, addr);
        let link = self.link.clone();
        let me = self.engine.id().clone();
        let record = self
            .engine
            .records_for(std::slice::from_ref(&me.node_id))
            .pop();
        let Some(record) = record else {
            return;
        };
        let reply = self.self_commands.clone();
        tokio::spawn(async move {
            let view = link.join(addr, me, record).await;
            let _ = reply.send(Command::Joined(addr, view));
        });
    }

    /// Hands the engine's datagrams to the link and starts its pulls.
    fn flush(&mut self) {
        let output = self.engine.take_output();
        for (to, bytes) in &output.datagrams {
            self.link.send_datagram(*to, bytes);
        }
        for pull in output.pulls {
            let link = self.link.clone();
            let reply = self.self_commands.clone();
            // Dialled where the member is reached; answered under its endpoint.
            let dial = self.engine.route(pull.from());
            tokio::spawn(async move {
                let command = match pull {
                    Pull::Versions { from } => {
                        Command::VersionsPulled(from, link.versions(dial).await)
                    }
                    Pull::Records { from, nodes } => {
                        Command::RecordsPulled(from, link.records(dial, nodes).await)
                    }
                    Pull::Gone { from } => Command::GonePulled(from, link.gone(dial).await),
                };
                let _ = reply.send(command);
            });
        }
    }

    fn publish(&mut self) {
        self.publish_pending = false;
        self.last_publish = Instant::now();
        self.stats_tx.send_replace(self.engine.stats().clone());
        let members = self.engine.members();
        let previous = self.members_tx.borrow().clone();
        if *previous == members {
            return;
        }
        for change in diff_members(&previous, &members) {
            log_change(&change);
            let _ = self.changes.send(change);
        }
        self.members_tx.send_replace(Arc::new(members));
    }
}

fn log_change(change: &MembershipChange) {
    match change {
        MembershipChange::Joined(m) if !m.is_self => {
            info!(node_id = %m.node_id, endpoint = %m.endpoint, generation = m.generation, "member alive")
        }
        MembershipChange::Failed(m) => {
            info!(node_id = %m.node_id, endpoint = %m.endpoint, "member dead (failed its probes and did not refute)")
        }
        MembershipChange::Left(m) => {
            info!(node_id = %m.node_id, endpoint = %m.endpoint, "member left")
        }
        _ => {}
    }
}
