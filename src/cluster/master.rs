//! The master side, in the background: apply registrations as gossip brings them, answer
//! clients' introductions, and dial added clients that are not live yet.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::context::NodeContext;
use crate::metrics::{RegistrationOutcome, RegistrationVia};
use crate::transport::IncomingRequest;
use crate::wire::{Introduction, Request, Response};

/// How long one introduction to a client may take before it counts as unanswered.
const INTRODUCTION_LIMIT: Duration = Duration::from_secs(3);

/// How often unreachable or dead entries are dialled, and DNS names re-resolved.
pub const REACH_OUT_EVERY: Duration = Duration::from_secs(2);
/// Endpoints dialled per round at most (a large cluster is covered over several rounds).
const REACH_OUT_BATCH: usize = 256;
/// Introductions the reach-out rounds keep in flight at most. A dead entry holds one for
/// [`INTRODUCTION_LIMIT`], longer than a round: without a cap, hundreds of dead entries keep
/// hundreds of requests open and each round adds more before the last ones end.
pub const INTRODUCTIONS_IN_FLIGHT: usize = 32;

/// Applies registrations whenever the member snapshot changes.
pub async fn apply_registrations(ctx: Arc<NodeContext>) {
    let mut members = ctx.membership.watch_members();
    loop {
        let snapshot = members.borrow_and_update().clone();
        match ctx
            .cluster
            .apply_registrations(&ctx.identity.node_id, &snapshot)
        {
            Ok(true) => {
                ctx.metrics
                    .registration(RegistrationVia::Gossip, RegistrationOutcome::Changed);
                ctx.events.cluster_changed();
            }
            Ok(false) => {}
            Err(e) => {
                ctx.metrics
                    .registration(RegistrationVia::Gossip, RegistrationOutcome::Failed);
                warn!(error = %e, "cannot record a registration; will retry on the next change");
            }
        }
        if members.changed().await.is_err() {
            return;
        }
    }
}

/// Answers requests from peers.
pub async fn serve_requests(ctx: Arc<NodeContext>, mut requests: mpsc::Receiver<IncomingRequest>) {
    while let Some(incoming) = requests.recv().await {
        let (node, register) = match incoming.request {
            Request::Hello { node, register } => (node, register),
            Request::Register { node } => (node, true),
            // Membership's own requests wait on its task: answered off this loop.
            membership_request => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let response = answer_membership(&ctx, membership_request).await;
                    let _ = incoming.reply.send(response);
                });
                continue;
            }
        };
        debug!(from = %incoming.from, peer = %node.node_id, generation = node.generation, register, sealed = incoming.sealed, "hello");
        let via = if incoming.sealed {
            RegistrationVia::Datagram
        } else {
            RegistrationVia::Hello
        };
        // A registration's id check: the id listed alive at another endpoint.
        let held_elsewhere = register
            .then(|| ctx.membership.alive_as(&node.node_id))
            .flatten()
            .map(|(endpoint, _)| endpoint)
            .filter(|endpoint| *endpoint != node.endpoint);
        match held_elsewhere {
            // Rare, and it dials: answered off this loop.
            Some(listed_at) => {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let response = answer_registration_of_held_id(&ctx, node, listed_at, via).await;
                    let _ = incoming.reply.send(response);
                });
            }
            _ => {
                let _ = incoming.reply.send(answer_hello(&ctx, node, register, via));
            }
        }
    }
}

/// Joins and record pulls, answered from the membership engine.
async fn answer_membership(ctx: &NodeContext, request: Request) -> Response {
    let stopping = || Response::Error {
        message: "the node is stopping".to_string(),
    };
    match request {
        Request::Join { member, record } => {
            debug!(peer = ?member, "join");
            ctx.membership.introduce(member, record);
            ctx.membership
                .join_view()
                .await
                .map_or_else(stopping, Response::Join)
        }
        Request::Versions => Response::Versions(ctx.membership.versions().await),
        Request::Records { nodes } => Response::Records(ctx.membership.records(nodes).await),
        Request::Gone => Response::Gone(ctx.membership.gone().await),
        Request::Lookup { node_id } => Response::Lookup(ctx.membership.alive_as(&node_id)),
        Request::Hello { .. } | Request::Register { .. } => stopping(),
    }
}

/// A peer introduced itself: record the contact and, for a `BO_MASTER` client, its
/// registration (durable before the answer, so an answered hello is never lost). The contact
/// goes first: the entry is listed from the moment the write ends, and then already `alive`
/// rather than `unreachable` until the contact is recorded.
fn answer_hello(
    ctx: &NodeContext,
    node: Introduction,
    register: bool,
    via: RegistrationVia,
) -> Response {
    ctx.cluster.record_contact(node.clone());
    if register {
        match ctx.cluster.register_introduction(&node) {
            Ok(changed) => {
                let outcome = if changed {
                    ctx.events.cluster_changed();
                    RegistrationOutcome::Changed
                } else {
                    RegistrationOutcome::Unchanged
                };
                ctx.metrics.registration(via, outcome);
            }
            Err(e) => {
                ctx.metrics.registration(via, RegistrationOutcome::Failed);
                warn!(client = %node.node_id, error = %e, "cannot record a registration");
                return Response::Error {
                    message: format!("the master cannot record the registration: {e}"),
                };
            }
        }
    }
    Response::Hello {
        node: introduction(ctx),
    }
}

/// How long the node at the endpoint a registering id is listed alive at may take to answer.
const HELD_ID_CHECK_LIMIT: Duration = Duration::from_secs(1);

/// A registration under a node id listed alive at `listed_at`, another endpoint: refused if
/// something answers there as that id (two processes under one id), accepted otherwise (a
/// node that moved, or restarted elsewhere before its old address was detected dead).
async fn answer_registration_of_held_id(
    ctx: &NodeContext,
    node: Introduction,
    listed_at: SocketAddr,
    via: RegistrationVia,
) -> Response {
    let held = ctx
        .transport
        .answers_as(
            listed_at,
            &node.node_id,
            introduction(ctx),
            HELD_ID_CHECK_LIMIT,
        )
        .await;
    if !held {
        return answer_hello(ctx, node, true, via);
    }
    warn!(node_id = %node.node_id, registering_from = %node.endpoint, alive_at = %listed_at,
        "refused a registration: that node id is alive at another endpoint");
    Response::NodeIdInUse {
        endpoint: listed_at,
    }
}

/// This node's introduction: who it is, where it is reached, what it serves.
pub fn introduction(ctx: &NodeContext) -> Introduction {
    Introduction {
        node_id: ctx.identity.node_id.clone(),
        generation: ctx.identity.generation,
        endpoint: ctx.config.endpoint,
        host: hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default(),
        databases: ctx
            .catalog
            .list()
            .iter()
            .map(|name| name.as_str().to_string())
            .collect(),
    }
}

/// Introduces this node to a client at `addr`; its answer is proof of life (see
/// [`super::contacts`]).
pub async fn introduce_to(ctx: &NodeContext, addr: SocketAddr) {
    let request = Request::Hello {
        node: introduction(ctx),
        register: false,
    };
    match ctx
        .transport
        .request(addr, &request, INTRODUCTION_LIMIT)
        .await
    {
        Ok(Response::Hello { node }) => ctx.cluster.record_contact(node),
        Ok(Response::Error { message }) => debug!(%addr, message, "a client refused our hello"),
        Ok(other) => {
            debug!(%addr, answer = ?other, "a client answered our hello with something else")
        }
        Err(e) => debug!(%addr, error = %e, "a client does not answer our hello"),
    }
}

/// ADD CLIENT's introductions in flight at most: each may take [`INTRODUCTION_LIMIT`], and a
/// loop of ADD CLIENT must not pile them up (a skipped one is left to [`reach_out`]).
const ADD_CLIENT_INTRODUCTIONS: usize = 32;

/// Brings in, in the background, the client at `addrs` that an ADD CLIENT named, once its
/// entry is written. Membership's hello went out before the write, and a client that
/// answered it is alive already. One still not live a probe timeout later (the hello or its
/// answer lost, a client still starting) is dialled over QUIC: membership's join, and an
/// introduction whose answer proves it alive. Dialling at once would have cost every ADD
/// CLIENT two TLS handshakes, and on a small machine they held up the statement's answer
/// and the next SHOW CLUSTER. One that answers later still is found by [`reach_out`].
pub fn dial_unless_greeted(ctx: &Arc<NodeContext>, addrs: Vec<SocketAddr>) {
    static IN_FLIGHT: Semaphore = Semaphore::const_new(ADD_CLIENT_INTRODUCTIONS);
    for addr in addrs {
        let Ok(permit) = IN_FLIGHT.try_acquire() else {
            debug!(%addr, "too many introductions in flight; the next reach-out round dials it");
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ctx.config.timings.probe_timeout).await;
            if !ctx.membership.alive_at(addr) {
                ctx.membership.join_through(addr);
                introduce_to(&ctx, addr).await;
            }
            drop(permit);
        });
    }
}

/// Resolves the entries' DNS names and dials entries whose client is not live.
pub async fn reach_out(ctx: Arc<NodeContext>) {
    let mut ticker = tokio::time::interval(REACH_OUT_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = 0usize;
    let introductions = Introductions::new(INTRODUCTIONS_IN_FLIGHT);
    let mut backoff = Backoff::default();
    loop {
        ticker.tick().await;
        reach_out_once(&ctx, &mut cursor, &introductions, &mut backoff).await;
    }
}

/// The longest wait between two dials of an entry that does not answer.
pub const MAX_DIAL_BACKOFF: Duration = Duration::from_secs(16);

/// When each unreached target is dialled next: [`REACH_OUT_EVERY`] after the first dial, then
/// twice as long after each one, up to [`MAX_DIAL_BACKOFF`]. An entry at an address where
/// nobody answers (a mistake, or an ADD CLIENT aimed at someone else) costs a packet every
/// 16 s, not every 2 s for ever; a target that turns live is forgotten, and so starts again
/// at once if it goes away later.
#[derive(Debug, Default)]
pub struct Backoff {
    next: HashMap<SocketAddr, (Instant, Duration)>,
}

impl Backoff {
    /// The `targets` due at `now`; forgets targets no longer unreached.
    pub fn due(&mut self, targets: &[SocketAddr], now: Instant) -> Vec<SocketAddr> {
        let current: HashSet<&SocketAddr> = targets.iter().collect();
        self.next.retain(|addr, _| current.contains(addr));
        targets
            .iter()
            .filter(|addr| self.next.get(addr).is_none_or(|(at, _)| now >= *at))
            .copied()
            .collect()
    }

    /// Records that `addr` was dialled at `now`.
    pub fn dialled(&mut self, addr: SocketAddr, now: Instant) {
        let wait = match self.next.get(&addr) {
            Some((_, last)) => (*last * 2).min(MAX_DIAL_BACKOFF),
            None => REACH_OUT_EVERY,
        };
        self.next.insert(addr, (now + wait, wait));
    }
}

/// One round: refresh DNS answers, then start a gossip exchange and an introduction with a
/// batch of targets.
pub async fn reach_out_once(
    ctx: &Arc<NodeContext>,
    cursor: &mut usize,
    introductions: &Introductions,
    backoff: &mut Backoff,
) {
    for name in ctx.cluster.dns_names() {
        resolve_into(ctx, &name).await;
    }
    dial_unreached(ctx, cursor, introductions, backoff);
}

/// Starts a gossip exchange and an introduction with (a batch of) the entries whose client is
/// not live, with the DNS answers already known. An answered introduction lists the client
/// alive at once (a master that restarted has its clients back within a round trip).
fn dial_unreached(
    ctx: &Arc<NodeContext>,
    cursor: &mut usize,
    introductions: &Introductions,
    backoff: &mut Backoff,
) {
    let now = Instant::now();
    let targets = backoff.due(
        &ctx.cluster.endpoints_to_reach(&ctx.membership.members()),
        now,
    );
    dial_batch(
        &targets,
        cursor,
        introductions,
        |addr| {
            backoff.dialled(addr, now);
            ctx.membership.join_through(addr)
        },
        |addr| {
            let ctx = ctx.clone();
            async move { introduce_to(&ctx, addr).await }
        },
    );
}

/// Gossips with a batch of `targets` from `cursor` and starts an introduction with as many of
/// them as [`Introductions`] allows. The cursor moves past the targets that were introduced or
/// still are, and stops at the first one refused for the cap, so that one goes first next round.
fn dial_batch<Fut>(
    targets: &[SocketAddr],
    cursor: &mut usize,
    introductions: &Introductions,
    mut gossip: impl FnMut(SocketAddr),
    mut introduce: impl FnMut(SocketAddr) -> Fut,
) where
    Fut: Future<Output = ()> + Send + 'static,
{
    if targets.is_empty() {
        return;
    }
    *cursor %= targets.len();
    let batch = REACH_OUT_BATCH.min(targets.len());
    let mut full_at = None;
    for (i, addr) in targets.iter().cycle().skip(*cursor).take(batch).enumerate() {
        gossip(*addr);
        if full_at.is_none() && introductions.start(*addr, &mut introduce) == Started::Full {
            full_at = Some(i);
        }
    }
    *cursor += full_at.unwrap_or(batch);
}

/// Whether [`Introductions::start`] started an introduction.
#[derive(Debug, PartialEq, Eq)]
enum Started {
    Yes,
    /// The previous introduction to this target has not ended: it is skipped, not queued.
    AlreadyInFlight,
    /// The cap is reached.
    Full,
}

/// The reach-out rounds' introductions in flight: at most a cap of them, and at most one per
/// target. ADD CLIENT's [`dial_unless_greeted`] does not go through it: it has its own cap.
#[derive(Debug)]
pub struct Introductions {
    cap: usize,
    permits: Arc<Semaphore>,
    targets: Arc<Mutex<HashSet<SocketAddr>>>,
}

impl Introductions {
    pub fn new(cap: usize) -> Self {
        Introductions {
            cap,
            permits: Arc::new(Semaphore::new(cap)),
            targets: Arc::default(),
        }
    }

    /// How many introductions are in flight.
    pub fn in_flight(&self) -> usize {
        self.cap - self.permits.available_permits()
    }

    /// Spawns `introduce(addr)` unless the cap is reached or `addr` already has one in flight.
    fn start<Fut>(&self, addr: SocketAddr, introduce: impl FnOnce(SocketAddr) -> Fut) -> Started
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Started::Full;
        };
        if !lock(&self.targets).insert(addr) {
            return Started::AlreadyInFlight;
        }
        let slot = InFlight {
            addr,
            targets: self.targets.clone(),
            _permit: permit,
        };
        let introduction = introduce(addr);
        tokio::spawn(async move {
            introduction.await;
            drop(slot);
        });
        Started::Yes
    }
}

/// One introduction's place in [`Introductions`], given back when its task ends (or is
/// dropped, e.g. at shutdown).
struct InFlight {
    addr: SocketAddr,
    targets: Arc<Mutex<HashSet<SocketAddr>>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.targets).remove(&self.addr);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A set of addresses holds no invariant a panic could break halfway.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Resolves `name` (port irrelevant) and records the answer; failures keep the old answer.
pub async fn resolve_into(ctx: &NodeContext, name: &str) {
    match crate::resolve::resolve_host(name).await {
        Ok(ips) => ctx.cluster.set_resolved(name, ips),
        Err(e) => debug!(name, error = %e, "cannot resolve a client name yet"),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;

    /// Introductions that hang until `gate` closes, like ones to dead clients, counting how many
    /// started and the most that ran at once.
    struct Hanging {
        gate: Arc<Semaphore>,
        started: Arc<Mutex<Vec<SocketAddr>>>,
        running: Arc<AtomicUsize>,
        most_running: Arc<AtomicUsize>,
    }

    impl Hanging {
        fn new() -> Self {
            Hanging {
                gate: Arc::new(Semaphore::new(0)),
                started: Arc::default(),
                running: Arc::default(),
                most_running: Arc::default(),
            }
        }

        fn introduce(
            &self,
        ) -> impl FnMut(SocketAddr) -> Pin<Box<dyn Future<Output = ()> + Send>> + '_ {
            move |addr| {
                lock(&self.started).push(addr);
                let (gate, running, most) = (
                    self.gate.clone(),
                    self.running.clone(),
                    self.most_running.clone(),
                );
                Box::pin(async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    // Closed by the test: every waiter gets an error and ends.
                    let _ = gate.acquire().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            }
        }

        fn started(&self) -> Vec<SocketAddr> {
            lock(&self.started).clone()
        }
    }

    fn targets(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 20_000 + i)))
            .collect()
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_hanging_introductions_stay_within_the_cap_and_rotate() {
        let targets = targets(300);
        let introductions = Introductions::new(INTRODUCTIONS_IN_FLIGHT);
        let hanging = Hanging::new();
        let mut cursor = 0;
        let mut gossiped = 0;
        for _ in 0..5 {
            dial_batch(
                &targets,
                &mut cursor,
                &introductions,
                |_| gossiped += 1,
                hanging.introduce(),
            );
            assert!(introductions.in_flight() <= INTRODUCTIONS_IN_FLIGHT);
        }
        wait_until("the introductions run", || {
            hanging.running.load(Ordering::SeqCst) == INTRODUCTIONS_IN_FLIGHT
        })
        .await;
        // The first round filled the cap; the next four started nothing, and still gossiped.
        assert_eq!(hanging.started(), targets[..INTRODUCTIONS_IN_FLIGHT]);
        assert_eq!(introductions.in_flight(), INTRODUCTIONS_IN_FLIGHT);
        assert_eq!(gossiped, 5 * REACH_OUT_BATCH);

        hanging.gate.close();
        wait_until("the introductions end", || introductions.in_flight() == 0).await;
        assert_eq!(
            hanging.most_running.load(Ordering::SeqCst),
            INTRODUCTIONS_IN_FLIGHT
        );
        // The next round goes on where the cap stopped the first one (with introductions that
        // hang again, so none ends and frees a place during the round).
        let next = Hanging::new();
        dial_batch(
            &targets,
            &mut cursor,
            &introductions,
            |_| {},
            next.introduce(),
        );
        assert_eq!(
            next.started(),
            targets[INTRODUCTIONS_IN_FLIGHT..2 * INTRODUCTIONS_IN_FLIGHT]
        );
        next.gate.close();
        wait_until("the last introductions end", || {
            introductions.in_flight() == 0
        })
        .await;
    }

    #[test]
    fn unanswered_targets_are_dialled_less_and_less_often() {
        let targets = targets(2);
        let (a, b) = (targets[0], targets[1]);
        let mut backoff = Backoff::default();
        let start = Instant::now();
        let mut dials = Vec::new();
        // A round every 2 s for 2 minutes; only `a` stays unreached after the first minute.
        for round in 0..60u32 {
            let now = start + REACH_OUT_EVERY * round;
            let unreached = if round < 30 { vec![a, b] } else { vec![a] };
            for addr in backoff.due(&unreached, now) {
                backoff.dialled(addr, now);
                dials.push((round, addr));
            }
        }
        let rounds_of = |who| -> Vec<u32> {
            dials
                .iter()
                .filter(|(_, addr)| *addr == who)
                .map(|(r, _)| *r)
                .collect()
        };
        // 2 s, 4 s, 8 s, 16 s, then every 16 s.
        assert_eq!(rounds_of(a), [0, 1, 3, 7, 15, 23, 31, 39, 47, 55]);
        assert_eq!(rounds_of(b), [0, 1, 3, 7, 15, 23]);
        // b turned live and was forgotten: unreached again, it is dialled at once.
        let now = start + REACH_OUT_EVERY * 61;
        assert_eq!(backoff.due(&[b], now), [b]);
    }

    #[tokio::test]
    async fn a_target_still_in_flight_is_skipped_not_queued() {
        let targets = targets(3);
        let introductions = Introductions::new(INTRODUCTIONS_IN_FLIGHT);
        let hanging = Hanging::new();
        let mut cursor = 0;
        for _ in 0..4 {
            dial_batch(
                &targets,
                &mut cursor,
                &introductions,
                |_| {},
                hanging.introduce(),
            );
        }
        assert_eq!(hanging.started(), targets);
        assert_eq!(introductions.in_flight(), 3);

        hanging.gate.close();
        wait_until("the introductions end", || introductions.in_flight() == 0).await;
        dial_batch(
            &targets,
            &mut cursor,
            &introductions,
            |_| {},
            hanging.introduce(),
        );
        assert_eq!(hanging.started().len(), 6, "each target again, once");
        wait_until("the introductions end", || introductions.in_flight() == 0).await;
    }
}
