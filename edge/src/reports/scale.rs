//! `edge-fleet scale`'s report: per fleet size, what N in-process nodes cost and how fast they
//! converged.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::procfs::Machine;

/// How the in-process nodes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleTransport {
    /// Channels between the nodes: the protocol's cost without TLS, QUIC and sockets.
    Memory,
    /// Real QUIC with mutual TLS, one UDP endpoint per node.
    Quic,
}

/// One size's figures. Times in ms; `None` where it did not happen within the limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleResult {
    pub n: usize,
    /// The nodes' gossip interval.
    #[serde(default)]
    pub gossip_interval_ms: f64,
    pub log2_n: f64,
    /// Starting all N nodes one after the other.
    pub start_ms: f64,
    /// From the last start until every node sees all N alive.
    pub converge_ms: Option<f64>,
    /// Nodes that saw all N alive when convergence was declared or given up.
    pub nodes_seeing_all: usize,
    /// Median, over nodes, of how many members each saw alive then.
    pub median_alive_seen: f64,
    /// Why the size was given up early, if it was (memory guard).
    #[serde(default)]
    pub gave_up: Option<String>,
    /// Process resident memory growth since before the first start, per node.
    pub rss_per_node_kib: f64,
    pub rss_process_kib: u64,
    /// Process CPU over the steady window, as % of one core, per node.
    pub cpu_percent_per_node: Option<f64>,
    /// Gossip (UDP) bytes sent per node per second over the steady window (= received).
    pub gossip_bytes_per_s_per_node: Option<f64>,
    /// Distinct live nodes some node reported dead during the steady window.
    pub false_positive_nodes: Option<usize>,
    /// CREATE DATABASE on one node until all N see it.
    pub change_ms: Option<f64>,
    /// `change_ms` in gossip rounds.
    pub change_rounds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleReport {
    pub machine: Machine,
    /// How the nodes reached each other.
    #[serde(default = "quic_transport")]
    pub transport: ScaleTransport,
    /// Share of gossip messages dropped (memory transport).
    #[serde(default)]
    pub loss: f64,
    pub bocluster_version: String,
    pub gossip_interval_ms: f64,
    pub limit_s: f64,
    pub steady_s: f64,
    pub worker_threads: usize,
    pub sizes: Vec<ScaleResult>,
    /// The largest size that converged within the limit.
    pub largest_converged: Option<usize>,
}

/// Reports written before there was a choice ran over QUIC.
fn quic_transport() -> ScaleTransport {
    ScaleTransport::Quic
}
