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
    /// The nodes started at random times within this span (ms; absent in older reports:
    /// all in one instant).
    #[serde(default)]
    pub start_spread_ms: f64,
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

/// One false-positive window of `sim --bench`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FpWindow {
    pub loss: f64,
    pub slow_node: bool,
    pub window_s: f64,
    pub node_hours: f64,
    /// Live, reachable, healthy nodes an observer listed dead at a look (once a second; a
    /// declaration refuted within the second is missed here, and counted in `rejoins`).
    pub false_positives: u64,
    /// Times a live node learnt it had been declared dead and rejoined (the victim's count:
    /// every declaration that reached it).
    pub rejoins: u64,
    pub per_node_hour: f64,
    /// How often the slow node found itself declared dead.
    pub slow_node_declared_dead: Option<u64>,
}

/// `sim --bench` at one fleet size. Times in seconds of virtual time; `None`: not within the
/// experiment's limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeFigures {
    pub n: usize,
    pub seed: u64,
    pub cold_start_half_s: Option<f64>,
    pub cold_start_90_s: Option<f64>,
    pub cold_start_99_s: Option<f64>,
    pub cold_start_all_s: Option<f64>,
    /// The fewest members (itself included) a node held when the cold start ended.
    pub cold_start_least_seen: usize,
    /// After the cold start, until every node agrees on members and records.
    pub records_agreed_s: Option<f64>,
    pub steady: Rates,
    pub record_spread_s: Option<f64>,
    pub record_spread_periods: Option<f64>,
    pub two_log2_n: f64,
    pub crash_first_dead_s: Option<f64>,
    pub crash_all_dead_s: Option<f64>,
    pub leave_all_left_s: Option<f64>,
    /// A 50/50 partition held 20 s, then healed: until all agree.
    pub partition_heal_agreed_s: Option<f64>,
    /// The last node cut off from all others for 10 s (as `compare --churn` does to a
    /// process): until the first and every other node lists it dead, then, after the heal,
    /// alive again (absent in older reports).
    #[serde(default)]
    pub cut_one: Option<CutOne>,
    pub churn: Rates,
    pub false_positives: Vec<FpWindow>,
    pub wall_s: f64,
    pub events: u64,
}

/// One node cut off and healed, seen by the others: first and all, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CutOne {
    pub dead_first_s: Option<f64>,
    pub dead_all_s: Option<f64>,
    pub alive_first_s: Option<f64>,
    pub alive_all_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    pub profile: String,
    pub latency_ms: f64,
    pub seed: u64,
    pub sizes: Vec<SizeFigures>,
}
