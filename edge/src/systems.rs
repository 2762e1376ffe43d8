//! The two systems under comparison behind one interface: a fleet of bocluster node processes
//! and a fleet of Serf agents, each node on its own loopback address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bocluster::fleet::{ApiSession, LocalNode, NodeSpec};
use serde_json::Value;

use crate::netns::{CounterRule, Direction};
use crate::serf::{self, SerfAgent, SerfMember, SerfRpc};

/// Which system a fleet runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Bocluster,
    Serf,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Bocluster => "bocluster",
            System::Serf => "serf",
        }
    }

    /// Default probe / gossip round interval: BO_PROBE_INTERVAL's default, memberlist's LAN one.
    pub fn gossip_interval(self) -> Duration {
        match self {
            System::Bocluster => bocluster::membership::Timings::default().probe_interval,
            System::Serf => serf::GOSSIP_INTERVAL,
        }
    }
}

/// A member's liveness as an observer reports it, in both systems' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// bocluster `dead`, Serf `failed`.
    Dead,
    /// bocluster `left`, Serf `left` / `leaving`.
    Left,
    Other,
}

impl Liveness {
    pub fn of_bocluster(status: &str) -> Liveness {
        match status {
            "alive" => Liveness::Alive,
            "dead" => Liveness::Dead,
            "left" => Liveness::Left,
            _ => Liveness::Other,
        }
    }

    pub fn of_serf(status: &str) -> Liveness {
        match status {
            "alive" => Liveness::Alive,
            "failed" => Liveness::Dead,
            "left" | "leaving" => Liveness::Left,
            _ => Liveness::Other,
        }
    }
}

/// One member in an observer's view.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub name: String,
    pub status: Liveness,
    /// What a change sets: bocluster databases, the value of Serf's `bench` tag.
    pub markers: Vec<String>,
    /// Where the observer says the member is reached (`ip:port`).
    pub address: String,
}

/// A fleet of one system's nodes. Node 0 is the seed (and bocluster's master); nodes are
/// numbered in start order, joiners after the initial fleet.
pub trait Fleet {
    fn len(&self) -> usize;
    fn name(&self, node: usize) -> String;
    fn pid(&self, node: usize) -> Option<u32>;
    /// Whether the node was not killed.
    fn running(&self, node: usize) -> bool;
    /// What `observer` says about every member (SHOW NODES / serf members).
    fn view(&mut self, observer: usize) -> Result<Vec<Seen>, String>;
    /// Makes a change on `node` that gossip carries to all: CREATE DATABASE / a tag.
    fn change(&mut self, node: usize, marker: &str) -> Result<(), String>;
    /// Starts one more node. `through_seed`: it joins by itself through node 0 (BO_MASTER /
    /// `-join`), and this returns at once; otherwise it starts alone and this returns once it
    /// answers, for [`Fleet::add_from_seed`].
    fn start_joiner(&mut self, through_seed: bool) -> Result<usize, String>;
    /// Node 0 brings `node` in: ADD CLIENT / `serf join`.
    fn add_from_seed(&mut self, node: usize) -> Result<(), String>;
    /// Whether node 0 lists `node` alive: in SHOW CLUSTER (bocluster) / serf members.
    fn seed_sees_alive(&mut self, node: usize) -> Result<bool, String>;
    fn kill(&mut self, node: usize);
    /// Stops `node` gracefully, as an operator would (bocluster: SIGTERM; Serf: SIGINT, its
    /// graceful leave), without waiting for it to exit.
    fn stop_gracefully(&mut self, node: usize);
    /// Starts a killed node again as the same member: same name, address and data directory
    /// (and, for a Serf agent, `-join` to node 0 as at first).
    fn restart(&mut self, node: usize) -> Result<(), String>;
    /// Starts a killed node again as the same member (same name and data directory) at the
    /// address `ip`, as a container rescheduled onto another host would be.
    fn restart_at(&mut self, node: usize, ip: Ipv4Addr) -> Result<(), String>;
    /// The node's own loopback address, which its gossip is sent from.
    fn ip(&self, node: usize) -> Ipv4Addr;
    /// iptables rules counting each node's gossip bytes (not the harness's API / RPC calls).
    fn counter_rules(&self, nodes: usize) -> Vec<CounterRule>;
}

/// Third octet of the loopback block of each system's fleet.
pub fn block(system: System) -> u8 {
    match system {
        System::Bocluster => 221,
        System::Serf => 222,
    }
}

fn node_ip(system: System, node: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, block(system), node as u8 + 1)
}

/// Largest fleet (joiners included) one block holds.
pub const MAX_NODES: usize = 250;

/// The address a node moves to in the address-change scenario: in its fleet's block (so the
/// churn faults and counters that name the block cover it), above any node's own address.
pub fn moved_ip(system: System) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, block(system), MAX_NODES as u8 + 3)
}

/// How long a node may take to answer after it is spawned.
const START_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------

pub struct BoFleet {
    bin: PathBuf,
    dir: PathBuf,
    nodes: Vec<LocalNode>,
    killed: Vec<bool>,
    /// Node 0's API over one kept-open connection, as Serf's node 0 is asked over one RPC
    /// connection: a join is timed by asking every millisecond, and a TCP handshake per
    /// question was a cost Serf's side did not pay.
    seed_api: ApiSession,
}

impl BoFleet {
    /// Starts node 0, waits until it answers, then spawns nodes 1..n seeded to it. Returns
    /// the fleet and when the rest were spawned.
    pub fn start(bin: &Path, dir: &Path, n: usize) -> Result<(BoFleet, Instant), String> {
        let mut fleet = BoFleet {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            nodes: Vec::new(),
            killed: Vec::new(),
            seed_api: ApiSession::default(),
        };
        let first = fleet.spawn(vec![])?;
        fleet.nodes[first].wait_healthy(START_LIMIT)?;
        let started = Instant::now();
        let seed = format!("{}:9091", node_ip(System::Bocluster, 0));
        for _ in 1..n {
            fleet.spawn(vec![("BO_SEEDS".into(), seed.clone())])?;
        }
        Ok((fleet, started))
    }

    fn spawn(&mut self, mut env: Vec<(String, String)>) -> Result<usize, String> {
        let index = self.nodes.len();
        if index >= MAX_NODES {
            return Err(format!("at most {MAX_NODES} nodes per fleet"));
        }
        env.push(("BO_LOG".into(), "warn".into()));
        let spec = NodeSpec {
            node_id: format!("bo-{index}"),
            ip: IpAddr::V4(node_ip(System::Bocluster, index)),
            data_dir: self.dir.join(format!("bo-{index}")),
            env,
        };
        let node = LocalNode::start(&self.bin, spec).map_err(|e| format!("spawn: {e}"))?;
        self.nodes.push(node);
        self.killed.push(false);
        Ok(index)
    }

    fn db_of(node: usize) -> String {
        format!("join{node}")
    }
}

fn text_column(row: &serde_json::Map<String, Value>, column: &str) -> String {
    row.get(column)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Fleet for BoFleet {
    fn len(&self) -> usize {
        self.nodes.len()
    }
    fn name(&self, node: usize) -> String {
        self.nodes[node].spec.node_id.clone()
    }
    fn pid(&self, node: usize) -> Option<u32> {
        self.nodes[node].pid()
    }
    fn running(&self, node: usize) -> bool {
        !self.killed[node]
    }

    fn view(&mut self, observer: usize) -> Result<Vec<Seen>, String> {
        let rows = self.nodes[observer].query("SHOW NODES")?;
        Ok(rows
            .iter()
            .map(|row| Seen {
                name: text_column(row, "node_id"),
                status: Liveness::of_bocluster(&text_column(row, "status")),
                markers: text_column(row, "databases")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                address: text_column(row, "endpoint"),
            })
            .collect())
    }

    fn change(&mut self, node: usize, marker: &str) -> Result<(), String> {
        let (status, body) = self.nodes[node].sql(&format!("CREATE DATABASE {marker}"))?;
        if status != 200 {
            return Err(format!("CREATE DATABASE {marker}: {body}"));
        }
        Ok(())
    }

    fn start_joiner(&mut self, through_seed: bool) -> Result<usize, String> {
        let index = self.nodes.len();
        let mut env = vec![("BO_DATABASES".to_string(), BoFleet::db_of(index))];
        if through_seed {
            env.push((
                "BO_MASTER".into(),
                node_ip(System::Bocluster, 0).to_string(),
            ));
        }
        let node = self.spawn(env)?;
        if !through_seed {
            self.nodes[node].wait_healthy(START_LIMIT)?;
        }
        Ok(node)
    }

    fn add_from_seed(&mut self, node: usize) -> Result<(), String> {
        let statement = format!(
            "ADD CLIENT ip={} db={}",
            self.nodes[node].spec.ip,
            BoFleet::db_of(node)
        );
        let (status, body) = self.nodes[0].sql_in(&self.seed_api, &statement)?;
        if status != 200 {
            return Err(format!("{statement}: {body}"));
        }
        Ok(())
    }

    fn seed_sees_alive(&mut self, node: usize) -> Result<bool, String> {
        let db = BoFleet::db_of(node);
        let rows = self.nodes[0].query_in(&self.seed_api, "SHOW CLUSTER")?;
        Ok(rows
            .iter()
            .any(|r| text_column(r, "db") == db && text_column(r, "status") == "alive"))
    }

    fn kill(&mut self, node: usize) {
        self.nodes[node].kill();
        self.killed[node] = true;
    }

    fn stop_gracefully(&mut self, node: usize) {
        self.nodes[node].signal(nix::sys::signal::Signal::SIGTERM);
        self.killed[node] = true;
    }

    fn restart(&mut self, node: usize) -> Result<(), String> {
        self.nodes[node]
            .restart()
            .map_err(|e| format!("restart bo-{node}: {e}"))?;
        self.killed[node] = false;
        Ok(())
    }

    /// `BO_LISTEN` (and so the advertised endpoint) and `BO_HTTP` move to `ip`.
    fn restart_at(&mut self, node: usize, ip: Ipv4Addr) -> Result<(), String> {
        self.nodes[node].spec.ip = IpAddr::V4(ip);
        self.restart(node)
    }

    fn ip(&self, node: usize) -> Ipv4Addr {
        match self.nodes[node].spec.ip {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => node_ip(System::Bocluster, node),
        }
    }

    /// QUIC on UDP 9091, sent from and received on the node's own address; the harness's
    /// HTTP calls (TCP 9090) are not counted.
    fn counter_rules(&self, nodes: usize) -> Vec<CounterRule> {
        let mut rules = Vec::new();
        for node in 0..nodes {
            let ip = node_ip(System::Bocluster, node);
            rules.push(CounterRule::node(
                node,
                ip,
                Direction::Out,
                &["-p", "udp", "--sport", "9091"],
            ));
            rules.push(CounterRule::node(
                node,
                ip,
                Direction::In,
                &["-p", "udp", "--dport", "9091"],
            ));
        }
        rules
    }
}

// ---------------------------------------------------------------------------------------------

pub struct SerfFleet {
    bin: PathBuf,
    dir: PathBuf,
    agents: Vec<SerfAgent>,
    rpc: Vec<Option<SerfRpc>>,
    killed: Vec<bool>,
    /// Poll with `serf members -format=json` processes instead of RPC connections.
    cli: bool,
}

const TAG: &str = "bench";

impl SerfFleet {
    pub fn start(
        bin: &Path,
        dir: &Path,
        n: usize,
        cli: bool,
    ) -> Result<(SerfFleet, Instant), String> {
        let mut fleet = SerfFleet {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            agents: Vec::new(),
            rpc: Vec::new(),
            killed: Vec::new(),
            cli,
        };
        let first = fleet.spawn(None)?;
        let rpc = fleet.agents[first].wait_rpc(START_LIMIT)?;
        fleet.rpc[first] = Some(rpc);
        let started = Instant::now();
        for _ in 1..n {
            fleet.spawn(Some(node_ip(System::Serf, 0)))?;
        }
        Ok((fleet, started))
    }

    fn spawn(&mut self, join: Option<Ipv4Addr>) -> Result<usize, String> {
        let index = self.agents.len();
        if index >= MAX_NODES {
            return Err(format!("at most {MAX_NODES} nodes per fleet"));
        }
        let agent = SerfAgent::start(
            &self.bin,
            &self.dir,
            &format!("serf-{index}"),
            node_ip(System::Serf, index),
            join,
        )?;
        self.agents.push(agent);
        self.rpc.push(None);
        self.killed.push(false);
        Ok(index)
    }

    fn rpc(&mut self, node: usize) -> Result<&mut SerfRpc, String> {
        if self.rpc[node].is_none() {
            self.rpc[node] = Some(SerfRpc::connect(self.agents[node].rpc_addr())?);
        }
        Ok(self.rpc[node].as_mut().expect("just connected"))
    }

    fn members(&mut self, node: usize) -> Result<Vec<SerfMember>, String> {
        if self.cli {
            return serf::members_cli(&self.bin, self.agents[node].rpc_addr());
        }
        let result = self.rpc(node)?.members();
        if result.is_err() {
            // A broken connection is opened again on the next call.
            self.rpc[node] = None;
        }
        result
    }
}

impl Fleet for SerfFleet {
    fn len(&self) -> usize {
        self.agents.len()
    }
    fn name(&self, node: usize) -> String {
        self.agents[node].name.clone()
    }
    fn pid(&self, node: usize) -> Option<u32> {
        self.agents[node].pid()
    }
    fn running(&self, node: usize) -> bool {
        !self.killed[node]
    }

    fn view(&mut self, observer: usize) -> Result<Vec<Seen>, String> {
        Ok(self
            .members(observer)?
            .into_iter()
            .map(|m| Seen {
                status: Liveness::of_serf(&m.status),
                markers: m.tags.get(TAG).cloned().into_iter().collect(),
                name: m.name,
                address: m.addr,
            })
            .collect())
    }

    fn change(&mut self, node: usize, marker: &str) -> Result<(), String> {
        if self.cli {
            return serf::set_tag_cli(&self.bin, self.agents[node].rpc_addr(), TAG, marker);
        }
        self.rpc(node)?.set_tag(TAG, marker)
    }

    fn start_joiner(&mut self, through_seed: bool) -> Result<usize, String> {
        let node = self.spawn(through_seed.then(|| node_ip(System::Serf, 0)))?;
        if !through_seed {
            let rpc = self.agents[node].wait_rpc(START_LIMIT)?;
            self.rpc[node] = Some(rpc);
        }
        Ok(node)
    }

    fn add_from_seed(&mut self, node: usize) -> Result<(), String> {
        let addr = SocketAddr::new(IpAddr::V4(self.agents[node].ip), serf::SERF_PORT);
        self.rpc(0)?.join(addr)
    }

    fn seed_sees_alive(&mut self, node: usize) -> Result<bool, String> {
        let name = self.agents[node].name.clone();
        Ok(self
            .members(0)?
            .iter()
            .any(|m| m.name == name && m.status == "alive"))
    }

    fn kill(&mut self, node: usize) {
        self.agents[node].kill();
        self.rpc[node] = None;
        self.killed[node] = true;
    }

    fn stop_gracefully(&mut self, node: usize) {
        self.agents[node].interrupt();
        self.rpc[node] = None;
        self.killed[node] = true;
    }

    fn restart(&mut self, node: usize) -> Result<(), String> {
        let ip = self.agents[node].ip;
        self.restart_at(node, ip)
    }

    /// The agent keeps its `-node` name and `-join`s node 0 as at first.
    fn restart_at(&mut self, node: usize, ip: Ipv4Addr) -> Result<(), String> {
        self.agents[node].kill();
        self.rpc[node] = None;
        let join = (node > 0).then(|| node_ip(System::Serf, 0));
        self.agents[node] =
            SerfAgent::start(&self.bin, &self.dir, &format!("serf-{node}"), ip, join)?;
        self.killed[node] = false;
        Ok(())
    }

    fn ip(&self, node: usize) -> Ipv4Addr {
        self.agents[node].ip
    }

    /// memberlist gossip: UDP 7946 from and to the agent's address, and TCP 7946 (push-pull
    /// state syncs). An agent dials those TCP connections without binding its own address, so
    /// the dialling side's packets leave from 127.0.0.1: they are counted fleet-wide and
    /// shared out evenly. The harness's RPC calls (TCP 7373) are not counted.
    fn counter_rules(&self, nodes: usize) -> Vec<CounterRule> {
        let mut rules = Vec::new();
        for node in 0..nodes {
            let ip = node_ip(System::Serf, node);
            for (direction, port_flag) in [(Direction::Out, "--sport"), (Direction::In, "--dport")]
            {
                for proto in ["udp", "tcp"] {
                    rules.push(CounterRule::node(
                        node,
                        ip,
                        direction,
                        &["-p", proto, port_flag, "7946"],
                    ));
                }
            }
        }
        rules.push(CounterRule::shared(
            Direction::Out,
            &["-s", "127.0.0.1", "-p", "tcp", "--dport", "7946"],
        ));
        rules.push(CounterRule::shared(
            Direction::In,
            &["-d", "127.0.0.1", "-p", "tcp", "--sport", "7946"],
        ));
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_in_both_systems_terms() {
        assert_eq!(Liveness::of_bocluster("alive"), Liveness::Alive);
        assert_eq!(Liveness::of_bocluster("dead"), Liveness::Dead);
        assert_eq!(Liveness::of_bocluster("left"), Liveness::Left);
        assert_eq!(Liveness::of_serf("alive"), Liveness::Alive);
        assert_eq!(Liveness::of_serf("failed"), Liveness::Dead);
        assert_eq!(Liveness::of_serf("leaving"), Liveness::Left);
        assert_eq!(Liveness::of_serf("left"), Liveness::Left);
        assert_eq!(Liveness::of_serf("suspect?"), Liveness::Other);
    }

    #[test]
    fn fleets_use_separate_blocks() {
        assert_eq!(node_ip(System::Bocluster, 0), Ipv4Addr::new(127, 0, 221, 1));
        assert_eq!(node_ip(System::Serf, 249), Ipv4Addr::new(127, 0, 222, 250));
    }
}
