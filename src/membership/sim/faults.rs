//! Fault schedules for the simulated fleet: what a scenario file says (JSON), checked against
//! the fleet size, turned into timed steps, and random schedules for the property checks.
//!
//! A scenario lists events, each at a virtual time; a fault with a duration (`for`) ends by
//! itself (a pause thaws, a loss burst stops, a slow node recovers).

use std::collections::BTreeSet;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{sim_addr, SimFleet};

/// A scenario file: the faults of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub events: Vec<Event>,
}

/// One fault, at a time after the fleet has formed (a misspelt field is refused by the
/// fault's own fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When, after the fleet has formed (`"30s"`, `"1m 5s"`, `"250ms"`).
    #[serde(with = "human")]
    pub at: Duration,
    #[serde(flatten)]
    pub fault: Fault,
}

/// Which nodes a fault hits: by index, or a count picked at random among the running ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Targets {
    Listed(Vec<usize>),
    Count { count: usize },
}

/// Which way one-way loss cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// What the node receives is lost.
    In,
    /// What the node sends is lost.
    Out,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// SIGKILL.
    Crash {
        nodes: Targets,
    },
    /// SIGTERM: a graceful leave.
    Leave {
        nodes: Targets,
    },
    /// SIGSTOP for `for`, then SIGCONT.
    Pause {
        nodes: Targets,
        #[serde(rename = "for", with = "human")]
        duration: Duration,
    },
    /// Starts again under a new generation (after a crash or a leave; a running node is
    /// killed first).
    Restart {
        nodes: Targets,
    },
    /// Restarts under a new generation at a new address.
    Move {
        nodes: Targets,
    },
    /// Splits the fleet: `groups` lists the nodes of each group after the first (everyone
    /// unlisted stays in group 0); or `split`, the share of nodes (the lowest indexes) cut
    /// off from the rest.
    Partition {
        #[serde(default)]
        groups: Vec<Vec<usize>>,
        #[serde(default)]
        split: Option<f64>,
    },
    Heal,
    /// Loss on every link at `rate` for `for`, then back to the run's own.
    Loss {
        rate: f64,
        #[serde(rename = "for", with = "human")]
        duration: Duration,
    },
    /// Loss into or out of some nodes only.
    OneWayLoss {
        nodes: Targets,
        direction: Direction,
        rate: f64,
        #[serde(rename = "for", with = "human")]
        duration: Duration,
    },
    /// CPU-starved nodes: each datagram and timer is handled `by` late, for `for`.
    Slow {
        nodes: Targets,
        #[serde(with = "human")]
        by: Duration,
        #[serde(rename = "for", with = "human")]
        duration: Duration,
    },
    /// Each node changes its record (a database is created): a new version to spread.
    Record {
        nodes: Targets,
    },
}

/// Why a scenario cannot run on this fleet.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScenarioError {
    #[error("event {event} ({fault}): node {node} is not in a fleet of {nodes}")]
    NoSuchNode {
        event: usize,
        fault: &'static str,
        node: usize,
        nodes: usize,
    },
    #[error("event {event} ({fault}): `{field}` is {value}, it must be between 0 and 1")]
    NotAShare {
        event: usize,
        fault: &'static str,
        field: &'static str,
        value: f64,
    },
    #[error("event {event} (partition): give `groups` or `split`, not both and not neither")]
    PartitionShape { event: usize },
    #[error("event {event} ({fault}): `count` is {count}, over the fleet of {nodes}")]
    TooMany {
        event: usize,
        fault: &'static str,
        count: usize,
        nodes: usize,
    },
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Crash { .. } => "crash",
            Fault::Leave { .. } => "leave",
            Fault::Pause { .. } => "pause",
            Fault::Restart { .. } => "restart",
            Fault::Move { .. } => "move",
            Fault::Partition { .. } => "partition",
            Fault::Heal => "heal",
            Fault::Loss { .. } => "loss",
            Fault::OneWayLoss { .. } => "one_way_loss",
            Fault::Slow { .. } => "slow",
            Fault::Record { .. } => "record",
        }
    }

    fn targets(&self) -> Option<&Targets> {
        match self {
            Fault::Crash { nodes }
            | Fault::Leave { nodes }
            | Fault::Pause { nodes, .. }
            | Fault::Restart { nodes }
            | Fault::Move { nodes }
            | Fault::OneWayLoss { nodes, .. }
            | Fault::Slow { nodes, .. }
            | Fault::Record { nodes } => Some(nodes),
            Fault::Partition { .. } | Fault::Heal | Fault::Loss { .. } => None,
        }
    }

    /// When it ends by itself, if it does.
    pub fn duration(&self) -> Option<Duration> {
        match self {
            Fault::Pause { duration, .. }
            | Fault::Loss { duration, .. }
            | Fault::OneWayLoss { duration, .. }
            | Fault::Slow { duration, .. } => Some(*duration),
            _ => None,
        }
    }
}

impl Scenario {
    /// Reads a scenario file's text; errors name the line and column.
    pub fn from_json(text: &str) -> Result<Scenario, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Checks every event against a fleet of `nodes`.
    pub fn validate(&self, nodes: usize) -> Result<(), ScenarioError> {
        for (event, e) in self.events.iter().enumerate() {
            let fault = e.fault.name();
            match e.fault.targets() {
                Some(Targets::Listed(list)) => {
                    if let Some(&node) = list.iter().find(|&&n| n >= nodes) {
                        return Err(ScenarioError::NoSuchNode {
                            event,
                            fault,
                            node,
                            nodes,
                        });
                    }
                }
                Some(Targets::Count { count }) if *count > nodes => {
                    return Err(ScenarioError::TooMany {
                        event,
                        fault,
                        count: *count,
                        nodes,
                    })
                }
                _ => {}
            }
            let share = |field, value: f64| {
                if (0.0..=1.0).contains(&value) {
                    Ok(())
                } else {
                    Err(ScenarioError::NotAShare {
                        event,
                        fault,
                        field,
                        value,
                    })
                }
            };
            match &e.fault {
                Fault::Loss { rate, .. } | Fault::OneWayLoss { rate, .. } => share("rate", *rate)?,
                Fault::Partition { groups, split } => {
                    if groups.is_empty() == split.is_none() {
                        return Err(ScenarioError::PartitionShape { event });
                    }
                    if let Some(split) = split {
                        share("split", *split)?;
                    }
                    if let Some(&node) = groups.iter().flatten().find(|&&n| n >= nodes) {
                        return Err(ScenarioError::NoSuchNode {
                            event,
                            fault,
                            node,
                            nodes,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// When the last fault ends (its own time, or its time plus its duration).
    pub fn ends_at(&self) -> Duration {
        self.events
            .iter()
            .map(|e| e.at + e.fault.duration().unwrap_or_default())
            .max()
            .unwrap_or_default()
    }

    /// The steps to take, in time order (times after `origin`, the moment the fleet formed).
    pub fn steps(&self, origin: Duration) -> Vec<Step> {
        let mut steps = Vec::new();
        for (event, e) in self.events.iter().enumerate() {
            steps.push(Step {
                at: origin + e.at,
                event,
                action: Action::Start(e.fault.clone()),
            });
            if let Some(d) = e.fault.duration() {
                steps.push(Step {
                    at: origin + e.at + d,
                    event,
                    action: Action::End,
                });
            }
        }
        // Stable: events of one time keep the file's order, an end before a later start.
        steps.sort_by_key(|s| s.at);
        steps
    }
}

/// One thing to do at one time.
#[derive(Debug, Clone)]
pub struct Step {
    pub at: Duration,
    /// Which event of the scenario it belongs to.
    pub event: usize,
    pub action: Action,
}

#[derive(Debug, Clone)]
pub enum Action {
    Start(Fault),
    /// The event's fault (with a duration) ends.
    End,
}

/// Carries out a scenario's steps on a fleet, remembering whom each timed fault hit so its
/// end undoes exactly that.
#[derive(Debug, Default)]
pub struct Applier {
    /// Event -> the timed fault and the nodes it hit.
    hit: std::collections::HashMap<usize, (Fault, Vec<usize>)>,
    /// The run's own loss rate, restored after a burst.
    pub base_loss: f64,
    /// Nodes that are down (crashed or left) by the schedule now, and not restarted.
    pub down: BTreeSet<usize>,
    /// Nodes any fault has touched (the false-positive count leaves them out).
    pub touched: BTreeSet<usize>,
    /// Partition currently in force.
    pub partitioned: bool,
    /// Record changes made, per node (a database `db<k>` each).
    pub record_changes: u64,
}

impl Applier {
    pub fn new(base_loss: f64) -> Applier {
        Applier {
            base_loss,
            ..Applier::default()
        }
    }

    /// Which nodes `targets` names now (a count is picked among the running nodes, by the
    /// fleet's own random source).
    fn pick(&self, fleet: &mut SimFleet, targets: &Targets) -> Vec<usize> {
        match targets {
            Targets::Listed(list) => list.clone(),
            Targets::Count { count } => {
                let mut candidates: Vec<usize> = fleet.running().collect();
                let mut chosen = Vec::new();
                while chosen.len() < *count && !candidates.is_empty() {
                    let i = fleet.random_below(candidates.len());
                    chosen.push(candidates.swap_remove(i));
                }
                chosen.sort_unstable();
                chosen
            }
        }
    }

    pub fn apply(&mut self, fleet: &mut SimFleet, step: &Step) {
        match &step.action {
            Action::Start(fault) => self.start(fleet, step.event, fault),
            Action::End => self.end(fleet, step.event),
        }
    }

    fn start(&mut self, fleet: &mut SimFleet, event: usize, fault: &Fault) {
        let nodes = fault
            .targets()
            .map(|t| self.pick(fleet, t))
            .unwrap_or_default();
        self.touched.extend(nodes.iter().copied());
        match fault {
            Fault::Crash { .. } => {
                for &n in &nodes {
                    fleet.crash(n);
                    self.down.insert(n);
                }
            }
            Fault::Leave { .. } => {
                for &n in &nodes {
                    fleet.leave(n);
                    self.down.insert(n);
                }
            }
            Fault::Pause { .. } => nodes.iter().for_each(|&n| fleet.pause(n)),
            Fault::Restart { .. } => {
                for &n in &nodes {
                    if fleet.nodes[n].is_running() {
                        fleet.crash(n);
                    }
                    fleet.restart(n);
                    self.down.remove(&n);
                }
            }
            Fault::Move { .. } => {
                for &n in &nodes {
                    if fleet.nodes[n].is_running() {
                        fleet.crash(n);
                    }
                    let moved = moved_addr(n, fleet.nodes[n].engine.id().generation);
                    fleet.restart_at(n, moved);
                    self.down.remove(&n);
                }
            }
            Fault::Partition { groups, split } => {
                let n = fleet.nodes.len();
                let mut group = vec![0u32; n];
                for (g, members) in groups.iter().enumerate() {
                    for &m in members.iter().filter(|&&m| m < n) {
                        group[m] = g as u32 + 1;
                    }
                }
                if let Some(split) = split {
                    let cut = (n as f64 * split).round() as usize;
                    group.iter_mut().take(cut).for_each(|g| *g = 1);
                }
                fleet.partition(|i| group[i]);
                self.partitioned = true;
            }
            Fault::Heal => {
                fleet.heal();
                self.partitioned = false;
            }
            Fault::Loss { rate, .. } => fleet.net.loss = *rate,
            Fault::OneWayLoss {
                direction, rate, ..
            } => {
                for &n in &nodes {
                    match direction {
                        Direction::In => fleet.nodes[n].loss_in = *rate,
                        Direction::Out => fleet.nodes[n].loss_out = *rate,
                    }
                }
            }
            Fault::Slow { by, .. } => nodes.iter().for_each(|&n| fleet.nodes[n].slow = *by),
            Fault::Record { .. } => {
                let now = fleet.now();
                for &n in &nodes {
                    if !fleet.nodes[n].is_running() {
                        continue;
                    }
                    self.record_changes += 1;
                    let name = format!("db{}", self.record_changes);
                    fleet.update_record(n, now, |r| r.databases.push(name));
                }
            }
        }
        if fault.duration().is_some() {
            self.hit.insert(event, (fault.clone(), nodes));
        }
    }

    fn end(&mut self, fleet: &mut SimFleet, event: usize) {
        let Some((fault, nodes)) = self.hit.remove(&event) else {
            return;
        };
        match fault {
            Fault::Pause { .. } => nodes.iter().for_each(|&n| fleet.resume(n)),
            Fault::Loss { .. } => fleet.net.loss = self.base_loss,
            Fault::OneWayLoss { direction, .. } => {
                for &n in &nodes {
                    match direction {
                        Direction::In => fleet.nodes[n].loss_in = 0.0,
                        Direction::Out => fleet.nodes[n].loss_out = 0.0,
                    }
                }
            }
            Fault::Slow { .. } => nodes
                .iter()
                .for_each(|&n| fleet.nodes[n].slow = Duration::ZERO),
            _ => {}
        }
    }
}

/// The address node `index` moves to under `generation`: another subnet, same port.
pub fn moved_addr(index: usize, generation: u64) -> std::net::SocketAddr {
    let base = sim_addr(index);
    let port = 10_000 + (generation % 50_000) as u16;
    std::net::SocketAddr::new(base.ip(), port)
}

/// A random fault schedule for a fleet of `nodes`, within `window` after the fleet formed:
/// a few faults of every kind, never more than a third of the fleet down at once, every
/// timed fault over before the window ends, and the partition healed.
pub fn random_schedule(nodes: usize, window: Duration, seed: u64) -> Scenario {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut events = Vec::new();
    let max_down = (nodes / 3).max(1);
    let mut down: Vec<usize> = Vec::new();
    let faults = 4 + rng.random_range(0..5usize);
    let secs = window.as_secs().max(10);
    // Node 0 is the seed everyone joins through: it is left alone, as a real fleet's seed
    // would be replaced rather than churned.
    let pick = |rng: &mut SmallRng| 1 + rng.random_range(0..nodes.saturating_sub(1).max(1));
    for _ in 0..faults {
        let at = Duration::from_secs(rng.random_range(0..secs / 2));
        let short = Duration::from_secs(1 + rng.random_range(0..secs / 4));
        let node = pick(&mut rng);
        let fault = match rng.random_range(0..10u32) {
            0 | 1 if down.len() < max_down && !down.contains(&node) => {
                down.push(node);
                Fault::Crash {
                    nodes: Targets::Listed(vec![node]),
                }
            }
            2 if down.len() < max_down && !down.contains(&node) => {
                down.push(node);
                Fault::Leave {
                    nodes: Targets::Listed(vec![node]),
                }
            }
            3 => Fault::Pause {
                nodes: Targets::Listed(vec![node]),
                duration: short,
            },
            4 => Fault::Restart {
                nodes: Targets::Listed(vec![node]),
            },
            5 => Fault::Move {
                nodes: Targets::Listed(vec![node]),
            },
            6 => {
                events.push(Event {
                    at: at + short,
                    fault: Fault::Heal,
                });
                Fault::Partition {
                    groups: Vec::new(),
                    split: Some(0.2 + 0.3 * rng.random::<f64>()),
                }
            }
            7 => Fault::Loss {
                rate: 0.05 + 0.25 * rng.random::<f64>(),
                duration: short,
            },
            8 => Fault::OneWayLoss {
                nodes: Targets::Listed(vec![node]),
                direction: if rng.random_bool(0.5) {
                    Direction::In
                } else {
                    Direction::Out
                },
                rate: 1.0,
                duration: short,
            },
            _ => Fault::Slow {
                nodes: Targets::Listed(vec![node]),
                by: Duration::from_millis(100 + rng.random_range(0..400u64)),
                duration: short,
            },
        };
        if matches!(fault, Fault::Restart { .. } | Fault::Move { .. }) {
            down.retain(|&d| d != node);
        }
        events.push(Event { at, fault });
    }
    // A record change on a live node near the end, so spread is checked after the faults.
    events.push(Event {
        at: Duration::from_secs(secs / 2),
        fault: Fault::Record {
            nodes: Targets::Count { count: 2 },
        },
    });
    events.push(Event {
        at: Duration::from_secs(secs / 2 + 1),
        fault: Fault::Heal,
    });
    Scenario { events }
}

/// Durations as humantime text (`"30s"`) in scenario files.
mod human {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration ({e}): write e.g. \"30s\""
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_file_reads_and_names_what_is_wrong() {
        let text = r#"{"events": [
            {"at": "30s", "fault": "crash", "nodes": [3]},
            {"at": "40s", "fault": "partition", "split": 0.3},
            {"at": "50s", "fault": "heal"},
            {"at": "1m", "fault": "loss", "rate": 0.2, "for": "10s"},
            {"at": "1m", "fault": "slow", "nodes": {"count": 1}, "by": "300ms", "for": "20s"},
            {"at": "2m", "fault": "one_way_loss", "nodes": [1], "direction": "in", "rate": 1.0, "for": "5s"}
        ]}"#;
        let scenario = Scenario::from_json(text).unwrap();
        assert_eq!(scenario.events.len(), 6);
        assert_eq!(scenario.ends_at(), Duration::from_secs(125));
        assert!(scenario.validate(10).is_ok());
        assert!(matches!(
            scenario.validate(3),
            Err(ScenarioError::NoSuchNode {
                event: 0,
                node: 3,
                ..
            })
        ));
        let bad = r#"{"events": [{"at": "soon", "fault": "crash", "nodes": [1]}]}"#;
        let e = Scenario::from_json(bad).unwrap_err().to_string();
        assert!(e.contains("soon") && e.contains("line 1"), "{e}");
        let unknown = r#"{"events": [{"at": "1s", "fault": "explode"}]}"#;
        assert!(Scenario::from_json(unknown).is_err());
        let misspelt = r#"{"events": [{"at": "1s", "fault": "pause", "nodes": [1], "fro": "2s"}]}"#;
        assert!(Scenario::from_json(misspelt).is_err());
        let rate = Scenario::from_json(
            r#"{"events": [{"at": "1s", "fault": "loss", "rate": 2.0, "for": "1s"}]}"#,
        )
        .unwrap();
        assert!(matches!(
            rate.validate(5),
            Err(ScenarioError::NotAShare { field: "rate", .. })
        ));
    }

    #[test]
    fn steps_come_in_time_order_with_their_ends() {
        let scenario = random_schedule(10, Duration::from_secs(60), 3);
        let steps = scenario.steps(Duration::from_secs(5));
        assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(steps.iter().all(|s| s.at >= Duration::from_secs(5)));
        assert!(scenario.validate(10).is_ok());
    }
}
