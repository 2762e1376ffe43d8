//! `edge-fleet sim`'s report: one simulated run, or the measurement matrix over fleet sizes.

use serde::{Deserialize, Serialize};

/// What a run was asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimSettings {
    pub nodes: usize,
    pub seed: u64,
    pub profile: String,
    /// Virtual time the run covers, from the first start.
    pub duration_s: f64,
    pub loss: f64,
    pub latency_ms: f64,
    pub jitter_ms: f64,
    pub reorder: f64,
    pub mtu: usize,
    /// How many seed nodes the others join through.
    pub join_seeds: usize,
    /// The scenario file, if any.
    pub scenario: Option<String>,
}

/// Traffic over a window, per node per second (sealed datagrams; QUIC requests apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub window_s: f64,
    pub bytes_out: f64,
    pub datagrams_out: f64,
    /// Join and record-pull answers, encoded (QUIC streams).
    pub stream_bytes: f64,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimSample {
    pub t_s: f64,
    pub running: usize,
    /// Running nodes that hold every other running node active.
    pub seeing_all: usize,
    /// The fewest members (itself included) any running node holds active.
    pub least_seen: usize,
    pub bytes_out_per_node: f64,
    pub datagrams_out_per_node: f64,
}

/// The figures of one run: deterministic for a seed (the wall-clock part apart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimFigures {
    /// From the first start until every node holds every node active.
    pub formed_after_s: Option<f64>,
    /// Between forming and the first fault (or the end).
    pub steady: Rates,
    /// From the first fault until the last one ends.
    pub under_faults: Option<Rates>,
    /// What the scenario did, one line a step.
    pub steps: Vec<String>,
    /// From the end of the last fault until all live nodes agree on members and records.
    pub settled_after_s: Option<f64>,
    /// Live, reachable nodes newly declared dead by a peer of their own group.
    pub false_positives: u64,
    /// Times a node found itself declared dead and rejoined.
    pub rejoins: u64,
    /// Node-hours watched (running nodes x virtual time after forming).
    pub node_hours: f64,
    /// Datagrams that did not fit the MTU.
    pub oversize: u64,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub samples: Vec<SimSample>,
}

/// What the run cost this machine (differs between runs of one seed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimCost {
    pub wall_s: f64,
    pub events: u64,
    pub peak_rss_mib: f64,
    /// Resident memory per simulated node after forming.
    pub rss_per_node_kib: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    pub settings: SimSettings,
    pub figures: SimFigures,
    pub cost: SimCost,
}
