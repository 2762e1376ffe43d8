//! `edge-fleet compare`: the same scenarios against a bocluster fleet and a Serf fleet of the
//! same size on the same machine, side by side, with the ratio bocluster / Serf per figure.
//!
//! Per size and run, each system gets a fresh fleet (node 0 first, then the rest seeded to
//! it) and goes through: cold start (all N see all N alive); on the first run, a steady window
//! (false positives, bandwidth, memory, CPU); a change on one node until every node sees it;
//! a join brought in by node 0 (ADD CLIENT / `serf join`); a join through node 0 (BO_MASTER /
//! `serf agent -join`); SIGKILL of one node until node 0, then every other node, reports it
//! dead. The two systems alternate within each run, so drift of the machine touches both.
//! With `--churn`, each run then also puts a fleet of each system of its own through the churn
//! and fault scenarios of [`crate::churn`] (10 % killed and restarted, partition and heal,
//! address change, packet loss, bandwidth under churn); without it, the runs and their timings
//! are as before.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use crate::churn;
use crate::netns::ByteCounters;
use crate::procfs::{self, Machine};
use crate::reports::churn::ChurnSettings;
use crate::reports::compare::{
    CompareReport, Figure, GossipIntervals, RunTimes, SizeReport, Steady, SystemResult,
};
use crate::runs::{
    all_alive, count_bytes, figure, ms, names, progress, show_ms, slowest, target_ratio, wait_each,
    watch_false_positives, write_file, RunContext, Started, EVENT_LIMIT, STEADY_POLL,
};
use crate::serf;
use crate::stats::{ratio, Stat};
use crate::systems::{BoFleet, Fleet, Liveness, SerfFleet, System, MAX_NODES};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Fleet sizes, comma-separated (3..=200)
    #[arg(long, value_delimiter = ',', default_value = "10,50")]
    pub sizes: Vec<usize>,
    /// Runs per size (a fresh fleet each); figures are medians over them
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Steady window for false positives, bandwidth, memory and CPU (first run of each size;
    /// 0s skips it). The figure is 5m.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub steady: Duration,
    /// Also write the JSON report to this file (and the tables beside it, as .md)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Draw PNG charts (convergence, detection, bandwidth against N) into this folder
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Poll Serf with `serf members -format=json` processes instead of its RPC protocol
    #[arg(long)]
    pub serf_cli: bool,
    /// Run bocluster only
    #[arg(long)]
    pub no_serf: bool,
    /// Also run the churn scenarios on a fleet of each system of their own: SIGKILL of 10 %
    /// of the nodes and their restart, one observer paused (--pause), partition and heal of
    /// one node, a node restarted at another address, bandwidth under that churn, and (first run)
    /// a packet-loss window.
    /// Needs root (iptables in the private namespace).
    #[arg(long)]
    pub churn: bool,
    /// The packet-loss window of --churn (5 % of the fleet's UDP dropped; 0s skips it)
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub loss_window: Duration,
    /// How long --churn freezes one observer (SIGSTOP, then SIGCONT; 0s skips it)
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub pause: Duration,
    /// How long a fleet may take to form (every node sees every node alive) before its run is
    /// given up and named under the table. Serf's fleets of 200 can need more than the default
    /// on 2 cores; their cold start is then measured, not cut off.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub form_limit: Duration,
}

/// Between two questions to node 0 while a join is awaited. A join takes about as long as
/// [`crate::runs::POLL`] in both systems, so asking every 10 ms measured mostly the poll; one question
/// costs node 0 well under a millisecond (one HTTP request or one RPC call).
const JOIN_POLL: Duration = Duration::from_millis(1);

pub fn run(bin: &Path, args: &CompareArgs, counting: bool) -> Result<(), String> {
    if args.sizes.is_empty() || args.runs == 0 {
        return Err("--sizes and --runs must not be empty".into());
    }
    if let Some(bad) = args
        .sizes
        .iter()
        .find(|&&n| !(3..=MAX_NODES - 50).contains(&n))
    {
        return Err(format!(
            "--sizes: {bad} is out of range 3..={}",
            MAX_NODES - 50
        ));
    }
    let serf_bin = if args.no_serf {
        None
    } else {
        match serf::locate_or_install() {
            Ok((path, note)) => {
                eprintln!("compare: serf: {note}");
                Some((path, note))
            }
            Err(e) => {
                eprintln!("compare: NOTICE: {e}; running bocluster only (no ratios)");
                None
            }
        }
    };
    if args.churn && !counting {
        return Err("--churn needs root and iptables in a private network namespace".into());
    }
    let machine = Machine::describe();
    eprintln!("compare: machine: {machine}");
    if !counting {
        eprintln!("compare: NOTICE: no private network namespace with iptables (needs root); bandwidth is skipped");
    }
    let mut sizes = Vec::new();
    for &n in &args.sizes {
        let mut bo = SystemResult::default();
        let mut sf = serf_bin.as_ref().map(|_| SystemResult::default());
        for run in 0..args.runs {
            let steady = (run == 0 && !args.steady.is_zero()).then_some(args.steady);
            let ctx = RunContext {
                n,
                run,
                runs: args.runs,
                steady,
                counting,
                form_limit: args.form_limit,
            };
            let outcome = one_run(&ctx, System::Bocluster, |dir| {
                BoFleet::start(bin, dir, n).map(|(f, t)| (Box::new(f) as Box<dyn Fleet>, t))
            });
            if let Some((times, st)) = completed(&mut bo, &ctx, "run", outcome) {
                bo.runs.push(times);
                if st.is_some() {
                    bo.steady = st;
                }
            }
            if let (Some((path, _)), Some(sf)) = (&serf_bin, sf.as_mut()) {
                let outcome = one_run(&ctx, System::Serf, |dir| {
                    SerfFleet::start(path, dir, n, args.serf_cli)
                        .map(|(f, t)| (Box::new(f) as Box<dyn Fleet>, t))
                });
                if let Some((times, st)) = completed(sf, &ctx, "run", outcome) {
                    sf.runs.push(times);
                    if st.is_some() {
                        sf.steady = st;
                    }
                }
            }
            if args.churn {
                let loss = (run == 0 && !args.loss_window.is_zero()).then_some(args.loss_window);
                let pause = (!args.pause.is_zero()).then_some(args.pause);
                let outcome = churn::churn_run(&ctx, System::Bocluster, loss, pause, |dir| {
                    BoFleet::start(bin, dir, n).map(|(f, t)| (Box::new(f) as Box<dyn Fleet>, t))
                });
                if let Some((times, lw)) = completed(&mut bo, &ctx, "churn run", outcome) {
                    bo.churn.push(times);
                    if lw.is_some() {
                        bo.loss = lw;
                    }
                }
                if let (Some((path, _)), Some(sf)) = (&serf_bin, sf.as_mut()) {
                    let outcome = churn::churn_run(&ctx, System::Serf, loss, pause, |dir| {
                        SerfFleet::start(path, dir, n, args.serf_cli)
                            .map(|(f, t)| (Box::new(f) as Box<dyn Fleet>, t))
                    });
                    if let Some((times, lw)) = completed(sf, &ctx, "churn run", outcome) {
                        sf.churn.push(times);
                        if lw.is_some() {
                            sf.loss = lw;
                        }
                    }
                }
            }
        }
        sizes.push(size_report(n, bo, sf));
    }
    let report = CompareReport {
        machine,
        bocluster_version: bocluster::node::VERSION.to_string(),
        serf_version: serf_bin.as_ref().map(|(p, _)| serf::version(p)),
        serf_note: serf_bin
            .as_ref()
            .map_or_else(|| "not run".to_string(), |(_, note)| note.clone()),
        runs: args.runs,
        steady_s: args.steady.as_secs_f64(),
        sizes,
        bandwidth_measured: counting,
        serf_polling: if args.serf_cli {
            "serf members -format=json".into()
        } else {
            "RPC (MessagePack over TCP), one connection per agent".into()
        },
        gossip_interval_ms: GossipIntervals {
            bocluster: System::Bocluster.gossip_interval().as_secs_f64() * 1000.0,
            serf: System::Serf.gossip_interval().as_secs_f64() * 1000.0,
        },
        churn: args
            .churn
            .then(|| ChurnSettings::new(args.loss_window, args.pause)),
    };
    let tables = render_tables(&report);
    println!("{tables}");
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    println!("{json}");
    if let Some(out) = &args.out {
        write_file(out, &json)?;
        let md = out.with_extension("md");
        write_file(&md, &tables)?;
        eprintln!("compare: wrote {} and {}", out.display(), md.display());
    }
    if let Some(dir) = &args.plots {
        match crate::plot::plot_compare(&report, dir) {
            Ok(files) => {
                for f in files {
                    eprintln!("compare: wrote {}", f.display());
                }
            }
            Err(e) => eprintln!("compare: NOTICE: no plots: {e}"),
        }
    }
    Ok(())
}

fn one_run(
    ctx: &RunContext,
    system: System,
    start: impl FnOnce(&Path) -> Started,
) -> Result<(RunTimes, Option<Steady>), String> {
    let n = ctx.n;
    let say = |what: &str| progress(system, n, ctx.run, ctx.runs, what);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    say(&format!("starting {n} nodes"));
    let (mut fleet, started) = start(dir.path())?;
    let fleet = fleet.as_mut();
    let mut times = RunTimes::default();

    let initial: Vec<usize> = (0..n).collect();
    let initial_names = names(fleet, &initial);
    let (cold, _) = wait_each(fleet, &initial, started, ctx.form_limit, |view| {
        all_alive(view, &initial_names)
    });
    times.cold_start_ms = slowest(&cold);
    let Some(cold_ms) = times.cold_start_ms else {
        let formed = cold.iter().filter(|t| t.is_some()).count();
        return Err(format!(
            "{} fleet of {n} did not form in {:?}: {formed} of {n} nodes saw all alive",
            system.name(),
            ctx.form_limit
        ));
    };
    say(&format!(
        "formed: every node sees {n} alive after {cold_ms:.0} ms"
    ));

    let steady = match ctx.steady {
        Some(window) => Some(steady_window(fleet, n, window, ctx.counting, &say)?),
        None => None,
    };

    // A change on one node until every node sees it.
    let target = n / 2;
    let marker = format!("chg{}_{n}", ctx.run);
    let target_name = fleet.name(target);
    let t = Instant::now();
    fleet.change(target, &marker)?;
    let (seen, sweep) = wait_each(fleet, &initial, t, EVENT_LIMIT, |view| {
        view.iter()
            .any(|s| s.name == target_name && s.markers.contains(&marker))
    });
    times.change_ms = slowest(&seen);
    times.change_sweep_ms = sweep;
    say(&format!(
        "change on {target_name} seen by all: {} (one sweep over the nodes: {})",
        show_ms(times.change_ms),
        show_ms(times.change_sweep_ms)
    ));

    // Node 0 brings a new node in.
    let added = fleet.start_joiner(false)?;
    let t = Instant::now();
    fleet.add_from_seed(added)?;
    times.add_join_ms = wait_seed_sees(fleet, added, t);
    say(&format!(
        "{} -> alive on node 0: {}",
        match system {
            System::Bocluster => "ADD CLIENT",
            System::Serf => "serf join",
        },
        show_ms(times.add_join_ms)
    ));

    // The fleet takes the added node in before the next join is timed (not timed): that join
    // would otherwise be measured while every node still gossips about and pulls the record
    // of this one, which only the faster side's ADD CLIENT leaves it to.
    let settled: Vec<usize> = (0..fleet.len()).collect();
    let settled_names = names(fleet, &settled);
    let (in_again, _) = wait_each(fleet, &settled, Instant::now(), ctx.form_limit, |view| {
        all_alive(view, &settled_names)
    });
    if slowest(&in_again).is_none() {
        say("NOTICE: the fleet did not take the added node in; timing the next join anyway");
    }

    // A new node joins through node 0.
    let t = Instant::now();
    let joiner = fleet.start_joiner(true)?;
    times.master_join_ms = wait_seed_sees(fleet, joiner, t);
    say(&format!(
        "{} start -> alive on node 0: {}",
        match system {
            System::Bocluster => "BO_MASTER client",
            System::Serf => "serf agent -join",
        },
        show_ms(times.master_join_ms)
    ));

    // Everyone knows everyone again before the kill (not timed).
    let everyone: Vec<usize> = (0..fleet.len()).collect();
    let everyone_names = names(fleet, &everyone);
    let (again, _) = wait_each(fleet, &everyone, Instant::now(), ctx.form_limit, |view| {
        all_alive(view, &everyone_names)
    });
    if slowest(&again).is_none() {
        say("NOTICE: the fleet did not converge again after the joins; killing anyway");
    }

    // SIGKILL one node of the initial fleet: dead on node 0, then on every other node.
    let victim = n - 1;
    let victim_name = fleet.name(victim);
    fleet.kill(victim);
    let (observers, dead, sweep) = wait_running_list(fleet, &victim_name, Liveness::Dead);
    times.detect_first_ms = dead[0].map(ms);
    times.detect_all_ms = slowest(&dead);
    times.detect_sweep_ms = sweep;
    say(&format!(
        "SIGKILL {victim_name} -> dead on node 0: {}, on all {}: {} (one sweep: {})",
        show_ms(times.detect_first_ms),
        observers.len(),
        show_ms(times.detect_all_ms),
        show_ms(times.detect_sweep_ms)
    ));

    // A graceful stop of another node of the initial fleet: left on every other node.
    let leaver = n - 2;
    let leaver_name = fleet.name(leaver);
    fleet.stop_gracefully(leaver);
    let (observers, left, _) = wait_running_list(fleet, &leaver_name, Liveness::Left);
    times.leave_all_ms = slowest(&left);
    if times.leave_all_ms.is_none() {
        for (k, &observer) in observers.iter().enumerate() {
            if left[k].is_none() {
                let seen = fleet.view(observer).map(|view| {
                    view.into_iter()
                        .find(|s| s.name == leaver_name)
                        .map(|s| format!("{:?}", s.status))
                });
                say(&format!(
                    "NOTICE: {} never listed {leaver_name} left: it lists {seen:?}",
                    fleet.name(observer)
                ));
            }
        }
    }
    say(&format!(
        "graceful stop of {leaver_name} -> left on all {}: {}",
        observers.len(),
        show_ms(times.leave_all_ms)
    ));
    Ok((times, steady))
}

/// Waits, from now, until every running node lists `name` with `status` (after a kill or a
/// graceful stop): the observers, when each saw it, and the median sweep.
fn wait_running_list(
    fleet: &mut dyn Fleet,
    name: &str,
    status: Liveness,
) -> (Vec<usize>, Vec<Option<Duration>>, Option<f64>) {
    let since = Instant::now();
    let observers: Vec<usize> = (0..fleet.len()).filter(|&i| fleet.running(i)).collect();
    let (seen, sweep) = wait_each(fleet, &observers, since, EVENT_LIMIT, |view| {
        view.iter().any(|s| s.name == name && s.status == status)
    });
    (observers, seen, sweep)
}

fn wait_seed_sees(fleet: &mut dyn Fleet, node: usize, since: Instant) -> Option<f64> {
    while since.elapsed() < EVENT_LIMIT {
        if fleet.seed_sees_alive(node).unwrap_or(false) {
            return Some(ms(since.elapsed()));
        }
        std::thread::sleep(JOIN_POLL);
    }
    None
}

/// How long a formed fleet is left alone before its steady window (see `steady_window`).
const SETTLE: Duration = Duration::from_secs(15);

fn steady_window(
    fleet: &mut dyn Fleet,
    n: usize,
    window: Duration,
    counting: bool,
    say: &dyn Fn(&str),
) -> Result<Steady, String> {
    // A fleet that has just formed is still spending the broadcasts of its joins (every
    // member and record is piggybacked several times by every node, in both systems): the
    // steady window starts once that tail has passed.
    say(&format!("settling for {SETTLE:?} before the steady window"));
    std::thread::sleep(SETTLE);
    let counters = count_bytes(fleet, n, counting, "bandwidth skipped", say);
    say(&format!(
        "steady window of {window:?}: polling every node every {STEADY_POLL:?}"
    ));
    let pids: Vec<Option<u32>> = (0..n).map(|i| fleet.pid(i)).collect();
    let cpu_before: Vec<Option<Duration>> =
        pids.iter().map(|p| p.and_then(procfs::cpu_time)).collect();
    let bytes_before = counters.as_ref().map(ByteCounters::read).transpose()?;
    let start = Instant::now();
    let live: BTreeSet<String> = (0..n).map(|i| fleet.name(i)).collect();
    let observers: Vec<usize> = (0..n).collect();
    let watched = watch_false_positives(fleet, &observers, &live, window, "steady", say);
    let elapsed = start.elapsed().as_secs_f64();
    let bytes = match (&counters, bytes_before) {
        (Some(c), Some(before)) => Some(c.read()?.since(&before)),
        _ => None,
    };
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu_before)
        .filter_map(|(pid, before)| {
            let after = pid.and_then(procfs::cpu_time)?;
            Some((after.saturating_sub((*before)?)).as_secs_f64() / elapsed * 100.0)
        })
        .collect();
    let rss: Vec<f64> = pids
        .iter()
        .filter_map(|p| p.and_then(procfs::rss_kib).map(|k| k as f64))
        .collect();
    let private: Vec<f64> = pids
        .iter()
        .filter_map(|p| p.and_then(procfs::private_kib).map(|k| k as f64))
        .collect();
    let per_s = |v: &[u64]| -> Option<Stat> {
        Stat::of(&v.iter().map(|b| *b as f64 / elapsed).collect::<Vec<_>>())
    };
    let steady = Steady {
        window_s: elapsed,
        polls: watched.polls,
        false_positive_nodes: watched.nodes.len(),
        false_positive_reports: watched.reports,
        bytes_in_per_s: bytes.as_ref().and_then(|b| per_s(&b.bytes_in)),
        bytes_out_per_s: bytes.as_ref().and_then(|b| per_s(&b.bytes_out)),
        packets_in_per_s: bytes.as_ref().and_then(|b| per_s(&b.packets_in)),
        packets_out_per_s: bytes.as_ref().and_then(|b| per_s(&b.packets_out)),
        rss_kib: Stat::of(&rss),
        private_kib: Stat::of(&private),
        cpu_percent: Stat::of(&cpu),
    };
    say(&format!(
        "steady done: {} false positives, in {} out {} per node, RSS {} (private {}), CPU {}",
        steady.false_positive_nodes,
        show(steady.bytes_in_per_s.as_ref(), "B/s"),
        show(steady.bytes_out_per_s.as_ref(), "B/s"),
        show(steady.rss_kib.as_ref(), "KiB"),
        show(steady.private_kib.as_ref(), "KiB"),
        show(steady.cpu_percent.as_ref(), "%"),
    ));
    Ok(steady)
}

/// Key, label and the run's value (the target is [`target_ratio`]'s).
type TimingRow = (&'static str, &'static str, fn(&RunTimes) -> Option<f64>);
/// Key, label, unit and the steady window's value (the target is [`target_ratio`]'s).
type SteadyRow = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Steady) -> Option<Stat>,
);

/// A run's figures, or `None` after noting in `result` why it did not complete: one fleet that
/// does not form (Serf's, at N = 200, once in 120 s) must not throw away the runs before it.
fn completed<T>(
    result: &mut SystemResult,
    ctx: &RunContext,
    what: &str,
    outcome: Result<T, String>,
) -> Option<T> {
    match outcome {
        Ok(figures) => Some(figures),
        Err(error) => {
            let failure = format!("N = {} {what} {}/{}: {error}", ctx.n, ctx.run + 1, ctx.runs);
            eprintln!("compare: NOTICE: {failure}; the figures are over the other runs");
            result.failed.push(failure);
            None
        }
    }
}

/// The figures of one size, from both systems' results.
pub fn size_report(n: usize, bo: SystemResult, sf: Option<SystemResult>) -> SizeReport {
    let log2_n = (n as f64).log2();
    let runs = |r: &SystemResult, f: fn(&RunTimes) -> Option<f64>| -> Option<Stat> {
        Stat::of(&r.runs.iter().filter_map(f).collect::<Vec<_>>())
    };
    let steady = |r: &SystemResult, f: fn(&Steady) -> Option<Stat>| r.steady.as_ref().and_then(f);
    let mut figures = Vec::new();
    let timing: [TimingRow; 8] = [
        ("cold_start_ms", "cold start: all N see N alive", |t| {
            t.cold_start_ms
        }),
        (
            "master_join_ms",
            "join: BO_MASTER client / agent -join -> alive",
            |t| t.master_join_ms,
        ),
        (
            "add_join_ms",
            "join: ADD CLIENT / serf join -> alive",
            |t| t.add_join_ms,
        ),
        (
            "detect_first_ms",
            "SIGKILL -> dead on node 0 (master)",
            |t| t.detect_first_ms,
        ),
        ("detect_all_ms", "SIGKILL -> dead on all nodes", |t| {
            t.detect_all_ms
        }),
        ("leave_all_ms", "graceful stop -> left on all nodes", |t| {
            t.leave_all_ms
        }),
        ("change_ms", "change seen by all nodes", |t| t.change_ms),
        (
            "detect_sweep_ms",
            "one sweep over all nodes (resolution of 'all')",
            |t| t.detect_sweep_ms,
        ),
    ];
    for (key, label, f) in timing {
        figures.push(figure(
            key,
            label,
            "ms",
            runs(&bo, f),
            sf.as_ref().and_then(|s| runs(s, f)),
            target_ratio(key, n),
        ));
    }
    // The change in gossip rounds of each system's own interval. Shown, not judged: the
    // current targets are ratios to Serf (`change_ms` holds the change's).
    let rounds = |r: &SystemResult, system: System| {
        let interval = ms(system.gossip_interval());
        Stat::of(
            &r.runs
                .iter()
                .filter_map(|t| t.change_ms.map(|v| v / interval))
                .collect::<Vec<_>>(),
        )
    };
    let bo_rounds = rounds(&bo, System::Bocluster);
    let sf_rounds = sf.as_ref().and_then(|s| rounds(s, System::Serf));
    figures.push(Figure {
        key: "change_rounds".into(),
        label: "change seen by all, in gossip rounds".into(),
        unit: "rounds".into(),
        ratio: ratio(bo_rounds.as_ref(), sf_rounds.as_ref()),
        target: None,
        met: None,
        bocluster: bo_rounds,
        serf: sf_rounds,
    });
    let fp = |r: &SystemResult| {
        r.steady
            .as_ref()
            .and_then(|s| Stat::of(&[s.false_positive_nodes as f64]))
    };
    let bo_fp = fp(&bo);
    figures.push(Figure {
        key: "false_positives".into(),
        label: "live nodes reported dead (steady window)".into(),
        unit: "nodes".into(),
        ratio: ratio(bo_fp.as_ref(), sf.as_ref().and_then(fp).as_ref()),
        target: Some("0".into()),
        met: bo_fp.map(|s| s.median == 0.0),
        bocluster: bo_fp,
        serf: sf.as_ref().and_then(fp),
    });
    let per_node: [SteadyRow; 7] = [
        (
            "bytes_in_per_s",
            "bandwidth in per node (steady)",
            "B/s",
            |s| s.bytes_in_per_s,
        ),
        (
            "bytes_out_per_s",
            "bandwidth out per node (steady)",
            "B/s",
            |s| s.bytes_out_per_s,
        ),
        (
            "packets_in_per_s",
            "packets in per node (steady)",
            "pkt/s",
            |s| s.packets_in_per_s,
        ),
        (
            "packets_out_per_s",
            "packets out per node (steady)",
            "pkt/s",
            |s| s.packets_out_per_s,
        ),
        ("rss_kib", "resident memory per node", "KiB", |s| s.rss_kib),
        (
            "private_kib",
            "private (unshared) memory per node",
            "KiB",
            |s| s.private_kib,
        ),
        ("cpu_percent", "CPU per node (steady)", "%", |s| {
            s.cpu_percent
        }),
    ];
    for (key, label, unit, f) in per_node {
        figures.push(figure(
            key,
            label,
            unit,
            steady(&bo, f),
            sf.as_ref().and_then(|s| steady(s, f)),
            target_ratio(key, n),
        ));
    }
    figures.extend(churn::figures(n, &bo, sf.as_ref()));
    SizeReport {
        n,
        log2_n,
        figures,
        bocluster: bo,
        serf: sf,
    }
}

/// A value in its unit, readable.
pub fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "ms" if v >= 10_000.0 => format!("{:.1} s", v / 1000.0),
        "ms" => format!("{v:.0} ms"),
        "B/s" if v >= 1_000_000.0 => format!("{:.2} MB/s", v / 1e6),
        "B/s" if v >= 1_000.0 => format!("{:.1} kB/s", v / 1e3),
        "B/s" => format!("{v:.0} B/s"),
        "B" if v >= 1_000_000.0 => format!("{:.2} MB", v / 1e6),
        "B" if v >= 1_000.0 => format!("{:.1} kB", v / 1e3),
        "B" => format!("{v:.0} B"),
        "KiB" => format!("{:.1} MiB", v / 1024.0),
        "%" => format!("{v:.2} %"),
        "rounds" | "pkt/s" => format!("{v:.1}"),
        _ => format!("{v:.0}"),
    }
}

fn show(stat: Option<&Stat>, unit: &str) -> String {
    match stat {
        None => "-".into(),
        Some(s) if s.samples > 1 && s.min != s.max => format!(
            "{} ({}-{})",
            format_value(s.median, unit),
            format_value(s.min, unit),
            format_value(s.max, unit)
        ),
        Some(s) => format_value(s.median, unit),
    }
}

/// Sizes of the bandwidth-growth target: at [`GROWTH_TO`] nodes, bocluster's bandwidth out
/// per node is at most [`GROWTH_MAX`] times its bandwidth at [`GROWTH_FROM`].
const GROWTH_FROM: usize = 10;
const GROWTH_TO: usize = 200;
const GROWTH_MAX: f64 = 1.5;

/// One Markdown line on how the steady bandwidth out per node grows with N: each system's
/// median at two sizes and their ratio, judged against the target when the sizes are 10 and
/// 200, else from the smallest to the largest size run. `None` with fewer than two sizes.
fn bandwidth_growth(report: &CompareReport) -> Option<String> {
    let medians = |size: &SizeReport| {
        let f = size.figures.iter().find(|f| f.key == "bytes_out_per_s")?;
        Some((
            size.n,
            f.bocluster.as_ref()?.median,
            f.serf.as_ref().map(|s| s.median),
        ))
    };
    let measured: Vec<(usize, f64, Option<f64>)> =
        report.sizes.iter().filter_map(medians).collect();
    let at = |n: usize| measured.iter().find(|m| m.0 == n).copied();
    let judged = at(GROWTH_FROM).zip(at(GROWTH_TO));
    let (from, to) = match judged {
        Some(pair) => pair,
        None => (
            *measured.iter().min_by_key(|m| m.0)?,
            *measured.iter().max_by_key(|m| m.0)?,
        ),
    };
    if from.0 >= to.0 {
        return None;
    }
    let growth = |a: f64, b: f64| (a > 0.0).then(|| b / a);
    let side = |name: &str, a: f64, b: f64| {
        format!(
            "{name} {} -> {} ({})",
            format_value(a, "B/s"),
            format_value(b, "B/s"),
            growth(a, b).map_or_else(|| "-".to_string(), |g| format!("{g:.2}x")),
        )
    };
    let mut line = format!(
        "Bandwidth out per node as N grows, N = {} -> {}: {}",
        from.0,
        to.0,
        side("bocluster", from.1, to.1)
    );
    if let (Some(a), Some(b)) = (from.2, to.2) {
        line.push_str(&format!("; {}", side("Serf", a, b)));
    }
    if judged.is_some() {
        let met = growth(from.1, to.1).map(|g| g <= GROWTH_MAX);
        line.push_str(&format!(
            "; target bocluster <= {GROWTH_MAX}x: {}",
            match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        ));
    }
    line.push('\n');
    Some(line)
}

/// The report as Markdown tables, one per size, and the bandwidth's growth across sizes.
pub fn render_tables(report: &CompareReport) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Machine: {}\nbocluster {}; Serf: {} ({})\n{} runs per size (medians; ranges min-max over runs, or over nodes for per-node figures); steady window {:.0} s; Serf polled by {}\n",
        report.machine,
        report.bocluster_version,
        report.serf_version.as_deref().unwrap_or("not run"),
        report.serf_note,
        report.runs,
        report.steady_s,
        report.serf_polling,
    ));
    if let Some(churn) = &report.churn {
        out.push_str(&churn.describe());
        out.push('\n');
    }
    for size in &report.sizes {
        out.push_str(&format!(
            "\n### N = {} (log2 N = {:.1})\n\n",
            size.n, size.log2_n
        ));
        out.push_str(
            "| figure | bocluster | Serf | bocluster / Serf | target | met |\n|---|---|---|---|---|---|\n",
        );
        for f in &size.figures {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                f.label,
                show(f.bocluster.as_ref(), &f.unit),
                show(f.serf.as_ref(), &f.unit),
                f.ratio
                    .map_or_else(|| "-".to_string(), |r| format!("{r:.2}")),
                f.target.as_deref().unwrap_or(""),
                match f.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "",
                }
            ));
        }
        let failed = size
            .bocluster
            .failed
            .iter()
            .map(|f| ("bocluster", f))
            .chain(
                size.serf
                    .iter()
                    .flat_map(|s| s.failed.iter().map(|f| ("Serf", f))),
            );
        for (system, failure) in failed {
            out.push_str(&format!("\n{system}: did not complete: {failure}\n"));
        }
    }
    if let Some(line) = bandwidth_growth(report) {
        out.push('\n');
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(change: &[f64], detect: &[f64]) -> SystemResult {
        SystemResult {
            runs: change
                .iter()
                .zip(detect)
                .map(|(&c, &d)| RunTimes {
                    change_ms: Some(c),
                    detect_first_ms: Some(d),
                    detect_all_ms: Some(d + 100.0),
                    ..RunTimes::default()
                })
                .collect(),
            churn: Vec::new(),
            loss: None,
            failed: Vec::new(),
            steady: Some(Steady {
                window_s: 60.0,
                polls: 60,
                false_positive_nodes: 0,
                false_positive_reports: 0,
                bytes_in_per_s: Stat::of(&[1000.0, 3000.0]),
                bytes_out_per_s: Stat::of(&[2000.0]),
                packets_in_per_s: None,
                packets_out_per_s: Stat::of(&[20.0]),
                rss_kib: Stat::of(&[10_000.0]),
                private_kib: Stat::of(&[2_000.0]),
                cpu_percent: Stat::of(&[0.5]),
            }),
        }
    }

    #[test]
    fn figures_ratios_and_targets() {
        let bo = result(&[500.0, 600.0, 700.0], &[1500.0, 1600.0, 1400.0]);
        let sf = result(&[1000.0, 1200.0, 1100.0], &[6000.0, 6400.0, 5000.0]);
        let size = size_report(16, bo, Some(sf));
        let get = |key: &str| size.figures.iter().find(|f| f.key == key).unwrap();
        let change = get("change_ms");
        assert_eq!(change.bocluster.unwrap().median, 600.0);
        assert_eq!(change.serf.unwrap().median, 1100.0);
        assert!((change.ratio.unwrap() - 600.0 / 1100.0).abs() < 1e-9);
        assert_eq!(change.met, Some(true));
        let detect = get("detect_first_ms");
        assert_eq!(detect.ratio, Some(0.25));
        assert_eq!(detect.met, Some(true));
        // 600 ms in bocluster's probe intervals, 1100 / 200 = 5.5; 2 log2 16 = 8.
        let rounds = get("change_rounds");
        let interval_ms = System::Bocluster.gossip_interval().as_secs_f64() * 1000.0;
        assert_eq!(rounds.bocluster.unwrap().median, 600.0 / interval_ms);
        assert_eq!(rounds.serf.unwrap().median, 5.5);
        assert_eq!((rounds.target.as_deref(), rounds.met), (None, None));
        // Equal bandwidth out meets "no more than Serf's" below 100 nodes; bandwidth in and
        // resident memory are shown, not judged; private memory must be half of Serf's.
        let target = |key: &str| (get(key).target.clone(), get(key).met);
        assert_eq!(get("bytes_out_per_s").ratio, Some(1.0));
        assert_eq!(
            target("bytes_out_per_s"),
            (Some("<= 1x".into()), Some(true))
        );
        assert_eq!(get("bytes_in_per_s").ratio, Some(1.0));
        assert_eq!(target("bytes_in_per_s"), (None, None));
        assert_eq!(target("rss_kib"), (None, None));
        assert_eq!(target("private_kib"), (Some("<= 0.5x".into()), Some(false)));
        assert_eq!(target("cpu_percent"), (Some("<= 1x".into()), Some(true)));
        assert_eq!(
            target("detect_all_ms"),
            (Some("<= 0.5x".into()), Some(true))
        );
        // Nobody measured the joins: a target, not judged.
        assert_eq!(target("master_join_ms"), (Some("<= 1x".into()), None));
        // Zero false positives on both sides: no ratio, target met.
        assert_eq!(get("false_positives").ratio, None);
        assert_eq!(get("false_positives").met, Some(true));
        // Timings nobody measured stay empty.
        assert!(get("cold_start_ms").bocluster.is_none());

        // From 100 nodes on, the same bandwidth out misses: it must be half of Serf's.
        let large = size_report(
            100,
            result(&[500.0], &[1500.0]),
            Some(result(&[500.0], &[1500.0])),
        );
        let out = large
            .figures
            .iter()
            .find(|f| f.key == "bytes_out_per_s")
            .unwrap();
        assert_eq!(
            (out.target.as_deref(), out.met),
            (Some("<= 0.5x"), Some(false))
        );

        let alone = size_report(16, result(&[500.0], &[1500.0]), None);
        let change = alone.figures.iter().find(|f| f.key == "change_ms").unwrap();
        assert_eq!((change.ratio, change.met), (None, None));
        let tables = render_tables(&report(vec![alone]));
        assert!(tables.contains("| change seen by all nodes | 500 ms | - | - | <= 1x |  |"));
        assert!(
            !tables.contains("as N grows"),
            "one size, no growth: {tables}"
        );
    }

    fn report(sizes: Vec<SizeReport>) -> CompareReport {
        CompareReport {
            machine: Machine::describe(),
            bocluster_version: "0".into(),
            serf_version: None,
            serf_note: "not run".into(),
            runs: 1,
            steady_s: 60.0,
            sizes,
            bandwidth_measured: true,
            serf_polling: "rpc".into(),
            gossip_interval_ms: GossipIntervals {
                bocluster: 250.0,
                serf: 200.0,
            },
            churn: None,
        }
    }

    /// A size whose steady bandwidth out per node is `bo` (and `sf` for Serf, if given).
    fn bandwidth_at(n: usize, bo: f64, sf: Option<f64>) -> SizeReport {
        let with_out = |out: f64| {
            let mut r = result(&[500.0], &[1500.0]);
            if let Some(steady) = r.steady.as_mut() {
                steady.bytes_out_per_s = Stat::of(&[out]);
            }
            r
        };
        size_report(n, with_out(bo), sf.map(with_out))
    }

    #[test]
    fn bandwidth_growth_is_judged_from_10_to_200_nodes() {
        let sizes = vec![
            bandwidth_at(10, 1000.0, Some(400.0)),
            bandwidth_at(50, 1200.0, Some(420.0)),
            bandwidth_at(200, 1400.0, Some(600.0)),
        ];
        let line = bandwidth_growth(&report(sizes)).unwrap();
        assert_eq!(
            line,
            "Bandwidth out per node as N grows, N = 10 -> 200: bocluster 1.0 kB/s -> 1.4 kB/s (1.40x); Serf 400 B/s -> 600 B/s (1.50x); target bocluster <= 1.5x: yes\n"
        );
        let grew = report(vec![
            bandwidth_at(10, 1000.0, None),
            bandwidth_at(200, 1600.0, None),
        ]);
        let line = bandwidth_growth(&grew).unwrap();
        assert!(
            line.ends_with("(1.60x); target bocluster <= 1.5x: **no**\n"),
            "{line}"
        );
        assert!(render_tables(&grew).ends_with(&line));
        // Without both 10 and 200: the growth from the smallest to the largest, not judged.
        let line = bandwidth_growth(&report(vec![
            bandwidth_at(50, 2000.0, None),
            bandwidth_at(10, 1000.0, None),
        ]))
        .unwrap();
        assert!(line.contains("N = 10 -> 50:"), "{line}");
        assert!(
            line.contains("(2.00x)") && !line.contains("target"),
            "{line}"
        );
        assert_eq!(
            bandwidth_growth(&report(vec![bandwidth_at(200, 1.0, None)])),
            None
        );
    }

    #[test]
    fn slowest_needs_every_observer() {
        let d = Duration::from_millis;
        assert_eq!(slowest(&[Some(d(5)), Some(d(9)), Some(d(1))]), Some(9.0));
        assert_eq!(slowest(&[Some(d(5)), None]), None);
    }

    #[test]
    fn values_in_their_units() {
        assert_eq!(format_value(1234.4, "ms"), "1234 ms");
        assert_eq!(format_value(12_345.0, "ms"), "12.3 s");
        assert_eq!(format_value(2_500.0, "B/s"), "2.5 kB/s");
        assert_eq!(format_value(10_240.0, "KiB"), "10.0 MiB");
        assert_eq!(format_value(3.0, "nodes"), "3");
    }

    /// A run that did not complete is kept out of the figures and named under the table.
    #[test]
    fn a_run_that_did_not_complete_is_named_and_left_out() {
        let ctx = RunContext {
            n: 200,
            run: 0,
            runs: 3,
            steady: None,
            counting: false,
            form_limit: crate::runs::FORM_LIMIT,
        };
        let mut sf = result(&[1000.0], &[6000.0]);
        let kept = completed(&mut sf, &ctx, "run", Ok(7));
        assert_eq!(kept, Some(7));
        let lost = completed::<u32>(&mut sf, &ctx, "run", Err("did not form in 120s".into()));
        assert_eq!(lost, None);
        let size = size_report(200, result(&[500.0], &[1500.0]), Some(sf));
        let change = size.figures.iter().find(|f| f.key == "change_ms").unwrap();
        assert_eq!(change.serf.as_ref().map(|s| s.median), Some(1000.0));
        let tables = render_tables(&report(vec![size]));
        assert!(
            tables.contains("Serf: did not complete: N = 200 run 1/3: did not form in 120s"),
            "{tables}"
        );
    }
}
