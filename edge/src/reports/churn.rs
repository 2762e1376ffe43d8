//! `compare --churn`'s part of the compare report: each run's churn timings, the packet-loss
//! window, and what the churn scenarios did.

use serde::{Deserialize, Serialize};

/// One run's churn timings in milliseconds; `None` where the event was not seen in time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChurnTimes {
    /// Nodes killed at once.
    pub killed: usize,
    pub kill_first_ms: Option<f64>,
    pub kill_all_ms: Option<f64>,
    pub restart_first_ms: Option<f64>,
    pub restart_all_ms: Option<f64>,
    /// Cut -> the node is dead on node 0 / on every other node.
    pub cut_first_ms: Option<f64>,
    pub cut_all_ms: Option<f64>,
    /// How long the cut was in force.
    pub cut_held_ms: Option<f64>,
    /// Packets the partition rules dropped (shows the cut was real).
    pub cut_dropped_packets: Option<u64>,
    /// Heal -> the node is alive on node 0 / on every other node.
    pub heal_first_ms: Option<f64>,
    pub heal_all_ms: Option<f64>,
    /// Restart at a new address -> listed alive there on node 0 / on every other node.
    pub moved_first_ms: Option<f64>,
    pub moved_all_ms: Option<f64>,
    /// Bytes per second per node, median over the nodes, in and out, from the partition to
    /// the end of the restart; and how long that was.
    pub churn_bytes_in_per_s: Option<f64>,
    pub churn_bytes_out_per_s: Option<f64>,
    pub churn_window_s: Option<f64>,
    /// One observer paused: distinct live nodes reported dead (or left) while it was frozen
    /// or after, and the (observer, node) reports of that.
    #[serde(default)]
    pub pause_false_positive_nodes: Option<usize>,
    #[serde(default)]
    pub pause_false_positive_reports: Option<usize>,
    /// How long the observer was paused.
    #[serde(default)]
    pub pause_s: Option<f64>,
    /// Whether the paused node itself was among them (peers took its silence for a crash).
    #[serde(default)]
    pub pause_paused_node_reported: Option<bool>,
}

impl ChurnTimes {
    /// Bytes out per node (the median node) over the whole partition, kill and restart: what
    /// those events cost, whatever time each system took to get through them.
    pub fn churn_bytes_out(&self) -> Option<f64> {
        Some(self.churn_bytes_out_per_s? * self.churn_window_s?)
    }
}

/// The packet-loss window's findings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LossWindow {
    pub window_s: f64,
    pub probability: f64,
    /// What was dropped.
    pub dropped: String,
    pub polls: usize,
    /// Distinct live nodes that some observer reported dead (or left).
    pub false_positive_nodes: usize,
    /// (observer, node) reports of a live node as dead, over all polls.
    pub false_positive_reports: usize,
    /// Packets the loss rule dropped.
    pub dropped_packets: Option<u64>,
}

/// The churn settings of a report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChurnSettings {
    pub kill_share: f64,
    pub partition_hold_s: f64,
    pub partition_dropped_bocluster: String,
    pub partition_dropped_serf: String,
    #[serde(default)]
    pub move_limit_s: f64,
    pub loss_probability: f64,
    pub loss_window_s: f64,
    pub loss_dropped: String,
    /// How long one observer was frozen (0: not run), and watched after.
    #[serde(default)]
    pub pause_s: f64,
    #[serde(default)]
    pub pause_watch_s: f64,
}

impl ChurnSettings {
    /// One line for the tables' header.
    pub fn describe(&self) -> String {
        format!(
            "Churn: SIGKILL of {:.0} % of the nodes at once (at least 1, never node 0), then restarted; partition of the last node for >= {:.0} s (bocluster: {}; Serf: {}); node N/2 killed and started at once at another address of its block, same name and data (waited for up to {:.0} s); bandwidth counted from the partition to the end of the restart; {}; loss window of {:.0} s (first run): {}",
            self.kill_share * 100.0,
            self.partition_hold_s,
            self.partition_dropped_bocluster,
            self.partition_dropped_serf,
            self.move_limit_s,
            if self.pause_s > 0.0 {
                format!(
                    "node 1 frozen (SIGSTOP) for {:.0} s, then watched for {:.0} s",
                    self.pause_s, self.pause_watch_s
                )
            } else {
                "no pause".to_string()
            },
            self.loss_window_s,
            self.loss_dropped,
        )
    }
}
