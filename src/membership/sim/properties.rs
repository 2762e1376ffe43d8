//! What SWIM promises, checked on a simulated fleet after a fault schedule has ended:
//! everyone live sees everyone live alive and every crashed node dead or gone, within a
//! bound the timings imply; everyone holds the newest record of everyone live; no live,
//! reachable node is declared dead beyond a bound; and nothing is held forever (dead
//! members and old generations are forgotten after their grace).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::faults::{random_schedule, Applier, Scenario};
use super::{sim_node_id, NodeState, SimFleet};
use crate::membership::engine::Engine;
use crate::membership::settings::Timings;
use crate::membership::view::MemberStatus;

/// How often the watch for false positives looks.
pub const WATCH_EVERY: Duration = Duration::from_millis(500);

/// A property that did not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("the fleet never formed: {0}")]
    NeverFormed(String),
    #[error("n{observer} lists live n{subject} (generation {generation}) as {seen}")]
    LiveNotAlive {
        observer: usize,
        subject: usize,
        generation: u64,
        seen: String,
    },
    #[error("n{observer} lists n{subject}, which {how}, as alive")]
    GoneAlive {
        observer: usize,
        subject: usize,
        how: &'static str,
    },
    #[error("n{observer} holds n{subject}'s record at {held}, its newest is {newest}")]
    StaleRecord {
        observer: usize,
        subject: usize,
        held: String,
        newest: String,
    },
    #[error("{count} false positives (a live, reachable node declared dead), over the bound of {bound}: {first}")]
    FalsePositives {
        count: u64,
        bound: u64,
        first: String,
    },
    #[error("n{observer} still holds {rows} member rows and {records} records after the grace, for {live} live nodes")]
    NotForgotten {
        observer: usize,
        rows: usize,
        records: usize,
        live: usize,
    },
}

/// How long after its last fault a fleet of `n` must agree again, from its timings: a crash
/// is probed within a few periods and declared dead after the suspicion timeout; after a
/// partition each side forgets the other's down identities (`forget_down_after`) before it
/// takes them in again, found by knocking (one gone member every 2 s, so up to `n` knocks);
/// a missed record is repaired by anti-entropy.
pub fn settle_bound(timings: &Timings, n: usize) -> Duration {
    timings.forget_down_after(n)
        + timings.suspect_timeout_for(n) * 2
        + timings.anti_entropy_interval * 3
        + timings.probe_interval * 10
        + Duration::from_secs(2) * n as u32
}

/// Counts live, reachable nodes declared dead: an observer that newly lists a node of its
/// own partition group `dead` while that node has been healthy (running, not slow, no
/// one-way loss) for a whole suspicion round, and no partition has healed lately.
///
/// A heal is any change of the groups that puts nodes of two former groups together: a
/// partition redrawn into another shape heals the nodes that change sides, and they bring
/// the deaths they saw from the other side with them, as a healed partition does (found by
/// seed 154 of the soak: a 36/64 split redrawn as 22/78 a few seconds later).
pub struct FalsePositiveWatch {
    /// (observer, subject) pairs listed dead at the last look.
    dead: HashSet<(usize, usize)>,
    healthy_since: Vec<Option<Duration>>,
    last_heal: Option<Duration>,
    /// Each node's partition group at the last look.
    groups: Vec<u32>,
    /// The first few, described.
    pub examples: Vec<String>,
    pub count: u64,
    /// Rejoins: nodes that found themselves declared dead (a victim's count, cheap).
    pub rejoins: u64,
    rejoins_seen: Vec<u64>,
}

impl FalsePositiveWatch {
    pub fn new(nodes: usize) -> FalsePositiveWatch {
        FalsePositiveWatch {
            dead: HashSet::new(),
            healthy_since: vec![None; nodes],
            last_heal: None,
            groups: Vec::new(),
            examples: Vec::new(),
            count: 0,
            rejoins: 0,
            rejoins_seen: vec![0; nodes],
        }
    }

    fn healthy(fleet: &SimFleet, i: usize) -> bool {
        let node = &fleet.nodes[i];
        node.is_running() && node.slow.is_zero() && node.loss_in == 0.0 && node.loss_out == 0.0
    }

    /// One look at the fleet. `full`: build every observer's member rows (small fleets);
    /// otherwise only those of observers that hold fewer members active than are running.
    pub fn look(&mut self, fleet: &SimFleet, partitioned: bool, full: bool) {
        let now = fleet.now();
        let groups: Vec<u32> = fleet.nodes.iter().map(|node| node.group).collect();
        if brings_groups_together(&self.groups, &groups) {
            self.last_heal = Some(now);
        }
        self.groups = groups;
        let n = fleet.nodes.len();
        self.healthy_since.resize(n, None);
        self.rejoins_seen.resize(n, 0);
        for i in 0..n {
            let healthy = Self::healthy(fleet, i);
            match (healthy, self.healthy_since[i]) {
                (true, None) => self.healthy_since[i] = Some(now),
                (false, _) => self.healthy_since[i] = None,
                _ => {}
            }
            let rejoins = fleet.nodes[i].engine.stats().rejoins;
            if rejoins > self.rejoins_seen[i] {
                self.rejoins += rejoins - self.rejoins_seen[i];
            }
            self.rejoins_seen[i] = rejoins;
        }
        let timings = fleet.timings();
        let settle = timings.suspect_timeout_for(n) + timings.probe_interval * 3;
        let after_heal = settle + timings.forget_down_after(n);
        let quiet = self.last_heal.is_none_or(|h| now >= h + after_heal);
        let running = fleet.running().count();
        let by_id: HashMap<String, usize> = if full || partitioned {
            (0..n).map(|i| (sim_node_id(i), i)).collect()
        } else {
            HashMap::new()
        };
        let mut dead_now = HashSet::new();
        for observer in fleet.running() {
            let engine = &fleet.nodes[observer].engine;
            if !full && !partitioned && engine.active_members() + 1 >= running {
                continue;
            }
            let by_id = if by_id.is_empty() {
                &(0..n).map(|i| (sim_node_id(i), i)).collect()
            } else {
                &by_id
            };
            for row in engine.members() {
                if row.status != MemberStatus::Dead {
                    continue;
                }
                let Some(&subject) = by_id.get(&row.node_id) else {
                    continue;
                };
                let node = &fleet.nodes[subject];
                if row.generation != node.engine.id().generation {
                    continue;
                }
                dead_now.insert((observer, subject));
                if self.dead.contains(&(observer, subject)) {
                    continue;
                }
                let reachable = node.group == fleet.nodes[observer].group;
                let long_healthy = self.healthy_since[subject].is_some_and(|t| now >= t + settle);
                if reachable && long_healthy && quiet {
                    self.count += 1;
                    if self.examples.len() < 5 {
                        self.examples
                            .push(format!("n{observer} declared n{subject} dead at {now:?}"));
                    }
                }
            }
        }
        self.dead = dead_now;
    }
}

/// Whether some group of `now` holds nodes that were in different groups `before` (nodes
/// that were not there before count in no group).
fn brings_groups_together(before: &[u32], now: &[u32]) -> bool {
    let mut former_group_of: HashMap<u32, u32> = HashMap::new();
    for (&was, &is) in before.iter().zip(now) {
        match former_group_of.get(&is) {
            Some(&first) if first != was => return true,
            Some(_) => {}
            None => {
                former_group_of.insert(is, was);
            }
        }
    }
    false
}

/// Checks that the fleet agrees: every running node lists every running node alive at its
/// current generation and holds its newest record; crashed and left nodes are not alive.
pub fn check_agreement(fleet: &SimFleet) -> Result<(), Violation> {
    let n = fleet.nodes.len();
    let newest: HashMap<String, (usize, u64, u64)> = fleet
        .running()
        .map(|i| {
            let e = &fleet.nodes[i].engine;
            (
                e.id().node_id.clone(),
                (i, e.id().generation, e.own_record().version),
            )
        })
        .collect();
    for observer in fleet.running() {
        let engine = &fleet.nodes[observer].engine;
        let rows: HashMap<String, _> = engine
            .members()
            .into_iter()
            .map(|m| (m.node_id.clone(), m))
            .collect();
        for subject in 0..n {
            let node = &fleet.nodes[subject];
            let id = sim_node_id(subject);
            let row = rows.get(&id);
            match node.state {
                NodeState::Running => {
                    let generation = node.engine.id().generation;
                    let ok = row.is_some_and(|m| {
                        m.status == MemberStatus::Alive
                            && m.generation == generation
                            && m.endpoint == node.addr
                    });
                    if !ok {
                        return Err(Violation::LiveNotAlive {
                            observer,
                            subject,
                            generation,
                            seen: row.map_or("absent".into(), |m| {
                                format!(
                                    "{} (generation {}, {})",
                                    m.status, m.generation, m.endpoint
                                )
                            }),
                        });
                    }
                }
                // Gone: dead, left or forgotten, never alive (a node that left during a
                // partition is only found dead by the side its goodbye did not reach).
                NodeState::Crashed | NodeState::Left => {
                    if row.is_some_and(|m| m.status == MemberStatus::Alive) {
                        return Err(Violation::GoneAlive {
                            observer,
                            subject,
                            how: if node.state == NodeState::Left {
                                "left"
                            } else {
                                "crashed"
                            },
                        });
                    }
                }
                NodeState::Paused => {}
            }
        }
        let held: HashMap<String, (u64, u64)> = engine
            .versions()
            .into_iter()
            .map(|v| (v.node_id, (v.generation, v.version)))
            .collect();
        for (node, &(subject, generation, version)) in &newest {
            if subject == observer {
                continue;
            }
            let have = held.get(node).copied();
            if have != Some((generation, version)) {
                return Err(Violation::StaleRecord {
                    observer,
                    subject,
                    held: have.map_or("nothing".into(), |(g, v)| format!("{g}.{v}")),
                    newest: format!("{generation}.{version}"),
                });
            }
        }
    }
    Ok(())
}

/// Checks that nothing is held for nodes gone longer than the grace: each running node
/// holds rows and records for the running nodes only.
pub fn check_forgotten(fleet: &SimFleet) -> Result<(), Violation> {
    let live = fleet.running().count();
    for observer in fleet.running() {
        let engine: &Engine = &fleet.nodes[observer].engine;
        let rows = engine.members().len();
        let records = engine.versions().len();
        if rows > live || records > live {
            return Err(Violation::NotForgotten {
                observer,
                rows,
                records,
                live,
            });
        }
    }
    Ok(())
}

/// One property run: its settings.
#[derive(Debug, Clone)]
pub struct CheckRun {
    pub nodes: usize,
    pub seed: u64,
    /// The span the random faults fall in.
    pub window: Duration,
    pub timings: Timings,
    /// Loss on every link for the whole run.
    pub loss: f64,
}

impl CheckRun {
    /// The settings the property test and the soak use: LAN timings with short anti-entropy
    /// and a short grace, so forgetting is checked within the run.
    pub fn new(nodes: usize, seed: u64) -> CheckRun {
        CheckRun {
            nodes,
            seed,
            window: Duration::from_secs(60),
            timings: Timings {
                anti_entropy_interval: Duration::from_secs(2),
                dead_node_grace: Duration::from_secs(60),
                ..Timings::default()
            },
            loss: 0.01,
        }
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        format!(
            "cargo run --release -p bocluster-edge -- sim --check --nodes {} --seed {}",
            self.nodes, self.seed
        )
    }
}

/// What a passing run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub scenario: Scenario,
    /// From the end of the last fault until the fleet agreed.
    pub settled_after: Duration,
    pub bound: Duration,
    pub false_positives: u64,
    pub rejoins: u64,
}

/// A failing run: what broke, and how to replay it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("seed {seed}: {phase}: {violation}\n  replay: {replay}")]
pub struct CheckFailure {
    pub seed: u64,
    /// When it was found: at the bound after the last fault, or after the grace.
    pub phase: &'static str,
    pub violation: Violation,
    pub replay: String,
}

/// Runs one random schedule on a fleet and checks every property.
pub fn check(run: &CheckRun) -> Result<CheckOutcome, CheckFailure> {
    let mut phase = "forming";
    let fail = |phase, violation| CheckFailure {
        seed: run.seed,
        phase,
        violation,
        replay: run.replay_command(),
    };
    let n = run.nodes;
    let mut fleet = SimFleet::new(run.timings.clone(), run.seed);
    fleet.net.loss = run.loss;
    fleet.net.jitter = Duration::from_millis(2);
    fleet.start_node(1, None);
    for _ in 1..n {
        fleet.start_node(1, Some(0));
    }
    let formed = fleet.run_until_true(WATCH_EVERY, Duration::from_secs(60), |f| f.all_active());
    if formed.is_none() {
        return Err(fail(
            phase,
            Violation::NeverFormed(format!("{n} nodes did not all see each other within 60 s")),
        ));
    }
    let scenario = random_schedule(n, run.window, run.seed);
    let origin = fleet.now();
    let steps = scenario.steps(origin);
    let mut applier = Applier::new(run.loss);
    let mut watch = FalsePositiveWatch::new(n);
    let ends = origin + scenario.ends_at();
    for step in &steps {
        while fleet.now() + WATCH_EVERY <= step.at {
            let next = fleet.now() + WATCH_EVERY;
            fleet.run_until(next);
            watch.look(&fleet, applier.partitioned, true);
        }
        fleet.run_until(step.at);
        applier.apply(&mut fleet, step);
    }
    fleet.run_until(ends);
    phase = "at the bound after the last fault";
    let bound = settle_bound(&run.timings, n);
    let mut settled = None;
    let limit = ends + bound;
    while fleet.now() < limit {
        watch.look(&fleet, applier.partitioned, true);
        if check_agreement(&fleet).is_ok() {
            settled = Some(fleet.now() - ends);
            break;
        }
        let next = fleet.now() + WATCH_EVERY;
        fleet.run_until(next);
    }
    let Some(settled_after) = settled else {
        return Err(fail(
            phase,
            check_agreement(&fleet)
                .err()
                .unwrap_or(Violation::NeverFormed(
                    "agreement flickered at the bound".into(),
                )),
        ));
    };
    // A bound on false positives: live nodes declared dead by a peer that could reach them.
    // Under the run's loss and without faults on them, SWIM with refutation makes these rare;
    // one per node per run is far above what the measurements show, and far below what a
    // broken detector (or a sim that loses acks it should deliver) produces.
    let fp_bound = n as u64;
    if watch.count > fp_bound {
        return Err(fail(
            phase,
            Violation::FalsePositives {
                count: watch.count,
                bound: fp_bound,
                first: watch.examples.first().cloned().unwrap_or_default(),
            },
        ));
    }
    // Past the grace (and foca's own forgetting), nothing of the gone is held.
    let forget = run.timings.dead_node_grace
        + run.timings.forget_down_after(n)
        + run.timings.anti_entropy_interval * 2;
    fleet.run_until(fleet.now() + forget);
    phase = "after the grace";
    check_agreement(&fleet).map_err(|v| fail(phase, v))?;
    check_forgotten(&fleet).map_err(|v| fail(phase, v))?;
    Ok(CheckOutcome {
        scenario,
        settled_after,
        bound,
        false_positives: watch.count,
        rejoins: watch.rejoins,
    })
}

#[cfg(test)]
mod tests {
    use super::brings_groups_together;

    #[test]
    fn a_heal_is_two_former_groups_put_together() {
        // A cut and a cut undone.
        assert!(!brings_groups_together(&[0, 0, 0, 0], &[0, 0, 1, 1]));
        assert!(brings_groups_together(&[0, 0, 1, 1], &[0, 0, 0, 0]));
        // A split redrawn: node 1 changes sides and joins the nodes it was cut from.
        assert!(brings_groups_together(&[0, 0, 1, 1], &[0, 1, 1, 1]));
        // Groups renumbered, nobody meets anyone new.
        assert!(!brings_groups_together(&[0, 0, 1, 1], &[1, 1, 0, 0]));
        // A node that was not there before meets no one.
        assert!(!brings_groups_together(&[0, 1], &[0, 1, 0]));
    }
}
