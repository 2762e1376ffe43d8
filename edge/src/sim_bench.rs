//! `edge-fleet sim --bench`: the simulator's measurements at each fleet size, one fleet per
//! size taken through one experiment after another: cold start, steady traffic, a record
//! change, a crash, a leave, a partition and its heal, churn, and false positives at several
//! loss rates and with one slow node.

use std::time::{Duration, Instant};

use bocluster::membership::sim::properties::FalsePositiveWatch;
use bocluster::membership::sim::{sim_node_id, SimFleet};
use bocluster::membership::MemberStatus;

use crate::reports::sim::{BenchReport, CutOne, FpWindow, Rates, SizeFigures};
use crate::sim_fleet::{agreed, start_fleet, SimArgs};

/// How often the experiments look (virtual time).
const LOOK: Duration = Duration::from_millis(250);

/// How often the cold start and record-change experiments look: a change reaches everyone
/// in well under a second, a fleet forms within a few hundred milliseconds of its last start,
/// and 250 ms steps would make up much of the figures (the processes' harness sweeps every
/// node every 26-56 ms).
const FINE_LOOK: Duration = Duration::from_millis(20);

/// How long the one-node cut is held (as `compare --churn` holds it).
const CUT_ONE_HOLD: Duration = Duration::from_secs(10);

/// How long an experiment may take before it is reported as not done.
const LIMIT: Duration = Duration::from_secs(120);

/// The loss rates of the false-positive windows.
pub const LOSSES: [f64; 4] = [0.0, 0.01, 0.05, 0.10];

/// How late the slow node handles everything (over the probe timeout of 400 ms).
pub const SLOW_BY: Duration = Duration::from_millis(600);

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The false-positive window at a size: long at small sizes, short where a virtual second
/// costs seconds of wall time.
pub fn fp_window(n: usize) -> Duration {
    match n {
        0..=100 => Duration::from_secs(600),
        101..=1000 => Duration::from_secs(180),
        _ => Duration::from_secs(60),
    }
}

fn say(n: usize, started: Instant, what: &str) {
    eprintln!(
        "sim bench: n={n}: {what} ({:.0} s wall)",
        started.elapsed().as_secs_f64()
    );
}

/// Runs until `done` or the limit; the time it took.
fn until(fleet: &mut SimFleet, mut done: impl FnMut(&SimFleet) -> bool) -> Option<f64> {
    fleet.run_until_true(LOOK, LIMIT, |f| done(f)).map(secs)
}

/// Traffic per node per second over `window` of plain running.
fn traffic_over(fleet: &mut SimFleet, window: Duration) -> Rates {
    let before: (u64, u64, u64) = sums(fleet);
    let start = fleet.now();
    fleet.run_until(start + window);
    let after = sums(fleet);
    let n = fleet.running().count().max(1) as f64;
    let s = secs(window);
    Rates {
        window_s: s,
        bytes_out: (after.0 - before.0) as f64 / s / n,
        datagrams_out: (after.1 - before.1) as f64 / s / n,
        stream_bytes: (after.2 - before.2) as f64 / s / n,
    }
}

fn sums(fleet: &SimFleet) -> (u64, u64, u64) {
    fleet.nodes.iter().fold((0, 0, 0), |a, n| {
        (
            a.0 + n.traffic.bytes_out,
            a.1 + n.traffic.datagrams_out,
            a.2 + n.traffic.stream_bytes,
        )
    })
}

/// Running nodes other than node `subject` whose view of it has `status` (a node lists
/// itself alive: only the others count); once seen, an observer is not asked again (`seen`).
fn count_seeing(
    fleet: &SimFleet,
    subject: usize,
    status: MemberStatus,
    seen: &mut [bool],
) -> usize {
    let subject_id = sim_node_id(subject);
    for i in fleet.running().collect::<Vec<_>>() {
        if seen[i] || i == subject {
            continue;
        }
        let row = fleet.nodes[i]
            .engine
            .members()
            .into_iter()
            .find(|m| m.node_id == subject_id);
        if row.is_some_and(|m| m.status == status) {
            seen[i] = true;
        }
    }
    seen.iter().filter(|&&s| s).count()
}

/// From now until the first, and until every, running node lists node `subject` as `status`.
fn first_and_all(
    fleet: &mut SimFleet,
    subject: usize,
    status: MemberStatus,
) -> (Option<f64>, Option<f64>) {
    first_and_all_others(fleet, subject, status, LOOK)
}

/// As [`first_and_all`], looking every `look`, over the running nodes other than `subject`
/// (which may be running: a node cut off).
fn first_and_all_others(
    fleet: &mut SimFleet,
    subject: usize,
    status: MemberStatus,
    look: Duration,
) -> (Option<f64>, Option<f64>) {
    let start = fleet.now();
    let mut seen = vec![false; fleet.nodes.len()];
    let mut first = None;
    loop {
        let running = fleet.running().filter(|&i| i != subject).count();
        let count = count_seeing(fleet, subject, status, &mut seen);
        let t = secs(fleet.now() - start);
        if count > 0 && first.is_none() {
            first = Some(t);
        }
        if count >= running {
            return (first, Some(t));
        }
        if fleet.now() - start >= LIMIT {
            return (first, None);
        }
        let next = fleet.now() + look;
        fleet.run_until(next);
    }
}

/// The last node cut off from all others for [`CUT_ONE_HOLD`], then healed (the process
/// harness's churn partition): dead on the first and on every other node, then alive again.
fn cut_one(fleet: &mut SimFleet) -> CutOne {
    let cut = fleet.nodes.len() - 1;
    let start = fleet.now();
    fleet.partition(|i| u32::from(i == cut));
    let (dead_first_s, dead_all_s) = first_and_all_others(fleet, cut, MemberStatus::Dead, LOOK);
    fleet.run_until((start + CUT_ONE_HOLD).max(fleet.now()));
    fleet.heal();
    let (alive_first_s, alive_all_s) =
        first_and_all_others(fleet, cut, MemberStatus::Alive, FINE_LOOK);
    CutOne {
        dead_first_s,
        dead_all_s,
        alive_first_s,
        alive_all_s,
    }
}

/// One size through every experiment.
pub fn one_size(n: usize, seed: u64, base: &SimArgs) -> SizeFigures {
    let started = Instant::now();
    let args = SimArgs {
        nodes: n,
        seed,
        ..base.clone()
    };
    let mut fleet = start_fleet(&args);
    let probe = fleet.timings().probe_interval;
    say(n, started, "cold start");
    // Cold start: how long until half, 90 %, 99 % and all of the nodes see every node.
    let mut shares: [Option<f64>; 4] = [None; 4];
    let marks = [0.5, 0.9, 0.99, 1.0];
    while fleet.now() < LIMIT {
        let running = fleet.running().count();
        let seeing = fleet
            .running()
            .filter(|&i| fleet.nodes[i].engine.active_members() + 1 == running)
            .count();
        for (k, mark) in marks.iter().enumerate() {
            if shares[k].is_none() && seeing as f64 >= mark * n as f64 {
                shares[k] = Some(secs(fleet.now()));
            }
        }
        if shares[3].is_some() {
            break;
        }
        let next = fleet.now() + FINE_LOOK;
        fleet.run_until(next);
    }
    let least_seen = fleet
        .running()
        .map(|i| fleet.nodes[i].engine.active_members() + 1)
        .min()
        .unwrap_or(0);
    let records_agreed_s = until(&mut fleet, agreed);
    say(n, started, "steady");
    let steady = traffic_over(&mut fleet, Duration::from_secs(30));

    say(n, started, "record change");
    let now = fleet.now();
    fleet.update_record(1, now, |r| r.databases.push("sales".into()));
    let (generation, version) = {
        let e = &fleet.nodes[1].engine;
        (e.id().generation, e.own_record().version)
    };
    let id1 = sim_node_id(1);
    let record_s = fleet
        .run_until_true(FINE_LOOK, LIMIT, |f| {
            f.running().filter(|&i| i != 1).all(|i| {
                f.nodes[i]
                    .engine
                    .records_for(std::slice::from_ref(&id1))
                    .first()
                    .is_some_and(|u| (u.generation, u.version) == (generation, version))
            })
        })
        .map(secs);

    say(n, started, "crash");
    fleet.crash(2);
    let (crash_first_s, crash_all_s) = first_and_all(&mut fleet, 2, MemberStatus::Dead);

    say(n, started, "leave");
    fleet.leave(3);
    let (_, leave_all_s) = first_and_all(&mut fleet, 3, MemberStatus::Left);

    say(n, started, "partition");
    let half = n / 2;
    fleet.partition(|i| u32::from(i >= half));
    fleet.run_until(fleet.now() + Duration::from_secs(20));
    fleet.heal();
    let heal_s = until(&mut fleet, agreed);

    say(n, started, "one node cut off");
    // Nodes 2 and 3 are gone (the crash and the leave), so the last one runs from N = 5 on.
    let cut = (n >= 5).then(|| cut_one(&mut fleet));

    say(n, started, "churn");
    // Churn: every 5 s one node crashes and the one crashed before comes back under a new
    // generation, for a minute.
    let before = sums(&fleet);
    let churn_start = fleet.now();
    let mut down: Option<usize> = None;
    for round in 0..12 {
        let victim = 4 + (round * 7919 + seed as usize) % (n - 4).max(1);
        if let Some(d) = down.take() {
            fleet.restart(d);
        }
        if victim < n && fleet.nodes[victim].is_running() {
            fleet.crash(victim);
            down = Some(victim);
        }
        fleet.run_until(fleet.now() + Duration::from_secs(5));
    }
    if let Some(d) = down {
        fleet.restart(d);
    }
    let after = sums(&fleet);
    let churn_secs = secs(fleet.now() - churn_start);
    let running = fleet.running().count().max(1) as f64;
    let churn = Rates {
        window_s: churn_secs,
        bytes_out: (after.0 - before.0) as f64 / churn_secs / running,
        datagrams_out: (after.1 - before.1) as f64 / churn_secs / running,
        stream_bytes: (after.2 - before.2) as f64 / churn_secs / running,
    };
    let _ = until(&mut fleet, agreed);

    // False positives at each loss rate, then with one slow node.
    let window = fp_window(n);
    let mut fp = Vec::new();
    for loss in LOSSES {
        say(
            n,
            started,
            &format!("false positives at {:.0} % loss", loss * 100.0),
        );
        fleet.net.loss = loss;
        fp.push(fp_run(&mut fleet, window, loss, None));
    }
    fleet.net.loss = 0.0;
    say(n, started, "false positives with one slow node");
    let slow = 5.min(n - 1);
    fleet.nodes[slow].slow = SLOW_BY;
    fp.push(fp_run(&mut fleet, window, 0.0, Some(slow)));
    fleet.nodes[slow].slow = Duration::ZERO;

    say(n, started, "done");
    let log2 = (n as f64).log2();
    SizeFigures {
        n,
        seed,
        cold_start_half_s: shares[0],
        cold_start_90_s: shares[1],
        cold_start_99_s: shares[2],
        cold_start_all_s: shares[3],
        cold_start_least_seen: least_seen,
        records_agreed_s,
        steady,
        record_spread_s: record_s,
        record_spread_periods: record_s.map(|s| s / secs(probe)),
        two_log2_n: 2.0 * log2,
        crash_first_dead_s: crash_first_s,
        crash_all_dead_s: crash_all_s,
        leave_all_left_s: leave_all_s,
        partition_heal_agreed_s: heal_s,
        cut_one: cut,
        churn,
        false_positives: fp,
        wall_s: started.elapsed().as_secs_f64(),
        events: fleet.events,
    }
}

/// One false-positive window: FPs counted by the watch (a live node declared dead by a peer),
/// and the rejoins of the slow node (how often it was declared dead).
fn fp_run(fleet: &mut SimFleet, window: Duration, loss: f64, slow: Option<usize>) -> FpWindow {
    let n = fleet.nodes.len();
    let mut watch = FalsePositiveWatch::new(n);
    let slow_rejoins_before = slow.map(|s| fleet.nodes[s].engine.stats().rejoins);
    let start = fleet.now();
    let mut node_seconds = 0.0;
    watch.look(fleet, false, false);
    // The first look takes in the rejoins of everything before the window.
    let rejoins_before = watch.rejoins;
    while fleet.now() < start + window {
        let next = fleet.now() + Duration::from_secs(1);
        fleet.run_until(next);
        node_seconds += fleet.running().count() as f64;
        watch.look(fleet, false, false);
    }
    let node_hours = node_seconds / 3600.0;
    FpWindow {
        loss,
        slow_node: slow.is_some(),
        window_s: secs(window),
        node_hours,
        false_positives: watch.count,
        rejoins: watch.rejoins - rejoins_before,
        per_node_hour: watch.count as f64 / node_hours.max(f64::MIN_POSITIVE),
        slow_node_declared_dead: slow
            .map(|s| fleet.nodes[s].engine.stats().rejoins - slow_rejoins_before.unwrap_or(0)),
    }
}

/// Every size, one after the other.
pub fn run(sizes: &[usize], seed: u64, base: &SimArgs) -> BenchReport {
    let sizes = sizes
        .iter()
        .map(|&n| one_size(n.max(6), seed, base))
        .collect();
    BenchReport {
        profile: base.profile.as_str().into(),
        latency_ms: base.latency.as_secs_f64() * 1000.0,
        seed,
        sizes,
    }
}

/// The table for BENCHMARKS.md.
pub fn render_table(report: &BenchReport) -> String {
    let o = |v: Option<f64>| v.map_or("not within 120 s".to_string(), |v| format!("{v:.1}"));
    let o2 = |v: Option<f64>| v.map_or("not within 120 s".to_string(), |v| format!("{v:.2}"));
    let mut t = String::new();
    t += "| N | cold start: 50 % / 90 % / 99 % / all see all (s) | fewest seen | record change to all (s, periods; 2 log2 N) | crash: first / all dead (s) | leave: all left (s) | partition heal: agreed (s) | steady B/s, datagrams/s per node | churn B/s, datagrams/s per node | wall (s) |\n";
    t += "|---|---|---|---|---|---|---|---|---|---|\n";
    for s in &report.sizes {
        t += &format!(
            "| {} | {} / {} / {} / {} | {} | {} ({}; {:.1}) | {} / {} | {} | {} | {:.0}, {:.2} | {:.0}, {:.2} | {:.0} |\n",
            s.n,
            o(s.cold_start_half_s),
            o(s.cold_start_90_s),
            o(s.cold_start_99_s),
            o(s.cold_start_all_s),
            s.cold_start_least_seen,
            o(s.record_spread_s),
            s.record_spread_periods.map_or("-".into(), |p| format!("{p:.1}")),
            s.two_log2_n,
            o(s.crash_first_dead_s),
            o(s.crash_all_dead_s),
            o(s.leave_all_left_s),
            o(s.partition_heal_agreed_s),
            s.steady.bytes_out,
            s.steady.datagrams_out,
            s.churn.bytes_out,
            s.churn.datagrams_out,
            s.wall_s
        );
    }
    t += "\n| N | one node cut off 10 s: dead on the first / every other node (s) | healed: alive on the first / every other node (s) |\n|---|---|---|\n";
    for s in &report.sizes {
        if let Some(c) = s.cut_one {
            t += &format!(
                "| {} | {} / {} | {} / {} |\n",
                s.n,
                o(c.dead_first_s),
                o(c.dead_all_s),
                o2(c.alive_first_s),
                o2(c.alive_all_s)
            );
        }
    }
    t += "\n| N | window | false positives per node-hour at 0 / 1 / 5 / 10 % loss | with one node 600 ms slow: others / the slow node declared dead |\n|---|---|---|---|\n";
    for s in &report.sizes {
        let at = |loss: f64| {
            s.false_positives
                .iter()
                .find(|w| !w.slow_node && (w.loss - loss).abs() < 1e-9)
                .map_or("-".into(), |w| {
                    format!("{:.2} ({})", w.per_node_hour, w.false_positives)
                })
        };
        let slow = s.false_positives.iter().find(|w| w.slow_node);
        t += &format!(
            "| {} | {:.0} s | {} / {} / {} / {} | {} |\n",
            s.n,
            slow.map_or(0.0, |w| w.window_s),
            at(0.0),
            at(0.01),
            at(0.05),
            at(0.10),
            slow.map_or("-".into(), |w| format!(
                "{} / {} times",
                w.false_positives,
                w.slow_node_declared_dead.unwrap_or(0)
            ))
        );
    }
    t
}
