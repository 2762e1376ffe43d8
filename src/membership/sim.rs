//! A deterministic fleet of membership engines on virtual time, for tests and for
//! `edge-fleet sim`: the same [`Engine`] as a node process, with the clock, the network and
//! the random source in our hands. Same seed, same run.
//!
//! The network ([`Network`]) delivers each datagram after a latency plus jitter, unless it is
//! lost (a loss rate, and one-way loss per node), too big for the MTU, or cut (a node is down
//! or two nodes are in different partition groups); some datagrams are held back to arrive
//! out of order. Bytes are counted per node at sealed size. QUIC requests (joins and record
//! pulls) are answered at once by the engine at the address asked, if reachable.
//!
//! Time moves event by event: the next datagram, or the next node whose engine has a timer
//! due (nodes wait in a heap by deadline, so a step costs O(log N), not O(N)).

pub mod faults;
pub mod properties;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use super::engine::{Engine, JoinView, Pull};
use super::id::MemberId;
use super::record::Record;
use super::settings::Timings;
use super::view::{Member, MemberStatus};
use crate::seal::{MAX_SEALED_DATAGRAM, SEAL_OVERHEAD};

/// How a node process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Running,
    /// Killed (SIGKILL): silent until restarted.
    Crashed,
    /// Stopped gracefully (SIGTERM).
    Left,
    /// Frozen (SIGSTOP): what is sent to it waits in its socket buffer, its timers wait.
    Paused,
}

/// What one node sent and received, counted at the size on the wire (sealed datagrams).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    pub datagrams_out: u64,
    pub bytes_out: u64,
    pub datagrams_in: u64,
    pub bytes_in: u64,
    /// Datagrams not sent because, sealed, they exceed the MTU.
    pub oversize: u64,
    /// Bytes of QUIC requests answered for or by this node (joins, record pulls), encoded.
    pub stream_bytes: u64,
}

/// One simulated node.
pub struct SimNode {
    pub engine: Engine,
    pub addr: SocketAddr,
    pub state: NodeState,
    /// Partition group: datagrams cross only between nodes of one group.
    pub group: u32,
    /// A second network the node is on (a master with a leg in two networks): its address
    /// there and that network's group. It advertises only `addr`; what it sends to a node of
    /// that network comes from this address (see [`SimFleet::add_home`]).
    pub second_home: Option<(SocketAddr, u32)>,
    /// CPU-starved: it handles each datagram and each timer this much late.
    pub slow: Duration,
    /// One-way loss: share of what it sends, and of what is sent to it, that is lost.
    pub loss_out: f64,
    pub loss_in: f64,
    /// The node it joins through on a (re)start or when it finds itself alone.
    pub seed: Option<usize>,
    pub traffic: Traffic,
    /// When it last asked to join while alone.
    last_join: Duration,
}

impl SimNode {
    pub fn is_running(&self) -> bool {
        self.state == NodeState::Running
    }
}

/// The network model, for every link.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// One-way delay.
    pub latency: Duration,
    /// Up to this much more, uniformly.
    pub jitter: Duration,
    /// Share of datagrams lost (0 to 1).
    pub loss: f64,
    /// Share of datagrams held back by `reorder_delay`, so later ones overtake them.
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// The largest sealed datagram a link carries.
    pub mtu: usize,
}

impl Default for Network {
    fn default() -> Network {
        Network {
            latency: Duration::from_millis(1),
            jitter: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            mtu: MAX_SEALED_DATAGRAM,
        }
    }
}

struct InFlight {
    at: Duration,
    seq: u64,
    to: SocketAddr,
    from: SocketAddr,
    bytes: Vec<u8>,
    /// The host of `from` answering a datagram sent there with "port unreachable": nothing
    /// listens there since its node crashed or left (see `Engine::handle_port_closed`).
    port_closed: bool,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// How often a node that finds itself alone asks its seed to join again (as the node
/// process's driver does).
pub const REJOIN_EVERY: Duration = Duration::from_secs(2);

/// What a paused node's socket buffer holds at most (datagrams); the rest is dropped.
pub const PAUSED_BACKLOG: usize = 1024;

/// The fleet and its network.
pub struct SimFleet {
    pub nodes: Vec<SimNode>,
    by_addr: HashMap<SocketAddr, usize>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    /// Nodes by when their engine next has something to do (stale entries are skipped:
    /// `scheduled` holds the one that counts).
    timers: BinaryHeap<Reverse<(Duration, usize)>>,
    scheduled: Vec<Option<Duration>>,
    /// Datagrams waiting for a paused node.
    backlog: HashMap<usize, Vec<(SocketAddr, Vec<u8>)>>,
    seq: u64,
    now: Duration,
    pub net: Network,
    rng: SmallRng,
    timings: Timings,
    /// Datagrams and bytes sent so far (sealed size), the whole fleet.
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// Events handled so far (datagrams delivered and timer rounds), for progress reports.
    pub events: u64,
}

/// The address of simulated node `i`: 10.x.y.z:9091 (never sent anywhere: the network is
/// this process's).
pub fn sim_addr(i: usize) -> SocketAddr {
    let i = i as u32 + 1;
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 9091))
}

/// The node id of simulated node `i`.
pub fn sim_node_id(i: usize) -> String {
    format!("n{i}")
}

impl SimFleet {
    pub fn new(timings: Timings, seed: u64) -> SimFleet {
        // Thousands of stores in one thread hold the same node ids and records: one copy.
        super::record::share_on_this_thread();
        SimFleet {
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            in_flight: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            scheduled: Vec::new(),
            backlog: HashMap::new(),
            seq: 0,
            now: Duration::ZERO,
            net: Network::default(),
            rng: SmallRng::seed_from_u64(seed),
            timings,
            datagrams_sent: 0,
            bytes_sent: 0,
            events: 0,
        }
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// Datagrams on their way now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// A random number from the fleet's own source (for schedules made during a run).
    pub fn random_below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n.max(1))
    }

    /// Starts a node named `n<i>` at generation `generation`, joining through node `seed`.
    pub fn start_node(&mut self, generation: u64, seed: Option<usize>) -> usize {
        let index = self.nodes.len();
        let addr = sim_addr(index);
        self.start_at(index, sim_node_id(index), generation, addr, seed)
    }

    /// (Re)starts node `index` as `node_id` at `addr` (a restart or a move), joining through
    /// node `seed`.
    pub fn start_at(
        &mut self,
        index: usize,
        node_id: String,
        generation: u64,
        addr: SocketAddr,
        seed: Option<usize>,
    ) -> usize {
        let id = MemberId::new(node_id, generation, addr);
        let record = Record {
            api: format!("{}:9090", addr.ip()),
            software: "sim".into(),
            ..Record::default()
        };
        let engine_seed = self.rng.random::<u64>();
        let engine = Engine::new(id, record, self.timings.clone(), engine_seed, self.now);
        let mut node = SimNode {
            engine,
            addr,
            state: NodeState::Running,
            group: 0,
            second_home: None,
            slow: Duration::ZERO,
            loss_out: 0.0,
            loss_in: 0.0,
            seed,
            traffic: Traffic::default(),
            last_join: self.now,
        };
        if index < self.nodes.len() {
            let old = &self.nodes[index];
            self.by_addr.remove(&old.addr);
            // The process restarts on the same machine: its place in the network stays.
            node.group = old.group;
            node.second_home = old.second_home;
            node.slow = old.slow;
            node.loss_out = old.loss_out;
            node.loss_in = old.loss_in;
            node.traffic = old.traffic.clone();
            node.seed = seed.or(old.seed);
            self.backlog.remove(&index);
            self.nodes[index] = node;
        } else {
            self.nodes.push(node);
            self.scheduled.push(None);
        }
        self.by_addr.insert(addr, index);
        if let Some(seed) = seed {
            self.join(index, seed);
        }
        self.flush(index);
        index
    }

    /// Restarts node `index` (after a crash or a leave) under the next generation, at the
    /// same address.
    pub fn restart(&mut self, index: usize) {
        let addr = self.nodes[index].addr;
        self.restart_at(index, addr);
    }

    /// Restarts node `index` under the next generation at `addr` (a move).
    pub fn restart_at(&mut self, index: usize, addr: SocketAddr) {
        let id = self.nodes[index].engine.id().clone();
        let seed = self.nodes[index].seed.filter(|&s| s != index);
        self.start_at(index, id.node_id, id.generation + 1, addr, seed);
    }

    /// Node `index` joins through node `seed` (the QUIC join request, answered at once).
    pub fn join(&mut self, index: usize, seed: usize) {
        self.nodes[index].last_join = self.now;
        if index == seed || !self.stream_gets_through(index, seed) {
            return;
        }
        let now = self.now;
        let Some(seed_addr) = self.address_on(seed, self.nodes[index].group) else {
            return;
        };
        self.nodes[index].engine.expect(now, seed_addr);
        let me = self.nodes[index].engine.id().clone();
        let record = self.nodes[index]
            .engine
            .records_for(std::slice::from_ref(&me.node_id))
            .pop();
        let seed_engine = &mut self.nodes[seed].engine;
        seed_engine.introduce(now, me, record);
        let view = seed_engine.join_view();
        let size = join_view_bytes(&view);
        self.nodes[seed].traffic.stream_bytes += size;
        self.nodes[index].traffic.stream_bytes += size;
        self.nodes[index].engine.join(now, view);
        self.flush(seed);
        self.flush(index);
    }

    /// Node `index` says hello to node `to` by its address alone (a master's ADD CLIENT).
    pub fn say_hello(&mut self, index: usize, to: usize) {
        let now = self.now;
        let addr = self.nodes[to].addr;
        self.nodes[index].engine.say_hello(now, addr);
        self.flush(index);
    }

    /// Whether a QUIC request between `a` and `b` gets through: they reach each other, and
    /// neither drops everything one way (QUIC retries through partial loss, not through a
    /// cut: a node that hears nothing completes no handshake).
    fn stream_gets_through(&self, a: usize, b: usize) -> bool {
        let cut = |i: usize| self.nodes[i].loss_in >= 1.0 || self.nodes[i].loss_out >= 1.0;
        self.reachable(a, b) && !cut(a) && !cut(b)
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        let (node_a, node_b) = (&self.nodes[a], &self.nodes[b]);
        node_a.is_running()
            && node_b.is_running()
            && (self.address_on(b, node_a.group).is_some()
                || self.address_on(a, node_b.group).is_some())
    }

    /// Puts node `index` on network `group` too, at `addr` (as `docker network connect`).
    pub fn add_home(&mut self, index: usize, addr: SocketAddr, group: u32) {
        self.leave_second_home(index);
        self.nodes[index].second_home = Some((addr, group));
        self.by_addr.insert(addr, index);
    }

    /// Takes node `index` off its second network (as `docker network disconnect`).
    pub fn leave_second_home(&mut self, index: usize) {
        if let Some((addr, _)) = self.nodes[index].second_home.take() {
            self.by_addr.remove(&addr);
        }
    }

    /// Node `index`'s address on network `group`, if it is on it.
    fn address_on(&self, index: usize, group: u32) -> Option<SocketAddr> {
        let node = &self.nodes[index];
        if node.group == group {
            return Some(node.addr);
        }
        node.second_home
            .filter(|(_, on)| *on == group)
            .map(|(addr, _)| addr)
    }

    /// Where a datagram from node `from` to `to` goes: the node there, and the source it
    /// arrives from (the sender's address on that network). None when no node is there, or
    /// the sender is not on that address's network.
    fn route(&self, from: usize, to: SocketAddr) -> Option<(usize, SocketAddr)> {
        let dest = *self.by_addr.get(&to)?;
        let node = &self.nodes[dest];
        let group = if node.addr == to {
            node.group
        } else {
            node.second_home.filter(|(addr, _)| *addr == to)?.1
        };
        Some((dest, self.address_on(from, group)?))
    }

    /// Crashes node `index` (SIGKILL: no goodbye).
    pub fn crash(&mut self, index: usize) {
        self.nodes[index].state = NodeState::Crashed;
        self.backlog.remove(&index);
    }

    /// Stops node `index` gracefully (SIGTERM).
    pub fn leave(&mut self, index: usize) {
        if !self.nodes[index].is_running() {
            return;
        }
        let now = self.now;
        self.nodes[index].engine.leave(now);
        self.flush(index);
        self.nodes[index].state = NodeState::Left;
    }

    /// Freezes node `index` (SIGSTOP).
    pub fn pause(&mut self, index: usize) {
        if self.nodes[index].is_running() {
            self.nodes[index].state = NodeState::Paused;
        }
    }

    /// Thaws node `index` (SIGCONT): it handles what waited in its socket buffer, then its
    /// overdue timers.
    pub fn resume(&mut self, index: usize) {
        if self.nodes[index].state != NodeState::Paused {
            return;
        }
        self.nodes[index].state = NodeState::Running;
        let now = self.now;
        for (from, bytes) in self.backlog.remove(&index).unwrap_or_default() {
            self.deliver(index, from, &bytes, now);
        }
        self.nodes[index].engine.advance(now);
        self.flush(index);
        self.reschedule(index);
    }

    /// Splits the fleet: node `i` goes to group `groups[i]`.
    pub fn partition(&mut self, groups: impl Fn(usize) -> u32) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.group = groups(i);
        }
    }

    /// Ends every partition.
    pub fn heal(&mut self) {
        self.partition(|_| 0);
    }

    /// Changes node `index`'s record (as `CREATE DATABASE` does) and sends what that
    /// queues.
    pub fn update_record(&mut self, index: usize, now: Duration, change: impl FnOnce(&mut Record)) {
        let _ = self.nodes[index].engine.update_record(now, change);
        self.flush(index);
    }

    /// Runs the fleet until `until` (virtual time).
    pub fn run_until(&mut self, until: Duration) {
        loop {
            let next_timer = self.next_timer();
            let next_datagram = self.in_flight.peek().map(|Reverse(d)| d.at);
            let next = match (next_timer, next_datagram) {
                (Some(t), Some(d)) => t.min(d),
                (Some(t), None) => t,
                (None, Some(d)) => d,
                (None, None) => break,
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            self.events += 1;
            if next_datagram == Some(next) {
                let Some(Reverse(datagram)) = self.in_flight.pop() else {
                    break;
                };
                let Some(&to) = self.by_addr.get(&datagram.to) else {
                    continue;
                };
                if datagram.port_closed {
                    if self.nodes[to].is_running() {
                        let now = self.now;
                        self.nodes[to].engine.handle_port_closed(now, datagram.from);
                        self.flush(to);
                    }
                    continue;
                }
                match self.nodes[to].state {
                    NodeState::Running => {
                        let now = self.now;
                        self.deliver(to, datagram.from, &datagram.bytes, now);
                    }
                    NodeState::Paused => {
                        let waiting = self.backlog.entry(to).or_default();
                        if waiting.len() < PAUSED_BACKLOG {
                            waiting.push((datagram.from, datagram.bytes));
                        }
                    }
                    NodeState::Crashed | NodeState::Left => self.answer_port_closed(datagram),
                }
            } else if let Some(Reverse((_, i))) = self.timers.pop() {
                self.scheduled[i] = None;
                if !self.nodes[i].is_running() {
                    continue;
                }
                let now = self.now;
                self.nodes[i].engine.advance(now);
                self.rejoin_if_alone(i);
                self.flush(i);
                self.reschedule(i);
            }
        }
        self.now = self.now.max(until);
    }

    /// The earliest deadline in the timer heap that still counts (drops stale ones).
    fn next_timer(&mut self) -> Option<Duration> {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if self.scheduled[i] == Some(at) {
                if self.nodes[i].is_running() {
                    return Some(at);
                }
                // Paused or down: scheduled again when it runs again.
                self.scheduled[i] = None;
            }
            self.timers.pop();
        }
        None
    }

    /// Puts node `index` in the timer heap at its engine's next deadline (late by its
    /// slowness).
    fn reschedule(&mut self, index: usize) {
        let node = &self.nodes[index];
        if !node.is_running() {
            return;
        }
        let at = (node.engine.next_deadline() + node.slow).max(self.now);
        if self.scheduled[index] != Some(at) {
            self.scheduled[index] = Some(at);
            self.timers.push(Reverse((at, index)));
        }
    }

    /// A node alone asks its seed again (the driver's rejoin tick).
    fn rejoin_if_alone(&mut self, index: usize) {
        let node = &self.nodes[index];
        if node.engine.active_members() > 0 || self.now < node.last_join + REJOIN_EVERY {
            return;
        }
        if let Some(seed) = node.seed {
            self.join(index, seed);
        }
    }

    /// The host of a node that crashed or left answers a datagram for it: nothing listens
    /// there (the answer comes back over the same latency).
    fn answer_port_closed(&mut self, datagram: InFlight) {
        self.seq += 1;
        self.in_flight.push(Reverse(InFlight {
            at: self.now + self.net.latency,
            seq: self.seq,
            to: datagram.from,
            from: datagram.to,
            bytes: Vec::new(),
            port_closed: true,
        }));
    }

    /// Hands one datagram to a running node.
    fn deliver(&mut self, to: usize, from: SocketAddr, bytes: &[u8], now: Duration) {
        let traffic = &mut self.nodes[to].traffic;
        traffic.datagrams_in += 1;
        traffic.bytes_in += (bytes.len() + SEAL_OVERHEAD) as u64;
        let _ = self.nodes[to]
            .engine
            .handle_datagram(now, from, None, bytes);
        self.flush(to);
        self.reschedule(to);
    }

    /// Sends what node `index` wants sent, and answers its pulls (an answered pull may ask
    /// for more: the records after the versions).
    fn flush(&mut self, index: usize) {
        let output = self.nodes[index].engine.take_output();
        self.send(index, output.datagrams);
        let mut pulls: std::collections::VecDeque<Pull> = output.pulls.into();
        while let Some(pull) = pulls.pop_front() {
            self.answer_pull(index, pull);
            let more = self.nodes[index].engine.take_output();
            self.send(index, more.datagrams);
            pulls.extend(more.pulls);
        }
        // A later process took this node's id over: the node stops, without a goodbye (as
        // `bocluster node` exits).
        if self.nodes[index].engine.lost_id_to().is_some() {
            self.nodes[index].state = NodeState::Crashed;
            return;
        }
        self.reschedule(index);
    }

    /// Puts node `index`'s datagrams on the network, unless lost, too big or cut.
    fn send(&mut self, index: usize, datagrams: Vec<(SocketAddr, Vec<u8>)>) {
        for (to, bytes) in datagrams {
            let sealed = (bytes.len() + SEAL_OVERHEAD) as u64;
            if sealed as usize > self.net.mtu {
                self.nodes[index].traffic.oversize += 1;
                continue;
            }
            self.datagrams_sent += 1;
            self.bytes_sent += sealed;
            let traffic = &mut self.nodes[index].traffic;
            traffic.datagrams_out += 1;
            traffic.bytes_out += sealed;
            let Some((dest, from)) = self.route(index, to) else {
                continue;
            };
            if self.lost(index, dest) {
                continue;
            }
            let mut at = self.now + self.net.latency + self.nodes[dest].slow;
            if !self.net.jitter.is_zero() {
                at += self.net.jitter.mul_f64(self.rng.random::<f64>());
            }
            if self.net.reorder > 0.0 && self.rng.random_bool(self.net.reorder.min(1.0)) {
                at += self.net.reorder_delay;
            }
            self.seq += 1;
            self.in_flight.push(Reverse(InFlight {
                at,
                seq: self.seq,
                to,
                from,
                bytes,
                port_closed: false,
            }));
        }
    }

    /// Whether one datagram from `from` to `to` is lost.
    fn lost(&mut self, from: usize, to: usize) -> bool {
        let kept = (1.0 - self.net.loss)
            * (1.0 - self.nodes[from].loss_out)
            * (1.0 - self.nodes[to].loss_in);
        kept < 1.0 && self.rng.random_bool((1.0 - kept).clamp(0.0, 1.0))
    }

    /// Answers one of node `index`'s QUIC pulls at once, from the engine asked (if reachable).
    fn answer_pull(&mut self, index: usize, pull: Pull) {
        let now = self.now;
        let target = pull.from();
        let Some(t) = self
            .route(index, target)
            .map(|(t, _)| t)
            .filter(|&t| self.stream_gets_through(index, t))
        else {
            self.nodes[index].engine.pull_failed(target);
            return;
        };
        let size = match pull {
            Pull::Versions { .. } => {
                let versions = self.nodes[t].engine.versions();
                let size = encoded_len(&versions);
                self.nodes[index]
                    .engine
                    .handle_versions(now, target, &versions);
                size
            }
            Pull::Records { nodes, .. } => {
                let records = self.nodes[t].engine.records_for(&nodes);
                let size = encoded_len(&records) + encoded_len(&nodes);
                self.nodes[index]
                    .engine
                    .handle_records(now, Some(target), records);
                size
            }
            Pull::Gone { .. } => {
                let gone = self.nodes[t].engine.gone_members();
                let size = encoded_len(&gone);
                self.nodes[index].engine.handle_gone(now, target, &gone);
                size
            }
        };
        self.nodes[index].traffic.stream_bytes += size;
        self.nodes[t].traffic.stream_bytes += size;
    }

    /// What node `observer` lists for node `subject` (by node id).
    pub fn view(&self, observer: usize, node_id: &str) -> Option<Member> {
        self.nodes[observer]
            .engine
            .members()
            .into_iter()
            .find(|m| m.node_id == node_id)
    }

    /// Whether every running node lists `node_id` with `status`.
    pub fn all_see(&self, node_id: &str, status: MemberStatus) -> bool {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_running())
            .all(|(i, _)| self.view(i, node_id).is_some_and(|m| m.status == status))
    }

    /// Indexes of the running nodes.
    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_running())
            .map(|(i, _)| i)
    }

    /// Whether every running node holds every other running node active (alive or
    /// suspect), and nothing more: cheap (no member rows are built), for big fleets.
    pub fn all_active(&self) -> bool {
        let running = self.running().count();
        self.running()
            .all(|i| self.nodes[i].engine.active_members() + 1 == running)
    }

    /// Runs in steps of `step` until `done` holds or `limit` passes; the time it took.
    pub fn run_until_true(
        &mut self,
        step: Duration,
        limit: Duration,
        mut done: impl FnMut(&SimFleet) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        while self.now - start < limit {
            if done(self) {
                return Some(self.now - start);
            }
            let next = self.now + step;
            self.run_until(next);
        }
        done(self).then(|| self.now - start)
    }
}

/// The encoded size of a QUIC answer (postcard, as the link sends it).
fn encoded_len<T: serde::Serialize + ?Sized>(value: &T) -> u64 {
    postcard::to_allocvec(value).map_or(0, |b| b.len() as u64)
}

fn join_view_bytes(view: &JoinView) -> u64 {
    encoded_len(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::engine::GoneMember;
    use crate::membership::paths::SenderStamp;

    fn timings() -> Timings {
        Timings {
            anti_entropy_interval: Duration::from_secs(1),
            ..Timings::default()
        }
    }

    const STEP: Duration = Duration::from_millis(50);

    /// The datagram node `from` sends when it announces itself to node `to` now, taken out of
    /// its output rather than delivered (to be handed in by the test, from any source).
    fn announce_of(fleet: &mut SimFleet, from: usize, to: usize) -> Vec<u8> {
        let now = fleet.now();
        let target = fleet.nodes[to].engine.id().clone();
        let engine = &mut fleet.nodes[from].engine;
        let _ = engine.take_output();
        engine.announce(now, target);
        let (_, datagram) = engine
            .take_output()
            .datagrams
            .first()
            .expect("an announce")
            .clone();
        datagram
    }

    /// What node `index` sends back to `from` when it gets `bytes` from there now.
    fn answers_to(
        fleet: &mut SimFleet,
        index: usize,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Vec<Vec<u8>> {
        let now = fleet.now();
        let engine = &mut fleet.nodes[index].engine;
        let _ = engine.take_output();
        engine.handle_datagram(now, from, None, bytes).unwrap();
        engine
            .take_output()
            .datagrams
            .into_iter()
            .filter(|(to, _)| *to == from)
            .map(|(_, d)| d)
            .collect()
    }

    /// A fleet of `n` started one after the other through node 0, converged.
    fn fleet(n: usize, seed: u64) -> SimFleet {
        fleet_with(timings(), n, seed)
    }

    fn fleet_with(timings: Timings, n: usize, seed: u64) -> SimFleet {
        let mut fleet = SimFleet::new(timings, seed);
        fleet.start_node(1, None);
        for _ in 1..n {
            fleet.start_node(1, Some(0));
        }
        let converged = fleet.run_until_true(STEP, Duration::from_secs(30), |f| {
            (0..n).all(|i| f.all_see(&format!("n{i}"), MemberStatus::Alive))
        });
        assert!(converged.is_some(), "{n} nodes did not converge");
        fleet
    }

    #[test]
    fn a_fleet_converges_and_everyone_holds_every_record() {
        let mut fleet = fleet(8, 1);
        // Records of members first heard of without one are asked for in a batch soon after.
        let held = fleet.run_until_true(STEP, Duration::from_secs(2), |f| {
            (0..8).all(|o| {
                (0..8).all(|s| {
                    f.view(o, &sim_node_id(s))
                        .is_some_and(|m| !m.api.is_empty())
                })
            })
        });
        assert!(held.is_some(), "records missing 2 s after the fleet formed");
        for observer in 0..8 {
            for subject in 0..8 {
                let m = fleet.view(observer, &format!("n{subject}")).unwrap();
                assert_eq!(
                    m.api,
                    format!("{}:9090", sim_addr(subject).ip()),
                    "{observer} sees {subject}"
                );
                assert_eq!(m.version, "sim");
            }
        }
    }

    #[test]
    fn a_crashed_node_turns_dead_everywhere_within_the_timings() {
        let mut fleet = fleet(6, 2);
        fleet.crash(3);
        let t = timings();
        // Probed within a couple of intervals, suspected after one, dead after the timeout.
        let bound = t.probe_interval * 4 + t.suspect_timeout_for(6) * 2;
        let took = fleet.run_until_true(STEP, bound, |f| f.all_see("n3", MemberStatus::Dead));
        assert!(took.is_some(), "not dead everywhere within {bound:?}");
        // And it stays dead (also after foca has forgotten it); no live node is reported dead.
        fleet.run_until(fleet.now() + t.forget_down_after(6) + Duration::from_secs(20));
        assert!(fleet.all_see("n3", MemberStatus::Dead));
        for i in [0, 1, 2, 4, 5] {
            assert!(fleet.all_see(&format!("n{i}"), MemberStatus::Alive), "n{i}");
        }
    }

    /// Whether every other node lists `subject` dead (`all_see` asks `subject` too, and a
    /// node cut off still runs and lists itself alive).
    fn dead_on_every_other(fleet: &SimFleet, subject: usize) -> bool {
        let id = sim_node_id(subject);
        (0..fleet.nodes.len()).filter(|&i| i != subject).all(|i| {
            fleet
                .view(i, &id)
                .is_some_and(|m| m.status == MemberStatus::Dead)
        })
    }

    /// Whether any running node lists another running node (other than `except`) `dead`,
    /// and which.
    fn a_live_node_listed_dead(fleet: &SimFleet, except: usize) -> Option<(usize, usize)> {
        let running: Vec<usize> = fleet.running().collect();
        running.iter().find_map(|&observer| {
            running
                .iter()
                .filter(|&&s| s != except)
                .find_map(|&subject| {
                    let row = fleet.view(observer, &sim_node_id(subject))?;
                    (row.status == MemberStatus::Dead).then_some((observer, subject))
                })
        })
    }

    #[test]
    fn a_node_that_hears_no_one_does_not_declare_its_peers_dead_for_a_while() {
        let mut fleet = fleet(6, 9);
        // Node 2 hears nothing (one-way loss in), for less than its patience: every probe of
        // its own fails, but it declares no one, so no one is told a live node died. (Node 2
        // itself answers no probe, and may be listed dead: it is unreachable.)
        fleet.nodes[2].loss_in = 1.0;
        let deaf_until = fleet.now() + Duration::from_secs(8);
        while fleet.now() < deaf_until + Duration::from_secs(5) {
            if fleet.now() >= deaf_until {
                fleet.nodes[2].loss_in = 0.0;
            }
            fleet.run_until(fleet.now() + STEP);
            if let Some((observer, subject)) = a_live_node_listed_dead(&fleet, 2) {
                panic!("n{observer} lists n{subject} dead at {:?}", fleet.now());
            }
        }
        assert!(fleet.nodes[2].engine.stats().deaf_deferrals > 0);
        // Cut off from everyone for good, it lists them dead once its patience runs out
        // (deaf patience, then its health score's: about 20 s).
        fleet.nodes[2].loss_in = 1.0;
        let listed = fleet.run_until_true(STEP, Duration::from_secs(30), |f| {
            (0..6).filter(|&i| i != 2).all(|i| {
                f.view(2, &sim_node_id(i))
                    .is_some_and(|m| m.status == MemberStatus::Dead)
            })
        });
        assert!(
            listed.is_some(),
            "a node cut off from everyone never listed them dead"
        );
    }

    #[test]
    fn a_big_fleet_started_at_once_forms_before_the_first_usual_anti_entropy_round() {
        // 200 nodes started in one instant through one seed: feeds of random members leave
        // a few pairs unknown, which only anti-entropy finds; while catching up its rounds
        // come every 3 periods instead of every 10 s.
        let mut fleet = SimFleet::new(Timings::default(), 1);
        fleet.start_node(1, None);
        for _ in 1..200 {
            fleet.start_node(1, Some(0));
        }
        let usual_round = Timings::default().anti_entropy_interval;
        let formed = fleet.run_until_true(STEP * 5, usual_round, SimFleet::all_active);
        assert!(
            formed.is_some(),
            "200 nodes did not all see each other within {usual_round:?}"
        );
    }

    #[test]
    fn a_graceful_leave_is_left_everywhere_at_once() {
        let mut fleet = fleet(6, 3);
        fleet.leave(2);
        // One network latency later, not a timeout later.
        fleet.run_until(fleet.now() + Duration::from_millis(20));
        assert!(fleet.all_see("n2", MemberStatus::Left));
        fleet.run_until(fleet.now() + Duration::from_secs(20));
        assert!(
            fleet.all_see("n2", MemberStatus::Left),
            "left turned into something else"
        );
    }

    /// Gives node `index` a record too big to ride a broadcast whole, so a goodbye cannot
    /// reach anyone in the record that says `leaving` (it is announced by version, and the
    /// leaver is gone before anyone pulls it): only the goodbye itself tells `left`.
    fn give_a_big_record(fleet: &mut SimFleet, index: usize) {
        let names: Vec<String> = (0..40).map(|i| format!("database_{i:03}")).collect();
        let now = fleet.now();
        fleet.update_record(index, now, |r| r.databases = names);
        fleet.run_until(fleet.now() + Duration::from_secs(5));
    }

    /// A node that stops before it has heard of a newcomer does not tell it goodbye, but the
    /// newcomer already knows it (the join's view listed it). Those who heard the goodbye
    /// pass it on, since the leaver told fewer members than they know, and the newcomer
    /// lists it `left`, not `dead`.
    #[test]
    fn a_goodbye_reaches_a_member_the_leaver_had_not_heard_of() {
        for big_record in [false, true] {
            let mut fleet = fleet(6, 21);
            if big_record {
                give_a_big_record(&mut fleet, 2);
            }
            let newcomer = fleet.start_node(1, Some(0));
            assert!(fleet.view(newcomer, "n2").is_some());
            fleet.leave(2);
            let left =
                fleet.run_until_true(Duration::from_millis(5), Duration::from_secs(2), |f| {
                    f.all_see("n2", MemberStatus::Left)
                });
            assert!(
                left.is_some(),
                "big record {big_record}: n2 is {:?} on the newcomer",
                fleet.view(newcomer, "n2").map(|m| m.status)
            );
            let passed: u64 = fleet
                .running()
                .map(|i| fleet.nodes[i].engine.stats().goodbyes_passed_on)
                .sum();
            assert!(passed > 0, "nobody passed the goodbye on");
        }
    }

    /// The other order: a node that joined through one member and stopped at once told that
    /// member goodbye; the others may hear the goodbye (passed on) before the news of its
    /// join. They keep it, and list the node `left` when the join arrives (not `alive` until
    /// a probe fails, then `dead`).
    #[test]
    fn a_goodbye_heard_before_the_join_is_kept_for_it() {
        let mut fleet = fleet(4, 22);
        let newcomer = fleet.start_node(1, None);
        let id = fleet.nodes[newcomer].engine.id().clone();
        fleet.crash(newcomer);
        // Its goodbye to the one member it knew (node 0), which no one has heard of yet.
        let told = super::super::id::identities_hash(std::iter::once(fleet.nodes[0].engine.id()));
        let goodbye = super::super::packet::encode_leaving(&super::super::packet::Leaving {
            node_id: id.node_id.clone(),
            generation: id.generation,
            told: Some(told),
        });
        let now = fleet.now();
        fleet.deliver(0, id.endpoint, &goodbye, now);
        fleet.run_until(fleet.now() + Duration::from_millis(20));
        // Now its join reaches the fleet (node 1 had taken it in over QUIC).
        let now = fleet.now();
        fleet.nodes[1].engine.introduce(now, id.clone(), None);
        fleet.flush(1);
        // Never listed alive on the way (until a probe of it failed, a second or more).
        let left = fleet.run_until_true(Duration::from_millis(5), Duration::from_secs(3), |f| {
            let listed_alive = (0..4).find(|&i| {
                f.view(i, &id.node_id)
                    .is_some_and(|m| m.status == MemberStatus::Alive)
            });
            assert_eq!(listed_alive, None, "listed alive at {:?}", f.now());
            f.all_see(&id.node_id, MemberStatus::Left)
        });
        assert!(
            left.is_some(),
            "seen as {:?}",
            (0..4)
                .map(|i| fleet.view(i, &id.node_id).map(|m| m.status))
                .collect::<Vec<_>>()
        );
        // And no late join turns it alive, no probe turns it dead. (A member that first
        // heard of it as down, never alive, forgets it when foca does.)
        for _ in 0..40 {
            fleet.run_until(fleet.now() + Duration::from_millis(500));
            for i in 0..4 {
                let status = fleet.view(i, &id.node_id).map(|m| m.status);
                assert!(
                    matches!(status, None | Some(MemberStatus::Left)),
                    "n{i} lists it {status:?} at {:?}",
                    fleet.now()
                );
            }
        }
    }

    /// In a steady fleet every member was told first-hand: nobody passes a goodbye on.
    #[test]
    fn a_goodbye_to_a_steady_fleet_is_not_passed_on() {
        let mut fleet = fleet(8, 23);
        fleet.run_until(fleet.now() + Duration::from_secs(10));
        fleet.leave(3);
        fleet.run_until(fleet.now() + Duration::from_secs(2));
        assert!(fleet.all_see("n3", MemberStatus::Left));
        for i in fleet.running().collect::<Vec<_>>() {
            assert_eq!(fleet.nodes[i].engine.stats().goodbyes_passed_on, 0, "n{i}");
        }
    }

    #[test]
    fn a_restart_is_the_same_row_with_a_newer_generation_and_the_old_one_stays_gone() {
        let mut fleet = fleet(5, 4);
        fleet.crash(4);
        fleet.run_until(fleet.now() + Duration::from_millis(300));
        fleet.start_at(4, "n4".into(), 2, sim_addr(4), Some(0));
        let took = fleet.run_until_true(STEP, Duration::from_secs(10), |f| {
            (0..5).all(|i| {
                f.view(i, "n4")
                    .is_some_and(|m| m.generation == 2 && m.status == MemberStatus::Alive)
            })
        });
        assert!(took.is_some(), "the restart was not seen alive everywhere");
        fleet.run_until(fleet.now() + Duration::from_secs(20));
        for i in 0..5 {
            let rows: Vec<Member> = fleet.nodes[i]
                .engine
                .members()
                .into_iter()
                .filter(|m| m.node_id == "n4")
                .collect();
            assert_eq!(rows.len(), 1);
            assert_eq!(
                (rows[0].generation, rows[0].status),
                (2, MemberStatus::Alive),
                "seen by n{i}"
            );
        }
    }

    #[test]
    fn a_move_to_a_new_address_is_followed_by_node_id() {
        let mut fleet = fleet(4, 5);
        fleet.crash(3);
        let new_addr = SocketAddr::from(([10, 9, 9, 9], 19091));
        fleet.start_at(3, "n3".into(), 2, new_addr, Some(0));
        let took = fleet.run_until_true(STEP, Duration::from_secs(10), |f| {
            (0..4).all(|i| {
                f.view(i, "n3")
                    .is_some_and(|m| m.endpoint == new_addr && m.status == MemberStatus::Alive)
            })
        });
        assert!(took.is_some());
    }

    #[test]
    fn a_record_change_reaches_everyone_in_a_few_periods() {
        let mut fleet = fleet(16, 6);
        let now = fleet.now();
        fleet.nodes[5]
            .engine
            .update_record(now, |r| r.databases = vec!["sales".into()])
            .unwrap();
        // 2 x log2(16) = 8 probe periods.
        let bound = timings().probe_interval * 8;
        let took = fleet.run_until_true(STEP, bound, |f| {
            (0..16).all(|i| f.view(i, "n5").is_some_and(|m| m.databases == ["sales"]))
        });
        assert!(took.is_some(), "not everywhere within {bound:?}");
    }

    #[test]
    fn a_change_missed_during_a_partition_is_repaired_by_anti_entropy() {
        let mut fleet = fleet(5, 7);
        fleet.nodes[4].group = 1;
        let now = fleet.now();
        fleet.nodes[1]
            .engine
            .update_record(now, |r| r.databases = vec!["late".into()])
            .unwrap();
        // Long enough for the broadcast to be spent on the others, and for each side to
        // declare the other dead.
        fleet.run_until(now + Duration::from_secs(30));
        assert!(fleet.view(4, "n1").is_some_and(|m| m.databases.is_empty()));
        fleet.nodes[4].group = 0;
        let took = fleet.run_until_true(STEP, Duration::from_secs(180), |f| {
            (0..5).all(|i| {
                (0..5).all(|j| {
                    f.view(i, &format!("n{j}"))
                        .is_some_and(|m| m.status == MemberStatus::Alive)
                })
            }) && f.view(4, "n1").is_some_and(|m| m.databases == ["late"])
        });
        assert!(
            took.is_some(),
            "not repaired: n4 sees n1 as {:?}",
            fleet.view(4, "n1")
        );
    }

    #[test]
    fn a_record_too_big_for_a_datagram_is_pulled_whole() {
        let mut fleet = fleet(4, 8);
        let names: Vec<String> = (0..3000).map(|i| format!("{i:0>64}")).collect();
        let now = fleet.now();
        fleet.nodes[2]
            .engine
            .update_record(now, |r| r.databases = names.clone())
            .unwrap();
        let took = fleet.run_until_true(STEP, Duration::from_secs(20), |f| {
            (0..4).all(|i| f.view(i, "n2").is_some_and(|m| m.databases.len() == 3000))
        });
        assert!(took.is_some(), "not every database arrived");
        // Beyond the limit, the change is refused, and the record stays as it was.
        let too_many: Vec<String> = (0..10_000).map(|i| format!("{i:0>64}")).collect();
        let refused = fleet.nodes[2]
            .engine
            .update_record(now, |r| r.databases = too_many);
        assert!(matches!(
            refused,
            Err(super::super::RecordError::TooLarge { .. })
        ));
        assert_eq!(fleet.nodes[2].engine.own_record().databases.len(), 3000);
    }

    #[test]
    fn same_seed_same_run() {
        let run = |seed| {
            let mut fleet = fleet(6, seed);
            fleet.crash(2);
            fleet.run_until(fleet.now() + Duration::from_secs(10));
            (fleet.datagrams_sent, fleet.bytes_sent, fleet.now())
        };
        assert_eq!(run(42), run(42));
    }

    #[test]
    fn an_unknown_source_gets_no_more_bytes_than_it_sent() {
        let mut fleet = fleet(3, 9);
        // An announce from an identity nobody knows: foca answers with a feed of members.
        let mut stranger = Engine::new(
            MemberId::new("stranger", 1, SocketAddr::from(([10, 200, 0, 1], 9091))),
            Record::default(),
            timings(),
            1,
            fleet.now(),
        );
        let _ = stranger.take_output();
        stranger.announce(fleet.now(), fleet.nodes[0].engine.id().clone());
        let out = stranger.take_output();
        let (_, announce) = out.datagrams.first().expect("an announce").clone();
        let now = fleet.now();
        let target = &mut fleet.nodes[0].engine;
        let _ = target.take_output();
        target
            .handle_datagram(
                now,
                SocketAddr::from(([10, 200, 0, 1], 9091)),
                None,
                &announce,
            )
            .unwrap();
        let answered = target.take_output().datagram_bytes();
        assert!(
            answered <= announce.len(),
            "answered {answered} to {} bytes",
            announce.len()
        );
        // What a stranger's datagram makes news of (here its `Alive`, which brings it in) is
        // gossiped at once: to members, but also to it. That counts as the answer too (the
        // fuzzer found 97 bytes sent for 34).
        let forged = SocketAddr::from(([10, 200, 0, 2], 9091));
        let alive = super::super::packet::encode_alive(&super::super::packet::Alive {
            member: MemberId::new("stranger2", 1, forged),
            incarnation: 1,
        });
        let now = now + Duration::from_secs(1);
        let target = &mut fleet.nodes[0].engine;
        let _ = target.handle_datagram(now, forged, None, &alive);
        let answered = target.take_output().datagram_bytes();
        assert!(
            answered <= alive.len(),
            "answered {answered} to {} bytes",
            alive.len()
        );
    }

    /// A datagram of a member, captured and sent again from a forged source, opens (the
    /// seal's replay guard is per source) but neither moves where the member is reached nor
    /// is answered there, nor with more than it sent; the member's next datagram, from a new
    /// address, moves it, and is answered in full.
    #[test]
    fn a_replay_from_a_forged_source_is_not_answered_there() {
        let mut fleet = fleet(3, 12);
        let now = fleet.now();
        let member = fleet.nodes[1].engine.id().clone();
        let captured = announce_of(&mut fleet, 1, 0);
        let stamp = |seq| Some(SenderStamp { epoch: 1, seq });
        let engine = &mut fleet.nodes[0].engine;
        let _ = engine.take_output();
        engine
            .handle_datagram(now, member.endpoint, stamp(100), &captured)
            .unwrap();
        let _ = engine.take_output();

        let forged = SocketAddr::from(([10, 200, 0, 9], 9091));
        engine
            .handle_datagram(now, forged, stamp(100), &captured)
            .unwrap();
        let answers = engine.take_output();
        assert_eq!(engine.route(member.endpoint), member.endpoint);
        let to_forged: usize = answers
            .datagrams
            .iter()
            .filter(|(to, _)| *to == forged)
            .map(|(_, d)| d.len())
            .sum();
        assert_eq!(to_forged, 0, "answered the forged source");
        assert!(
            answers.datagram_bytes() <= captured.len(),
            "answered a source not heard from with more than it sent"
        );

        let moved = SocketAddr::from(([10, 200, 0, 10], 9091));
        engine
            .handle_datagram(now, moved, stamp(101), &captured)
            .unwrap();
        assert_eq!(engine.route(member.endpoint), moved);
        let answers = engine.take_output().datagrams;
        assert!(answers.iter().any(|(to, _)| *to == moved), "{answers:?}");
        assert!(answers.iter().all(|(to, _)| *to != member.endpoint));
    }

    /// Anti-entropy of liveness: node 0 hears from a peer that two members it holds alive
    /// are dead (as if it had missed that news). The one that went silent (cut off: no
    /// closed port tells on it) is declared dead by node 0 before anyone else finds out by
    /// probing; the one that runs answers its suspicion and stays alive everywhere.
    #[test]
    fn a_member_a_peer_holds_dead_is_suspected_here_and_dead_only_if_silent() {
        let mut fleet = fleet(30, 13);
        let now = fleet.now();
        let (crashed, running) = (29, 2);
        fleet.nodes[crashed].group = 1;
        let gone: Vec<GoneMember> = [crashed, running]
            .iter()
            .map(|&i| GoneMember {
                id: fleet.nodes[i].engine.id().clone(),
                left: false,
            })
            .collect();
        let peer = fleet.nodes[1].addr;
        fleet.nodes[0].engine.handle_gone(now, peer, &gone);
        assert_eq!(fleet.nodes[0].engine.stats().missed_news_repaired, 2);

        let dead = |f: &SimFleet, observer: usize| {
            f.view(observer, &sim_node_id(crashed))
                .is_some_and(|m| m.status == MemberStatus::Dead)
        };
        // In steps shorter than the network's 1 ms: node 0 gossips the death on at once.
        let first =
            fleet.run_until_true(Duration::from_micros(500), Duration::from_secs(10), |f| {
                f.running().any(|i| dead(f, i))
            });
        assert!(first.is_some(), "nobody declared the silent node dead");
        let first_to_know: Vec<usize> = fleet
            .running()
            .filter(|&i| i != crashed && dead(&fleet, i))
            .collect();
        assert_eq!(first_to_know, vec![0], "node 0 was not the first to know");
        // Cut off, it would list the others dead in time: it stops here.
        fleet.crash(crashed);
        assert!(
            !watch_gone(
                &mut fleet,
                Duration::from_secs(15),
                &sim_node_id(running),
                running
            ),
            "a running member reported dead by a peer was declared dead"
        );
    }

    /// A member node 0 holds suspect only from gossip (foca times out only the suspicions
    /// its own probes raise), whose death node 0 then missed: a peer that holds it dead has
    /// it suspected here with a timeout of its own, so node 0 declares it dead first, rather
    /// than listing it alive until its probes come round to it.
    #[test]
    fn a_suspect_heard_of_whose_death_was_missed_is_declared_dead_here() {
        let mut fleet = fleet(30, 15);
        let now = fleet.now();
        let crashed = 29;
        fleet.nodes[crashed].group = 1;
        let id = fleet.nodes[crashed].engine.id().clone();
        fleet.nodes[0].engine.hear_suspicion(now, &id);
        let status = |f: &SimFleet, observer: usize| {
            f.view(observer, &sim_node_id(crashed)).map(|m| m.status)
        };
        assert_eq!(status(&fleet, 0), Some(MemberStatus::Alive));
        let peer = fleet.nodes[1].addr;
        let gone = [GoneMember { id, left: false }];
        fleet.nodes[0].engine.handle_gone(now, peer, &gone);
        assert_eq!(fleet.nodes[0].engine.stats().missed_news_repaired, 1);

        let first =
            fleet.run_until_true(Duration::from_micros(500), Duration::from_secs(10), |f| {
                f.running()
                    .any(|i| status(f, i) == Some(MemberStatus::Dead))
            });
        assert!(first.is_some(), "nobody declared the silent node dead");
        let first_to_know: Vec<usize> = fleet
            .running()
            .filter(|&i| i != crashed && status(&fleet, i) == Some(MemberStatus::Dead))
            .collect();
        assert_eq!(first_to_know, vec![0], "node 0 was not the first to know");
    }

    /// Two nodes whose digests differ while their records agree ask each other for the
    /// members they hold gone.
    #[test]
    fn versions_that_explain_nothing_ask_for_the_gone() {
        let mut fleet = fleet(3, 14);
        let now = fleet.now();
        let peer = fleet.nodes[1].addr;
        let versions = fleet.nodes[1].engine.versions();
        let engine = &mut fleet.nodes[0].engine;
        let _ = engine.take_output();
        engine.handle_versions(now, peer, &versions);
        assert_eq!(engine.take_output().pulls, vec![Pull::Gone { from: peer }]);
    }

    /// A missed join found by anti-entropy: node 0 gets, in the answer to a records pull,
    /// the record of a node it has never heard of (one that runs, alone). It knocks on that
    /// node's door, and from then on both know each other, and the rest of the fleet learns
    /// of it by gossip.
    #[test]
    fn a_record_of_a_node_never_heard_of_brings_the_two_together() {
        let mut fleet = fleet(4, 15);
        let stranger = fleet.start_node(1, None);
        let stranger_id = fleet.nodes[stranger].engine.id().node_id.clone();
        let record = fleet.nodes[stranger]
            .engine
            .records_for(std::slice::from_ref(&stranger_id));
        assert_eq!(record.len(), 1);
        fleet.run_until(fleet.now() + Duration::from_secs(5));
        assert!(
            fleet.view(0, &stranger_id).is_none(),
            "known before the pull"
        );

        let now = fleet.now();
        let peer = fleet.nodes[1].addr;
        fleet.nodes[0]
            .engine
            .handle_records(now, Some(peer), record);
        fleet.flush(0);
        let met = fleet.run_until_true(STEP, Duration::from_secs(10), |f| {
            (0..5).all(|i| f.all_see(&sim_node_id(i), MemberStatus::Alive))
        });
        assert!(met.is_some(), "the stranger and the fleet never met");
    }

    /// Datagrams sent per running node per second over `span`.
    fn datagrams_per_node_per_s(fleet: &mut SimFleet, span: Duration) -> f64 {
        let before = fleet.datagrams_sent;
        fleet.run_until(fleet.now() + span);
        let running = fleet.running().count() as f64;
        (fleet.datagrams_sent - before) as f64 / running / span.as_secs_f64()
    }

    /// How long `news` (made on a steady fleet of `n`) takes to reach every member, by
    /// `reached`: the median over 6 seeds, and every seed's time.
    fn news_reaches_all(
        n: usize,
        news: impl Fn(&mut SimFleet) -> String,
        reached: impl Fn(&SimFleet, usize, &str) -> bool,
    ) -> (Duration, Vec<Duration>) {
        let mut took = Vec::new();
        for seed in 1..=6 {
            let mut fleet = fleet_with(Timings::default(), n, seed);
            // The joins' broadcasts are spent: nothing else rides the gossip.
            fleet.run_until(fleet.now() + Duration::from_secs(30));
            let subject = news(&mut fleet);
            let found =
                fleet.run_until_true(Duration::from_millis(5), Duration::from_secs(5), |f| {
                    (0..n).all(|i| reached(f, i, &subject))
                });
            took.push(found.expect("the news never reached everyone"));
        }
        took.sort();
        (took[took.len() / 2], took)
    }

    /// News is gossiped on as it arrives (`Engine::spread_news`): a node that joins a steady
    /// fleet through node 0 is listed by every member within a few round trips, not the
    /// several gossip ticks a hop waited for before (half of a 200 ms tick on average).
    #[test]
    fn a_join_reaches_a_steady_fleet_in_round_trips_not_gossip_ticks() {
        let (median, took) = news_reaches_all(
            12,
            |fleet| sim_node_id(fleet.start_node(1, Some(0))),
            |f, i, newcomer| {
                f.view(i, newcomer)
                    .is_some_and(|m| m.status == MemberStatus::Alive)
            },
        );
        assert!(
            median <= Duration::from_millis(100),
            "a join reached all after {took:?}"
        );
    }

    /// The same for a record change (CREATE DATABASE on one node).
    #[test]
    fn a_record_change_reaches_a_steady_fleet_in_round_trips_not_gossip_ticks() {
        let (median, took) = news_reaches_all(
            12,
            |fleet| {
                let now = fleet.now();
                fleet.nodes[5]
                    .engine
                    .update_record(now, |r| r.databases = vec!["sales".into()])
                    .unwrap();
                sim_node_id(5)
            },
            |f, i, changed| f.view(i, changed).is_some_and(|m| m.databases == ["sales"]),
        );
        // One node tells it first (a join is told by the seed and the newcomer both): the few
        // the first two hops miss hear it at the next tick. Tick by tick it took 355-555 ms.
        assert!(
            median <= Duration::from_millis(250),
            "a change reached all after {took:?}"
        );
    }

    /// A bigger fleet probes less often (`Timings::probe_interval_for`): a node of 40 sends
    /// about 1 / log10(40) = 0.62 of the datagrams a node of 10 sends, once both are steady.
    #[test]
    fn a_node_of_a_bigger_fleet_probes_less_often() {
        let mut per_node = Vec::new();
        for n in [10, 40] {
            let mut fleet = fleet_with(Timings::default(), n, 3);
            // The joins' broadcasts are spent first.
            fleet.run_until(fleet.now() + Duration::from_secs(60));
            per_node.push(datagrams_per_node_per_s(
                &mut fleet,
                Duration::from_secs(60),
            ));
        }
        let (small, big) = (per_node[0], per_node[1]);
        assert!(
            big < small * 0.75 && big > small * 0.5,
            "{big:.2} datagrams/s per node at 40, {small:.2} at 10"
        );
    }

    /// A member dead for minutes is knocked on seldom: the fleet around it sends about what
    /// a fleet without it sends (knocking every 2 s on every node added half a datagram a
    /// second per node).
    #[test]
    fn a_member_dead_for_long_is_knocked_on_seldom() {
        let mut healthy = fleet(9, 16);
        let mut with_a_death = fleet(10, 16);
        with_a_death.crash(9);
        healthy.run_until(healthy.now() + Duration::from_secs(90));
        with_a_death.run_until(with_a_death.now() + Duration::from_secs(90));
        assert!(with_a_death.all_see("n9", MemberStatus::Dead));
        let span = Duration::from_secs(120);
        let base = datagrams_per_node_per_s(&mut healthy, span);
        let with_dead = datagrams_per_node_per_s(&mut with_a_death, span);
        assert!(
            with_dead - base < 0.1,
            "{with_dead:.2} datagrams/s per node beside a long-dead member, {base:.2} without"
        );
    }

    #[test]
    fn halves_split_by_a_partition_agree_again_soon_after_it_heals() {
        let mut fleet = fleet(6, 10);
        for i in 3..6 {
            fleet.nodes[i].group = 1;
        }
        fleet.run_until(fleet.now() + Duration::from_secs(20));
        assert!(fleet
            .view(0, "n4")
            .is_some_and(|m| m.status == MemberStatus::Dead));
        for node in &mut fleet.nodes {
            node.group = 0;
        }
        let healed = fleet.run_until_true(STEP, Duration::from_secs(30), |f| {
            (0..6).all(|i| f.all_see(&format!("n{i}"), MemberStatus::Alive))
        });
        assert!(healed.is_some(), "not healed within 30 s");
    }

    /// Runs the fleet for `span`, looking every 10 ms; the first (observer, subject) pair
    /// where a running node lists a running node anything but alive.
    fn first_not_alive(fleet: &mut SimFleet, span: Duration) -> Option<(usize, usize)> {
        let until = fleet.now() + span;
        while fleet.now() < until {
            let next = fleet.now() + Duration::from_millis(10);
            fleet.run_until(next);
            let running: Vec<usize> = fleet.running().collect();
            for &observer in &running {
                for &subject in &running {
                    let seen = fleet.view(observer, &sim_node_id(subject));
                    if seen.is_none_or(|m| m.status != MemberStatus::Alive) {
                        return Some((observer, subject));
                    }
                }
            }
        }
        None
    }

    /// The Docker split test's fleet: a master on two networks, advertising its address on
    /// the first, and two clients on each. The clients on the second network reach the
    /// master only at its address there (where its datagrams to them come from): they must
    /// answer it there, or the master and they declare each other dead over and over. Cut
    /// from the second network and reconnected, it takes them back for good.
    #[test]
    fn a_master_on_two_networks_is_reached_from_both_and_survives_a_split() {
        let mut fleet = SimFleet::new(timings(), 31);
        let master = fleet.start_node(1, None);
        let master_on_b = SocketAddr::from(([10, 99, 0, 1], 9091));
        fleet.add_home(master, master_on_b, 1);
        for i in 1..5 {
            let index = fleet.start_node(1, None);
            fleet.nodes[index].group = u32::from(i >= 3);
            fleet.nodes[index].seed = Some(master);
            fleet.join(index, master);
        }
        let formed = fleet.run_until_true(STEP, Duration::from_secs(30), |f| {
            (0..5).all(|i| f.all_see(&sim_node_id(i), MemberStatus::Alive))
        });
        assert!(formed.is_some(), "the fleet did not form");
        assert_eq!(
            first_not_alive(&mut fleet, Duration::from_secs(60)),
            None,
            "a live node was listed not alive (observer, subject) while nothing failed"
        );

        fleet.leave_second_home(master);
        let split = fleet.run_until_true(STEP, Duration::from_secs(30), |f| {
            (3..5).all(|b| {
                f.view(master, &sim_node_id(b)).map(|m| m.status) == Some(MemberStatus::Dead)
            })
        });
        assert!(
            split.is_some(),
            "the master never listed the cut clients dead"
        );
        fleet.run_until(fleet.now() + Duration::from_secs(15));

        fleet.add_home(master, master_on_b, 1);
        let healed = fleet.run_until_true(STEP, Duration::from_secs(30), |f| {
            (0..5).all(|i| f.all_see(&sim_node_id(i), MemberStatus::Alive))
        });
        assert!(healed.is_some(), "not healed within 30 s");
        assert_eq!(
            first_not_alive(&mut fleet, Duration::from_secs(60)),
            None,
            "a live node was listed not alive (observer, subject) after the heal"
        );
    }

    #[test]
    fn ten_percent_loss_and_100ms_latency_report_no_live_node_dead() {
        let mut fleet = fleet(5, 11);
        fleet.net.loss = 0.10;
        fleet.net.latency = Duration::from_millis(100);
        let start = fleet.now();
        while fleet.now() < start + Duration::from_secs(300) {
            let next = fleet.now() + Duration::from_millis(500);
            fleet.run_until(next);
            for i in 0..5 {
                assert!(
                    fleet.all_see(&format!("n{i}"), MemberStatus::Alive),
                    "n{i} reported dead at {:?}",
                    fleet.now() - start
                );
            }
        }
    }

    #[test]
    fn a_node_that_joins_by_dialling_a_newcomer_spreads_it_to_everyone() {
        // ADD CLIENT: the master joins through the client, not the other way round.
        let mut fleet = fleet(4, 12);
        let newcomer = fleet.start_node(1, None);
        fleet.join(0, newcomer);
        let took = fleet.run_until_true(STEP, Duration::from_secs(10), |f| {
            f.all_see(&format!("n{newcomer}"), MemberStatus::Alive)
        });
        assert!(took.is_some(), "the others never heard of the newcomer");
    }

    #[test]
    fn a_node_that_left_is_not_reported_joined_when_another_node_joins() {
        let mut fleet = fleet(4, 13);
        fleet.leave(2);
        fleet.run_until(fleet.now() + Duration::from_secs(2));
        let before = fleet.nodes[0].engine.members();
        fleet.start_node(1, Some(0));
        fleet.run_until(fleet.now() + Duration::from_secs(5));
        let after = fleet.nodes[0].engine.members();
        let changes = super::super::diff_members(&before, &after);
        assert!(
            changes.iter().any(
                |c| matches!(c, super::super::MembershipChange::Joined(m) if m.node_id == "n4")
            ),
            "the newcomer joins: {changes:?}"
        );
        assert!(
            !changes.iter().any(
                |c| matches!(c, super::super::MembershipChange::Joined(m) if m.node_id == "n2")
            ),
            "the node that left is not reported joined: {changes:?}"
        );
        // The nodes that saw it leave still list it `left` (the newcomer never knew it).
        for observer in [0, 1, 3] {
            assert_eq!(
                fleet.view(observer, "n2").map(|m| m.status),
                Some(MemberStatus::Left)
            );
        }
    }

    /// What SWIM's suspicion is for: a node whose acks were lost for a moment hears that it
    /// is suspected (the engine tells it directly) and refutes before the timeout, and is not
    /// declared dead. foca 2.0.0 sent its "you are down" courtesy message at the timeout even
    /// for a refuted suspicion, and the refuter rejoined under a renewed identity: under 5-10 %
    /// loss nearly every failed probe ended that way (BENCHMARKS.md, the simulator's section).
    #[test]
    fn a_suspect_that_hears_of_its_suspicion_is_not_declared_dead() {
        // A suspicion long enough to outlast the outage: one longer than the suspicion is a
        // crash to the suspect's peers.
        let timings = Timings {
            suspect_timeout: Duration::from_secs(3),
            ..timings()
        };
        let mut fleet = fleet_with(timings, 5, 5);
        fleet.nodes[2].loss_out = 1.0;
        // Until a probe of it fails (when depends on the probe order), and a second more.
        let told = fleet.run_until_true(Duration::from_millis(10), Duration::from_secs(10), |f| {
            f.nodes[2].engine.stats().suspected_in > 0
        });
        assert!(told.is_some(), "the suspect was never told");
        fleet.run_until(fleet.now() + Duration::from_secs(1));
        fleet.nodes[2].loss_out = 0.0;
        fleet.run_until(fleet.now() + Duration::from_secs(10));
        let stats = fleet.nodes[2].engine.stats();
        assert_eq!(stats.rejoins, 0, "declared dead although it refuted");
        assert!(fleet.all_see("n2", MemberStatus::Alive));
    }

    /// A crash is a crash: the suspecter asks the suspect, hears nothing, and declares it
    /// once its suspicion runs out, with no patience added for the one probe that failed
    /// (that failure blames its target, not the suspecter). With the LAN defaults: probed
    /// within a period or two, suspected at once (its host says its port is closed), dead one
    /// short suspicion later.
    #[test]
    fn a_crash_is_declared_after_one_period_and_one_suspicion_timeout() {
        let t = timings();
        let mut took = Vec::new();
        for seed in 1..=5 {
            let mut fleet = fleet(8, seed);
            fleet.crash(5);
            let limit = Duration::from_secs(30);
            let found = fleet.run_until_true(Duration::from_millis(20), limit, |f| {
                f.all_see("n5", MemberStatus::Dead)
            });
            took.push(found.expect("a crash was never declared"));
        }
        let mean = took.iter().sum::<Duration>() / took.len() as u32;
        // First probe of the crashed node: each of the 7 others picks it in a period with odds
        // 1/7, so someone does after 1 / (1 - (6/7)^7) = 1.5 periods on average; its host
        // answers at once that nothing listens, and it is dead one short suspicion timeout
        // later. Waiting for the probe to fail (a period), or the silent timeout, fails this.
        let bound = t.probe_interval * 2 + t.port_closed_timeout_for(8);
        assert!(
            mean <= bound,
            "crash to dead everywhere took {took:?}, mean over {bound:?}"
        );
    }

    /// A peer that probes an older identity of a node (here its previous generation, as
    /// after a restart the peer missed) is told the current one, and holds that alive: foca
    /// alone drops such a probe unanswered, and the peer would declare the node dead.
    #[test]
    fn a_probe_of_an_older_identity_is_answered_with_the_current_one() {
        use crate::membership::packet;
        use foca::{Codec, Header, Message, PostcardCodec};
        let mut fleet = fleet(8, 17);
        let node = fleet.nodes[5].engine.id().clone();
        let older = MemberId::new(node.node_id.clone(), node.generation - 1, node.endpoint);
        let prober = fleet.nodes[0].engine.id().clone();
        let header = Header {
            src: prober.clone(),
            src_incarnation: 0,
            dst: older,
            message: Message::Ping(7),
        };
        let mut ping = Vec::new();
        PostcardCodec.encode_header(&header, &mut ping).unwrap();
        ping.extend_from_slice(&0u16.to_be_bytes());
        let ping = packet::encode_swim(&ping);
        let answers = answers_to(&mut fleet, 5, prober.endpoint, &ping);
        let announced = answers.iter().any(|d| match packet::decode(d) {
            Ok(packet::Packet::Swim(data)) => {
                let mut data = data;
                PostcardCodec
                    .decode_header(&mut data)
                    .is_ok_and(|h: Header<MemberId>| {
                        h.message == Message::Announce && h.src == node && h.dst == prober
                    })
            }
            _ => false,
        });
        assert!(announced, "the prober was not told the current identity");

        // Once per probe period: a second probe of the old identity is not answered again.
        let again = answers_to(&mut fleet, 5, prober.endpoint, &ping);
        assert!(again.is_empty(), "{again:?}");
    }

    /// ADD CLIENT's hello: a node known by its address alone (started with no seed) is alive
    /// on the node that said hello, with its record, one round trip later, and the sayer on
    /// it; the rest of the fleet hears of it as of any join.
    #[test]
    fn a_hello_to_an_address_makes_both_sides_alive_in_one_round_trip() {
        let mut fleet = fleet(4, 18);
        let client = fleet.start_node(1, None);
        let client_id = sim_node_id(client);
        fleet.say_hello(0, client);
        // Latency each way, nothing else: no timer fires, no QUIC join is made.
        let round_trip = fleet.now() + fleet.net.latency * 2;
        fleet.run_until(round_trip);
        let seen = fleet.view(0, &client_id).expect("the client is listed");
        assert_eq!(seen.status, MemberStatus::Alive);
        assert!(!seen.api.is_empty(), "its record came with it: {seen:?}");
        let master = fleet
            .view(client, "n0")
            .expect("the sayer is listed on the client");
        assert_eq!(master.status, MemberStatus::Alive);
        assert!(!master.api.is_empty(), "{master:?}");
        let everyone = fleet.run_until_true(STEP, Duration::from_secs(5), |f| {
            f.all_see(&client_id, MemberStatus::Alive)
                && (0..4).all(|i| f.all_see(&sim_node_id(i), MemberStatus::Alive))
        });
        assert!(everyone.is_some(), "the fleet did not take the client in");
    }

    /// The record a hello hands over is gossiped with the client's arrival: no node pulls it
    /// over QUIC (that was one connection per node for every client a master added). The
    /// client here is on a network of its own, which only the master is on too, so the
    /// master's gossip is the only way its record can reach the others without a pull.
    #[test]
    fn a_record_handed_over_in_a_hello_reaches_the_fleet_in_gossip() {
        let n = 8;
        let mut fleet = fleet(n, 21);
        let client = fleet.start_node(1, None);
        fleet.nodes[client].group = 1;
        fleet.add_home(0, sim_addr(50), 1);
        let client_id = sim_node_id(client);
        let pulls = |fleet: &SimFleet| -> u64 {
            (0..n)
                .map(|i| {
                    let stats = fleet.nodes[i].engine.stats();
                    stats.record_batches + stats.owner_pulls + stats.anti_entropy_pulls
                })
                .sum()
        };
        let before = pulls(&fleet);
        fleet.say_hello(0, client);
        let everyone_holds_it = fleet.run_until_true(STEP, Duration::from_secs(5), |f| {
            (0..n).all(|o| f.view(o, &client_id).is_some_and(|m| !m.api.is_empty()))
        });
        assert!(
            everyone_holds_it.is_some(),
            "the fleet did not get the client's record"
        );
        assert_eq!(pulls(&fleet), before, "records were pulled");
    }

    /// Never amplify: a hello that was not padded (a replay from a forged source, say) is
    /// answered with no more bytes than it holds, and the answer is then only the version of
    /// the record, not its body.
    #[test]
    fn a_hello_is_answered_within_what_it_cost_its_sender() {
        use crate::membership::packet;
        let mut fleet = fleet(2, 19);
        // A record of some 500 bytes: more than a bare hello, less than a padded one.
        give_a_big_record(&mut fleet, 1);
        let answerer = fleet.nodes[1].engine.id().clone();
        let stranger = MemberId::new("stranger-with-a-long-name", 1, sim_addr(40));
        let hello = packet::Hello {
            member: stranger.clone(),
            record: crate::membership::record::RecordUpdate {
                node_id: stranger.node_id.clone(),
                generation: 1,
                version: 1,
                owner_endpoint: stranger.endpoint,
                body: None,
            },
            answer: false,
        };
        for pad_to in [0, crate::membership::settings::MAX_PLAINTEXT] {
            let bytes = packet::encode_hello(&hello, pad_to);
            let answers = answers_to(&mut fleet, 1, stranger.endpoint, &bytes);
            let sent: usize = answers.iter().map(Vec::len).sum();
            assert!(
                sent <= bytes.len(),
                "{sent} bytes answered to {}",
                bytes.len()
            );
            let answer = answers.iter().find_map(|d| match packet::decode(d) {
                Ok(packet::Packet::Hello(h)) => Some(h),
                _ => None,
            });
            let answer = answer.expect("the hello was answered");
            assert!(answer.answer);
            assert_eq!(answer.member, answerer);
            assert_eq!(answer.record.body.is_some(), pad_to > 0, "{answer:?}");
        }
    }

    /// A member killed just after it was heard from: what it sent before its port was found
    /// closed does not count as hearing from it during the suspicion, so it is dead one
    /// short suspicion (and the last ask's wait) after that, not two.
    #[test]
    fn a_member_heard_from_just_before_its_port_closed_gets_one_short_suspicion() {
        let t = timings();
        let mut fleet = fleet(8, 16);
        let victim = 5;
        let id = fleet.nodes[victim].engine.id().clone();
        let now = fleet.now();
        let heard = announce_of(&mut fleet, victim, 0);
        fleet.crash(victim);
        let engine = &mut fleet.nodes[0].engine;
        engine
            .handle_datagram(now, id.endpoint, None, &heard)
            .unwrap();
        engine.handle_port_closed(now, id.endpoint);
        assert_eq!(engine.stats().suspected_on_closed_port, 1);

        let took = fleet
            .run_until_true(Duration::from_millis(10), Duration::from_secs(10), |f| {
                f.view(0, &sim_node_id(victim))
                    .is_some_and(|m| m.status == MemberStatus::Dead)
            })
            .expect("never declared dead");
        let bound = t.port_closed_timeout_for(8) + t.probe_timeout * 2;
        assert!(took <= bound, "dead after {took:?}, over {bound:?}");
    }

    /// Silence is not a closed port: a member cut off (or frozen: its socket stays open) is
    /// given the longer suspicion, and declared dead once it runs out.
    #[test]
    fn a_silent_member_is_given_the_longer_suspicion() {
        let t = timings();
        // In a fleet of 2 or 3 the suspecter probes the silent node again and again: each
        // failed probe starts another of foca's timers, and all must wait for the one
        // suspicion's end.
        for (n, seed) in [(2, 1), (3, 1), (3, 2), (8, 1), (8, 2), (8, 3)] {
            let mut fleet = fleet(n, seed);
            let cut = n - 1;
            fleet.nodes[cut].group = 1;
            let found =
                fleet.run_until_true(Duration::from_millis(20), Duration::from_secs(30), |f| {
                    dead_on_every_other(f, cut)
                });
            let took = found.expect("a cut-off member was never declared dead");
            // Its probe fails (most of a period), then the whole silent timeout runs.
            let earliest = t.suspect_timeout_for(n) + t.probe_interval / 2;
            assert!(
                took >= earliest,
                "N = {n}, seed {seed}: declared dead after {took:?}, before {earliest:?}"
            );
            assert!(
                fleet
                    .nodes
                    .iter()
                    .all(|node| node.engine.stats().ports_closed == 0),
                "a cut-off member's port told on it"
            );
        }
    }

    /// The paused observer: a process frozen for 3 s (SIGSTOP) keeps its socket open,
    /// so it is silent, not closed, and comes back before the silent suspicion runs out;
    /// when thawed, it declares no live peer dead either (its timers fired late: local
    /// health).
    #[test]
    fn a_process_frozen_for_3_s_is_not_declared_dead_nor_declares_others() {
        // In a fleet of 3 the suspecter probes the frozen node again and again: each failed
        // probe starts another of foca's timers, and all wait for the one suspicion's end.
        for (n, seed) in [
            (3, 1),
            (3, 2),
            (3, 3),
            (3, 4),
            (3, 5),
            (3, 6),
            (2, 1),
            (2, 2),
        ] {
            let mut fleet = fleet(n, seed);
            fleet.pause(1);
            let mut during = None;
            let thaw = fleet.now() + Duration::from_secs(3);
            while fleet.now() < thaw && during.is_none() {
                fleet.run_until(fleet.now() + Duration::from_millis(10));
                during = a_live_node_listed_dead(&fleet, usize::MAX).or_else(|| {
                    fleet
                        .running()
                        .find(|&i| {
                            fleet
                                .view(i, "n1")
                                .is_some_and(|m| m.status == MemberStatus::Dead)
                        })
                        .map(|observer| (observer, 1))
                });
            }
            fleet.resume(1);
            let mut after = None;
            let until = fleet.now() + Duration::from_secs(10);
            while fleet.now() < until && after.is_none() {
                fleet.run_until(fleet.now() + Duration::from_millis(10));
                after = a_live_node_listed_dead(&fleet, usize::MAX);
            }
            assert_eq!(
                during, None,
                "seed {seed}: (observer, subject) listed dead while frozen"
            );
            assert_eq!(
                after, None,
                "seed {seed}: (observer, subject) listed dead after the thaw"
            );
            assert_eq!(
                fleet.nodes[1].engine.stats().rejoins,
                0,
                "seed {seed}: the frozen node was declared dead"
            );
        }
    }

    /// A live suspect whose answers were lost for most of its suspicion answers the last
    /// ask, made one probe timeout before the end, and is not declared dead.
    #[test]
    fn a_suspect_whose_answers_were_lost_answers_the_last_ask() {
        let t = timings();
        let mut fleet = fleet(5, 11);
        fleet.nodes[2].loss_out = 1.0;
        let suspected =
            fleet.run_until_true(Duration::from_millis(10), Duration::from_secs(30), |f| {
                f.nodes[2].engine.stats().suspected_in > 0
            });
        assert!(suspected.is_some(), "nobody suspected the silent node");
        // Silent until just before the last ask of the first suspecter.
        let silent_for = t.suspect_timeout_for(5) - t.probe_timeout - Duration::from_millis(100);
        let mut seen_dead = watch_gone(&mut fleet, silent_for, "n2", 2);
        fleet.nodes[2].loss_out = 0.0;
        seen_dead |= watch_gone(&mut fleet, Duration::from_secs(10), "n2", 2);
        assert!(!seen_dead, "a live suspect was listed dead");
        assert_eq!(
            fleet.nodes[2].engine.stats().rejoins,
            0,
            "declared dead although it answered"
        );
        let asked: u64 = (0..5)
            .map(|i| fleet.nodes[i].engine.stats().suspects_asked)
            .sum();
        assert!(
            asked > 0,
            "no suspecter asked before the end of its suspicion"
        );
        assert!(
            fleet.nodes[2].engine.stats().alive_out > 0,
            "the suspect never answered"
        );
    }

    /// Runs the fleet for `span`, looking every 10 ms; whether any running node other than
    /// `except` listed `node_id` dead or left meanwhile.
    fn watch_gone(fleet: &mut SimFleet, span: Duration, node_id: &str, except: usize) -> bool {
        let mut seen = false;
        let until = fleet.now() + span;
        while fleet.now() < until {
            let next = fleet.now() + Duration::from_millis(10);
            fleet.run_until(next);
            seen |= fleet.running().filter(|&i| i != except).any(|i| {
                fleet
                    .view(i, node_id)
                    .is_some_and(|m| matches!(m.status, MemberStatus::Dead | MemberStatus::Left))
            });
        }
        seen
    }

    /// Node 1 and a process started with its id on the other side of a partition (node 6,
    /// later generation) meet when it heals: the later one keeps the id, node 1 stops, and
    /// from the heal on no running node lists the id `dead` or `left`.
    #[test]
    fn a_partition_that_heals_onto_two_holders_of_one_id_keeps_the_later_one() {
        let mut fleet = fleet(6, 21);
        let side = |i: usize| u32::from(i >= 3);
        fleet.partition(side);
        fleet.run_until(fleet.now() + Duration::from_secs(5));
        let twin = fleet.start_at(6, "n1".into(), 2, sim_addr(6), Some(3));
        fleet.nodes[twin].group = 1;
        fleet.run_until(fleet.now() + Duration::from_secs(20));
        for i in 3..=6 {
            assert_eq!(
                fleet.view(i, "n1").map(|m| (m.status, m.endpoint)),
                Some((MemberStatus::Alive, sim_addr(6))),
                "before the heal, node {i} sees the twin"
            );
        }
        fleet.heal();
        let gone_seen = watch_gone(&mut fleet, Duration::from_secs(30), "n1", 1);
        assert!(!gone_seen, "a running holder of n1 was listed dead or left");
        assert_eq!(
            fleet.nodes[1].engine.lost_id_to().map(|w| w.endpoint),
            Some(sim_addr(6))
        );
        assert!(!fleet.nodes[1].is_running(), "the earlier holder stopped");
        assert!(fleet.nodes[6].engine.lost_id_to().is_none());
        for i in fleet.running().collect::<Vec<_>>() {
            assert_eq!(
                fleet.view(i, "n1").map(|m| (m.status, m.endpoint)),
                Some((MemberStatus::Alive, sim_addr(6))),
                "node {i}"
            );
        }
    }

    /// Gossip about a later holder that has since crashed does not stop the node: it asks
    /// the claimant, hears nothing, and keeps its id.
    #[test]
    fn a_claim_by_a_holder_that_no_longer_runs_does_not_stop_the_node() {
        let mut fleet = fleet(6, 22);
        fleet.partition(|i| u32::from(i >= 3));
        fleet.run_until(fleet.now() + Duration::from_secs(5));
        let twin = fleet.start_at(6, "n1".into(), 2, sim_addr(6), Some(3));
        fleet.nodes[twin].group = 1;
        fleet.run_until(fleet.now() + Duration::from_secs(20));
        fleet.crash(twin);
        fleet.heal();
        fleet.run_until(fleet.now() + Duration::from_secs(60));
        assert!(fleet.nodes[1].is_running());
        assert!(fleet.nodes[1].engine.lost_id_to().is_none());
        let keeps = fleet.run_until_true(STEP, Duration::from_secs(30), |f| {
            f.running().all(|i| {
                f.view(i, "n1")
                    .is_some_and(|m| m.status == MemberStatus::Alive && m.endpoint == sim_addr(1))
            })
        });
        assert!(keeps.is_some(), "n1 is not alive at node 1 everywhere");
    }

    /// A member back from `dead` lately that then goes silent (cut off) gets the silent
    /// timeout: that is already about three short ones, and is not tripled on top (9 s).
    #[test]
    fn a_member_back_lately_that_goes_silent_is_not_given_three_silent_timeouts() {
        let t = timings();
        let mut fleet = fleet(6, 31);
        fleet.crash(3);
        fleet.run_until(fleet.now() + Duration::from_secs(10));
        fleet.restart(3);
        fleet.run_until(fleet.now() + Duration::from_secs(3));
        assert!(fleet.all_see("n3", MemberStatus::Alive));
        fleet.nodes[3].group = 1;
        let silent = fleet
            .run_until_true(STEP, Duration::from_secs(60), |f| {
                (0..6).filter(|&i| i != 3).any(|i| {
                    f.view(i, "n3")
                        .is_some_and(|m| m.status == MemberStatus::Dead)
                })
            })
            .expect("dead once cut off");
        let bound = t.suspect_timeout_for(6) + t.probe_interval * 3;
        assert!(
            silent <= bound,
            "declared {silent:?} after it went silent, over {bound:?}"
        );
    }

    /// A member that came back from `dead` lately (here: restarted) and goes silent is given
    /// at least three short suspicion timeouts before it is declared again: the paths to a
    /// member that returns after a partition may still be settling. A closed port is no
    /// settling path: a crash right after the return is declared at the short timeout.
    #[test]
    fn a_member_that_came_back_lately_is_given_three_suspicion_timeouts() {
        // Silence as short as a closed port, as the tests' nodes have it.
        let t = Timings {
            suspect_timeout: Duration::from_millis(1000),
            port_closed_timeout: Duration::from_millis(1000),
            ..timings()
        };
        let mut fleet = fleet_with(t.clone(), 6, 31);
        let back_again = |fleet: &mut SimFleet| {
            fleet.crash(3);
            let dead = fleet.run_until_true(STEP, Duration::from_secs(30), |f| {
                f.all_see("n3", MemberStatus::Dead)
            });
            assert!(dead.is_some());
            fleet.restart(3);
            let back = fleet.run_until_true(STEP, Duration::from_secs(30), |f| {
                f.all_see("n3", MemberStatus::Alive)
            });
            assert!(back.is_some());
        };
        back_again(&mut fleet);
        fleet.nodes[3].group = 1;
        let silent = fleet
            .run_until_true(STEP, Duration::from_secs(30), |f| dead_on_every_other(f, 3))
            .expect("dead once silent");
        assert!(
            silent >= t.suspect_timeout_for(6) * 3,
            "declared {silent:?} after it went silent"
        );

        fleet.heal();
        back_again(&mut fleet);
        fleet.crash(3);
        let crashed = fleet
            .run_until_true(STEP, Duration::from_secs(30), |f| {
                f.all_see("n3", MemberStatus::Dead)
            })
            .expect("dead again");
        // Sooner than three short timeouts (the damping), from the crash.
        let damped = t.port_closed_timeout_for(6) * 3;
        assert!(
            crashed < damped,
            "declared {crashed:?} after its second crash, not before {damped:?}"
        );
    }
}
