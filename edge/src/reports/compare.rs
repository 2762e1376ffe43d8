//! `edge-fleet compare`'s report: per size, each system's runs and steady window, and the
//! side-by-side figures.

use serde::{Deserialize, Serialize};

use crate::procfs::Machine;
use crate::reports::churn::{ChurnSettings, ChurnTimes, LossWindow};
use crate::stats::Stat;

/// One run's timings in milliseconds; `None` where the event was not seen in time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunTimes {
    pub cold_start_ms: Option<f64>,
    pub change_ms: Option<f64>,
    pub add_join_ms: Option<f64>,
    pub master_join_ms: Option<f64>,
    pub detect_first_ms: Option<f64>,
    pub detect_all_ms: Option<f64>,
    /// Graceful stop (SIGTERM / Serf's SIGINT) until every other node lists it left.
    #[serde(default)]
    pub leave_all_ms: Option<f64>,
    /// Median time of one sweep over all observers while waiting for the change / the death:
    /// the resolution of the "all nodes" figures.
    #[serde(default)]
    pub change_sweep_ms: Option<f64>,
    #[serde(default)]
    pub detect_sweep_ms: Option<f64>,
}

/// The steady window's findings; per-node figures are stats across the nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Steady {
    pub window_s: f64,
    pub polls: usize,
    /// Distinct live nodes that some observer reported dead (or left).
    pub false_positive_nodes: usize,
    /// (observer, node) reports of a live node as dead, over all polls.
    pub false_positive_reports: usize,
    pub bytes_in_per_s: Option<Stat>,
    pub bytes_out_per_s: Option<Stat>,
    #[serde(default)]
    pub packets_in_per_s: Option<Stat>,
    #[serde(default)]
    pub packets_out_per_s: Option<Stat>,
    pub rss_kib: Option<Stat>,
    /// Private (unshared) memory per node; absent in reports from before it was measured.
    #[serde(default)]
    pub private_kib: Option<Stat>,
    pub cpu_percent: Option<Stat>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SystemResult {
    pub runs: Vec<RunTimes>,
    pub steady: Option<Steady>,
    /// `--churn`: one entry per run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub churn: Vec<ChurnTimes>,
    /// `--churn`: the packet-loss window (first run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossWindow>,
    /// Runs that did not complete (a fleet that did not form, say), with why: the figures are
    /// over the other runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

/// One row of the side-by-side table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figure {
    pub key: String,
    pub label: String,
    pub unit: String,
    pub bocluster: Option<Stat>,
    pub serf: Option<Stat>,
    /// bocluster median / Serf median.
    pub ratio: Option<f64>,
    pub target: Option<String>,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeReport {
    pub n: usize,
    pub log2_n: f64,
    pub figures: Vec<Figure>,
    pub bocluster: SystemResult,
    pub serf: Option<SystemResult>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareReport {
    pub machine: Machine,
    pub bocluster_version: String,
    pub serf_version: Option<String>,
    /// How Serf was found (or installed).
    pub serf_note: String,
    pub runs: usize,
    pub steady_s: f64,
    pub sizes: Vec<SizeReport>,
    /// Whether bandwidth was measured (needs root and iptables in a private namespace).
    pub bandwidth_measured: bool,
    pub serf_polling: String,
    pub gossip_interval_ms: GossipIntervals,
    /// `--churn`: what the churn scenarios did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GossipIntervals {
    pub bocluster: f64,
    pub serf: f64,
}
