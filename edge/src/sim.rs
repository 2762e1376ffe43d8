//! `edge-fleet sim`: N membership engines (the node's own code) in this one process on
//! virtual time, over a simulated network, through a fault schedule; the same seed gives the
//! same figures. `--check` and `--soak` run the property checks on random schedules instead.
//!
//! A run: the nodes start within `--start-spread` (1 s), each joining through one of a few
//! seed nodes (see `sim_fleet`); once all hold all, the scenario's faults start (their times
//! count from then); after the last fault ends the run measures how long until every live
//! node agrees on members and records.

use std::path::Path;
use std::time::{Duration, Instant};

use bocluster::membership::sim::faults::{random_schedule, Applier, Scenario};
use bocluster::membership::sim::properties::{check, CheckRun, FalsePositiveWatch};
use bocluster::membership::sim::SimFleet;

use crate::procfs;
use crate::reports::sim::{Rates, SimCost, SimFigures, SimReport, SimSample, SimSettings};
use crate::sim_fleet::{agreed, start_fleet, SimArgs, ROWS_UP_TO};

/// How often the run samples traffic and looks for false positives (virtual time).
const TICK: Duration = Duration::from_secs(1);

/// How often a forming fleet is looked at (virtual time): a small one forms in a few
/// hundred milliseconds, and coarser steps would make up much of the figure.
const FORMING_LOOK: Duration = Duration::from_millis(10);

/// How often progress is printed (wall time).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub fn run(args: &SimArgs) -> Result<(), String> {
    if args.check || args.soak {
        return soak(args);
    }
    if args.bench {
        let report = crate::sim_bench::run(&args.sizes, args.seed, args);
        let table = crate::sim_bench::render_table(&report);
        print!("{table}");
        if let Some(out) = &args.out {
            let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
            write_file(out, &json)?;
            write_file(&out.with_extension("md"), &table)?;
            eprintln!("sim: wrote {} and its .md", out.display());
        }
        return Ok(());
    }
    let scenario = match &args.scenario {
        Some(path) => read_scenario(path, args.nodes)?,
        None => Scenario::default(),
    };
    let report = run_one(args, &scenario, true);
    print!("{}", describe(&report));
    if let Some(out) = &args.out {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        write_file(out, &json)?;
        eprintln!("sim: wrote {}", out.display());
    }
    Ok(())
}

pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads and checks a scenario file; errors name the file, and the line or the event.
pub fn read_scenario(path: &Path, nodes: usize) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let scenario = Scenario::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    scenario
        .validate(nodes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(scenario)
}

/// The settings of a run, as its report states them.
pub fn settings(args: &SimArgs) -> SimSettings {
    SimSettings {
        nodes: args.nodes,
        seed: args.seed,
        profile: args.profile.as_str().into(),
        duration_s: args.duration.as_secs_f64(),
        loss: args.loss,
        latency_ms: ms(args.latency),
        jitter_ms: ms(args.jitter),
        reorder: args.reorder,
        mtu: args.mtu,
        join_seeds: args.join_seeds,
        start_spread_ms: ms(args.start_spread),
        scenario: args.scenario.as_ref().map(|p| p.display().to_string()),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sums of what every node sent, for rates over a window.
#[derive(Clone, Copy, Default)]
struct Totals {
    at: Duration,
    bytes: u64,
    datagrams: u64,
    stream: u64,
}

fn totals(fleet: &SimFleet) -> Totals {
    let mut t = Totals {
        at: fleet.now(),
        ..Totals::default()
    };
    for node in &fleet.nodes {
        t.bytes += node.traffic.bytes_out;
        t.datagrams += node.traffic.datagrams_out;
        t.stream += node.traffic.stream_bytes;
    }
    t
}

/// Per node per second between two totals, for `nodes` nodes.
fn rates(from: Totals, to: Totals, nodes: f64) -> Rates {
    let secs = (to.at - from.at).as_secs_f64();
    if secs <= 0.0 || nodes <= 0.0 {
        return Rates::default();
    }
    let per = |a: u64, b: u64| (b - a) as f64 / secs / nodes;
    Rates {
        window_s: secs,
        bytes_out: per(from.bytes, to.bytes),
        datagrams_out: per(from.datagrams, to.datagrams),
        stream_bytes: per(from.stream, to.stream),
    }
}

/// One second of the run: who runs, who sees all, what was sent.
fn sample(fleet: &SimFleet, from: Totals, to: Totals) -> SimSample {
    let running = fleet.running().count();
    let r = rates(from, to, running as f64);
    let active: Vec<usize> = fleet
        .running()
        .map(|i| fleet.nodes[i].engine.active_members())
        .collect();
    SimSample {
        t_s: fleet.now().as_secs_f64(),
        running,
        seeing_all: active.iter().filter(|&&a| a + 1 == running).count(),
        least_seen: active.iter().min().map_or(0, |a| a + 1),
        bytes_out_per_node: r.bytes_out,
        datagrams_out_per_node: r.datagrams_out,
    }
}

/// Prints where a long run is, every few seconds of wall time.
struct Progress {
    started: Instant,
    last: Instant,
    show: bool,
}

impl Progress {
    fn tick(&mut self, fleet: &SimFleet, until: Duration, phase: &str) {
        if !self.show || self.last.elapsed() < PROGRESS_EVERY {
            return;
        }
        self.last = Instant::now();
        let rss = procfs::rss_kib(std::process::id()).unwrap_or(0);
        eprintln!(
            "sim: {phase}: {:.0}/{:.0} s virtual, {} running, {} events, {:.0} s wall, {} MiB resident",
            fleet.now().as_secs_f64(),
            until.as_secs_f64(),
            fleet.running().count(),
            fleet.events,
            self.started.elapsed().as_secs_f64(),
            rss / 1024
        );
    }
}

/// One run: forms the fleet, plays the scenario, measures.
pub fn run_one(args: &SimArgs, scenario: &Scenario, show_progress: bool) -> SimReport {
    let started = Instant::now();
    let mut progress = Progress {
        started,
        last: started,
        show: show_progress,
    };
    let rss_before = procfs::rss_kib(std::process::id()).unwrap_or(0);
    let mut fleet = start_fleet(args);
    let end = args.duration;
    let mut samples = Vec::new();
    let mut formed = None;
    let mut last = totals(&fleet);
    while fleet.now() < end {
        if fleet.all_active() {
            formed = Some(fleet.now());
            break;
        }
        let next = (fleet.now() + FORMING_LOOK).min(end);
        fleet.run_until(next);
        if fleet.now() >= last.at + TICK {
            let now_totals = totals(&fleet);
            samples.push(sample(&fleet, last, now_totals));
            last = now_totals;
        }
        progress.tick(&fleet, end, "forming");
    }
    let rss_formed = procfs::rss_kib(std::process::id()).unwrap_or(0);
    let origin = formed.unwrap_or(end);
    let steps = scenario.steps(origin);
    let faults_from = steps.first().map(|s| s.at);
    let faults_until = (!steps.is_empty()).then(|| origin + scenario.ends_at());
    let mut applier = Applier::new(args.loss);
    let mut watch = FalsePositiveWatch::new(args.nodes);
    let mut log = Vec::new();
    let start_totals = totals(&fleet);
    let mut steady_end = None;
    let mut faults_end = None;
    let mut settled = None;
    last = start_totals;
    let mut node_seconds = 0.0;
    let mut next_step = 0;
    let scan_rows = args.nodes <= ROWS_UP_TO;
    while fleet.now() < end {
        let tick_end = (fleet.now() + TICK).min(end);
        while next_step < steps.len() && steps[next_step].at <= tick_end {
            let s = &steps[next_step];
            fleet.run_until(s.at);
            if Some(s.at) == faults_from && steady_end.is_none() {
                steady_end = Some(totals(&fleet));
            }
            applier.apply(&mut fleet, s);
            log.push(format!(
                "{:.1} s: event {} {}",
                (s.at - origin).as_secs_f64(),
                s.event,
                match &s.action {
                    bocluster::membership::sim::faults::Action::Start(f) => f.name().to_string(),
                    bocluster::membership::sim::faults::Action::End => "ends".into(),
                }
            ));
            next_step += 1;
        }
        fleet.run_until(tick_end);
        let now_totals = totals(&fleet);
        let running = fleet.running().count();
        node_seconds += running as f64 * (now_totals.at - last.at).as_secs_f64();
        samples.push(sample(&fleet, last, now_totals));
        last = now_totals;
        watch.look(
            &fleet,
            applier.partitioned,
            scan_rows && applier.partitioned,
        );
        if let Some(until) = faults_until {
            if fleet.now() >= until {
                if faults_end.is_none() {
                    faults_end = Some(totals(&fleet));
                }
                if settled.is_none() && agreed(&fleet) {
                    settled = Some(fleet.now() - until);
                }
            }
        }
        progress.tick(&fleet, end, "running");
    }
    let final_totals = totals(&fleet);
    let steady_to = steady_end.unwrap_or(final_totals);
    let n = args.nodes as f64;
    let steady = rates(start_totals, steady_to, n);
    let under_faults = steady_end.map(|from| {
        let to = faults_end.unwrap_or(final_totals);
        let secs = (to.at - from.at).as_secs_f64();
        let avg_running = samples
            .iter()
            .filter(|s| s.t_s >= from.at.as_secs_f64() && s.t_s <= to.at.as_secs_f64())
            .map(|s| s.running as f64)
            .sum::<f64>()
            / secs.max(1.0);
        rates(from, to, avg_running.max(1.0))
    });
    let oversize = fleet.nodes.iter().map(|n| n.traffic.oversize).sum();
    let figures = SimFigures {
        formed_after_s: formed.map(|t| t.as_secs_f64()),
        steady,
        under_faults,
        steps: log,
        settled_after_s: settled.map(|d| d.as_secs_f64()),
        false_positives: watch.count,
        rejoins: watch.rejoins,
        node_hours: node_seconds / 3600.0,
        oversize,
        datagrams_sent: fleet.datagrams_sent,
        bytes_sent: fleet.bytes_sent,
        samples,
    };
    let peak = procfs::peak_rss_kib(std::process::id()).unwrap_or(0);
    SimReport {
        settings: settings(args),
        figures,
        cost: SimCost {
            wall_s: started.elapsed().as_secs_f64(),
            events: fleet.events,
            peak_rss_mib: peak as f64 / 1024.0,
            rss_per_node_kib: rss_formed.saturating_sub(rss_before) as f64 / n.max(1.0),
        },
    }
}

/// The figures of a run as text (two runs of one seed print the same).
pub fn figures_text(f: &SimFigures) -> String {
    let opt = |v: Option<f64>| v.map_or("never".to_string(), |v| format!("{v:.1} s"));
    let mut text = String::new();
    text += &format!("formed after: {}\n", opt(f.formed_after_s));
    text += &format!(
        "steady: {:.0} B/s and {:.2} datagrams/s per node, {:.0} B/s of QUIC answers (over {:.0} s)\n",
        f.steady.bytes_out, f.steady.datagrams_out, f.steady.stream_bytes, f.steady.window_s
    );
    if let Some(r) = &f.under_faults {
        text += &format!(
            "under faults: {:.0} B/s and {:.2} datagrams/s per node, {:.0} B/s of QUIC answers (over {:.0} s)\n",
            r.bytes_out, r.datagrams_out, r.stream_bytes, r.window_s
        );
    }
    for step in &f.steps {
        text += &format!("  {step}\n");
    }
    if !f.steps.is_empty() {
        text += &format!("agreed after the last fault: {}\n", opt(f.settled_after_s));
    }
    text += &format!(
        "false positives: {} ({} rejoins) over {:.2} node-hours\n",
        f.false_positives, f.rejoins, f.node_hours
    );
    text += &format!(
        "datagrams: {} sent, {} bytes, {} over the MTU\n",
        f.datagrams_sent, f.bytes_sent, f.oversize
    );
    text
}

fn describe(report: &SimReport) -> String {
    let s = &report.settings;
    let c = &report.cost;
    format!(
        "sim: {} nodes, seed {}, {} profile, {:.0} s virtual, loss {}, latency {} ms\n{}wall {:.1} s, {} events, peak {:.0} MiB resident, {:.1} KiB per node\n",
        s.nodes,
        s.seed,
        s.profile,
        s.duration_s,
        s.loss,
        s.latency_ms,
        figures_text(&report.figures),
        c.wall_s,
        c.events,
        c.peak_rss_mib,
        c.rss_per_node_kib
    )
}

/// `--check` (one seed) and `--soak` (many): the property checks on random schedules.
fn soak(args: &SimArgs) -> Result<(), String> {
    let count = if args.soak { args.seeds.max(1) } else { 1 };
    let started = Instant::now();
    let mut failed = Vec::new();
    for seed in args.seed..args.seed + count {
        let run = CheckRun::new(args.nodes, seed);
        match check(&run) {
            Ok(outcome) => println!(
                "seed {seed}: ok: {} faults, agreed {:.1} s after the last (bound {:.0} s), {} false positives, {} rejoins",
                outcome.scenario.events.len(),
                outcome.settled_after.as_secs_f64(),
                outcome.bound.as_secs_f64(),
                outcome.false_positives,
                outcome.rejoins
            ),
            Err(failure) => {
                println!("{failure}");
                if !args.soak {
                    // One seed looked at closely: its schedule, to read or to edit and replay
                    // with --scenario.
                    let schedule = random_schedule(run.nodes, run.window, seed);
                    match serde_json::to_string_pretty(&schedule) {
                        Ok(json) => println!("the schedule of seed {seed}:\n{json}"),
                        Err(e) => println!("the schedule of seed {seed}: not printable: {e}"),
                    }
                }
                failed.push(seed);
            }
        }
    }
    println!(
        "soak: {} seeds at {} nodes, {} failed{}, {:.0} s wall",
        count,
        args.nodes,
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({failed:?})")
        },
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {count} seeds failed", failed.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn args(extra: &[&str]) -> SimArgs {
        let mut argv = vec!["sim"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).sim
    }

    #[test]
    fn one_seed_gives_the_same_figures_twice_and_another_seed_others() {
        let scenario = Scenario::from_json(
            r#"{"events": [
                {"at": "5s", "fault": "crash", "nodes": {"count": 2}},
                {"at": "8s", "fault": "loss", "rate": 0.2, "for": "5s"},
                {"at": "10s", "fault": "partition", "split": 0.3},
                {"at": "20s", "fault": "heal"},
                {"at": "22s", "fault": "record", "nodes": [1]}
            ]}"#,
        )
        .unwrap();
        let a = args(&[
            "--nodes",
            "12",
            "--duration",
            "90s",
            "--seed",
            "7",
            "--jitter",
            "3ms",
        ]);
        let first = run_one(&a, &scenario, false);
        let second = run_one(&a, &scenario, false);
        assert_eq!(first.figures, second.figures);
        assert_eq!(figures_text(&first.figures), figures_text(&second.figures));
        assert!(first.figures.formed_after_s.is_some());
        assert!(
            first.figures.settled_after_s.is_some(),
            "{}",
            figures_text(&first.figures)
        );
        let other = run_one(
            &args(&[
                "--nodes",
                "12",
                "--duration",
                "90s",
                "--seed",
                "8",
                "--jitter",
                "3ms",
            ]),
            &scenario,
            false,
        );
        assert_ne!(first.figures.bytes_sent, other.figures.bytes_sent);
    }

    #[test]
    fn a_scenario_file_with_a_node_out_of_range_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(
            &path,
            r#"{"events": [{"at": "1s", "fault": "crash", "nodes": [40]}]}"#,
        )
        .unwrap();
        let e = read_scenario(&path, 10).unwrap_err();
        assert!(e.contains("event 0") && e.contains("node 40"), "{e}");
        std::fs::write(&path, "{\"events\": [\n{\"at\": 3}]}").unwrap();
        let e = read_scenario(&path, 10).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }
}
