//! `compare --churn`: the churn and fault scenarios, on a fleet of each system of its
//! own (started after the run's other scenarios, so their fleets and timings are untouched).
//!
//! On a freshly formed fleet, in this order (each on a fleet that has converged again, every
//! node seeing every node alive):
//! 1. packet loss (first run of each size only, like the steady window): for a window, a
//!    share of the fleet's UDP packets is dropped and every observer is asked every second
//!    for live nodes it reports dead (false positives); then the loss stops;
//! 2. a paused observer: node 1 is frozen (SIGSTOP) for `--pause` ([`PAUSE`] by default), as
//!    a container starved of CPU or a laptop that sleeps is, then thawed (SIGCONT); every
//!    other node is polled for live nodes it reports dead while it is frozen, and every
//!    node, the thawed one included, for [`PAUSE_WATCH`] after (false positives: nobody was
//!    down);
//! 3. partition and heal: the last node is cut off from all others (both ways) for at least
//!    [`PARTITION_HOLD`] and until every other node has seen it dead; then the cut is removed
//!    and the time until the others see it alive again is taken;
//! 4. SIGKILL of 10 % of the nodes at once (at least one, never node 0) until node 0, then
//!    every live node, sees all of them dead; then the same nodes are started again (same
//!    name, address and data directory) until node 0, then every node, sees them alive;
//! 5. address change: node N/2 is killed and at once started again as the same member (same
//!    name and data directory) on another address ([`moved_ip`]), until node 0, then every
//!    node, lists it alive at its new address.
//!
//! Loss comes first and the kills last so that no scenario starts on a fleet still settling
//! from a restart. Faults are iptables rules in the harness's private namespace ([`chaos`]).
//! When bytes can be counted, every node's gossip bytes are counted from the partition to the
//! end of the restart (3 and 4): the bandwidth under churn.
//!
//! [`chaos`]: crate::chaos

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::chaos::{self, Faults};
use crate::netns::ByteCounters;
use crate::reports::churn::{ChurnSettings, ChurnTimes, LossWindow};
use crate::reports::compare::{Figure, SystemResult};
use crate::runs::{
    all_alive, count_bytes, figure, ms, names, progress, show_ms, slowest, target_ratio, wait_each,
    watch_false_positives, RunContext, Started, EVENT_LIMIT,
};
use crate::stats::{ratio, Stat};
use crate::systems::{block, moved_ip, Fleet, Liveness, Seen, System};

/// Share of the UDP packets dropped in the loss window.
pub const LOSS: f64 = 0.05;
/// Shortest time a partitioned node stays cut off.
pub const PARTITION_HOLD: Duration = Duration::from_secs(10);
/// Share of the fleet killed at once.
pub const KILL_SHARE: f64 = 0.1;
/// How long a moved node may take to be listed at its new address. Shorter than the other
/// events' limit: a Serf agent that comes back under its name at another address is refused
/// for good ("conflicting address": memberlist keeps the failed member at its old one), and
/// waiting longer would only lengthen each run.
pub const MOVE_LIMIT: Duration = Duration::from_secs(30);
/// How long the paused observer stays frozen by default (`compare --pause`).
pub const PAUSE: Duration = Duration::from_secs(3);
/// How long every node is watched for false dead once the paused observer is thawed: long
/// enough for a suspicion it raised while behind to run out.
pub const PAUSE_WATCH: Duration = Duration::from_secs(20);
/// The node that is paused: never node 0 (whose view every timing reads first), and never a
/// node that the kill ([`victims`]: from node (N-1)/k on), the cut (the last) or the move
/// (N/2) uses, for N >= 3.
const PAUSED_NODE: usize = 1;

impl ChurnSettings {
    pub fn new(loss_window: Duration, pause: Duration) -> ChurnSettings {
        ChurnSettings {
            kill_share: KILL_SHARE,
            partition_hold_s: PARTITION_HOLD.as_secs_f64(),
            partition_dropped_bocluster: chaos::partition_note(System::Bocluster).into(),
            partition_dropped_serf: chaos::partition_note(System::Serf).into(),
            move_limit_s: MOVE_LIMIT.as_secs_f64(),
            loss_probability: LOSS,
            loss_window_s: loss_window.as_secs_f64(),
            loss_dropped: loss_note(),
            pause_s: pause.as_secs_f64(),
            pause_watch_s: PAUSE_WATCH.as_secs_f64(),
        }
    }
}

fn loss_note() -> String {
    format!(
        "{:.0} % of the UDP packets sent from the fleet's addresses dropped at random (all gossip of bocluster's QUIC; Serf's UDP probes and gossip, not its TCP push-pull)",
        LOSS * 100.0
    )
}

/// The nodes killed at once in a fleet of `n`: 10 % (at least one), spread evenly over
/// 1..n, never node 0 (the seed and observer).
pub fn victims(n: usize) -> Vec<usize> {
    if n < 2 {
        return Vec::new();
    }
    let k = ((n as f64 * KILL_SHARE).floor() as usize).clamp(1, n - 1);
    (1..=k).map(|i| i * (n - 1) / k).collect()
}

/// Whether `view` lists every one of `names` with `status`.
fn all_are(view: &[Seen], names: &[String], status: Liveness) -> bool {
    names
        .iter()
        .all(|name| view.iter().any(|s| &s.name == name && s.status == status))
}

/// One system's churn scenarios on a fleet of its own. Returns the timings and, when
/// `loss_window` is given, the loss window's findings.
pub(crate) fn churn_run(
    ctx: &RunContext,
    system: System,
    loss_window: Option<Duration>,
    pause: Option<Duration>,
    start: impl FnOnce(&Path) -> Started,
) -> Result<(ChurnTimes, Option<LossWindow>), String> {
    let n = ctx.n;
    let say = |what: &str| progress(system, n, ctx.run, ctx.runs, &format!("churn: {what}"));
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    say(&format!("starting {n} nodes"));
    let (mut fleet, started) = start(dir.path())?;
    let fleet = fleet.as_mut();
    let mut times = ChurnTimes::default();
    if !converge(fleet, started, ctx.form_limit, &say) {
        return Err(format!(
            "{} churn fleet of {n} did not form in {:?}",
            system.name(),
            ctx.form_limit
        ));
    }
    say("formed");

    let loss = match loss_window {
        Some(window) => {
            let found = loss_window_run(fleet, system, window, &say)?;
            converge(fleet, Instant::now(), ctx.form_limit, &say);
            Some(found)
        }
        None => None,
    };

    if let Some(pause) = pause {
        pause_observer(fleet, pause, &mut times, &say)?;
        converge(fleet, Instant::now(), ctx.form_limit, &say);
    }

    let counters = count_bytes(
        fleet,
        n,
        ctx.counting,
        "bandwidth under churn skipped",
        &say,
    );
    let counted_from = Instant::now();
    let bytes_before = counters.as_ref().map(ByteCounters::read).transpose()?;

    partition(fleet, system, &mut times, &say)?;
    converge(fleet, Instant::now(), ctx.form_limit, &say);
    kill_and_restart(fleet, &mut times, &say)?;

    if let (Some(counters), Some(before)) = (&counters, bytes_before) {
        let elapsed = counted_from.elapsed().as_secs_f64();
        let bytes = counters.read()?.since(&before);
        let median_per_s = |v: &[u64]| {
            Stat::of(&v.iter().map(|b| *b as f64 / elapsed).collect::<Vec<_>>()).map(|s| s.median)
        };
        times.churn_window_s = Some(elapsed);
        times.churn_bytes_in_per_s = median_per_s(&bytes.bytes_in);
        times.churn_bytes_out_per_s = median_per_s(&bytes.bytes_out);
        say(&format!(
            "bandwidth under churn ({elapsed:.1} s): in {} B/s, out {} B/s per node (median); {} out per node in all",
            times.churn_bytes_in_per_s.map_or(0.0, f64::round),
            times.churn_bytes_out_per_s.map_or(0.0, f64::round),
            crate::compare::format_value(times.churn_bytes_out().unwrap_or(0.0), "B"),
        ));
    }
    drop(counters);

    converge(fleet, Instant::now(), ctx.form_limit, &say);
    move_address(fleet, system, &mut times, &say)?;
    Ok((times, loss))
}

/// Waits (untimed) until every running node sees every running node alive; says so if not.
fn converge(fleet: &mut dyn Fleet, since: Instant, limit: Duration, say: &dyn Fn(&str)) -> bool {
    let running: Vec<usize> = (0..fleet.len()).filter(|&i| fleet.running(i)).collect();
    let running_names = names(fleet, &running);
    let (seen, _) = wait_each(fleet, &running, since, limit, |view| {
        all_alive(view, &running_names)
    });
    let ok = slowest(&seen).is_some();
    if !ok {
        say("NOTICE: the fleet did not converge (all see all alive); going on");
    }
    ok
}

fn loss_window_run(
    fleet: &mut dyn Fleet,
    system: System,
    window: Duration,
    say: &dyn Fn(&str),
) -> Result<LossWindow, String> {
    let faults = Faults::install(chaos::loss_rules(block(system), LOSS))?;
    say(&format!(
        "loss window of {window:?}: {:.0} % of the fleet's UDP dropped, polling every node every second",
        LOSS * 100.0
    ));
    let observers: Vec<usize> = (0..fleet.len()).filter(|&i| fleet.running(i)).collect();
    let live: BTreeSet<String> = names(fleet, &observers).into_iter().collect();
    let start = Instant::now();
    let found = watch_false_positives(fleet, &observers, &live, window, "loss", say);
    let elapsed = start.elapsed();
    let dropped_packets = faults.dropped().ok().map(|d| d.iter().sum());
    faults.heal();
    let result = LossWindow {
        window_s: elapsed.as_secs_f64(),
        probability: LOSS,
        dropped: loss_note(),
        polls: found.polls,
        false_positive_nodes: found.nodes.len(),
        false_positive_reports: found.reports,
        dropped_packets,
    };
    say(&format!(
        "loss done: {} live nodes reported dead ({} reports in {} polls), {} packets dropped; loss removed",
        result.false_positive_nodes,
        result.false_positive_reports,
        result.polls,
        dropped_packets.map_or_else(|| "?".to_string(), |d| d.to_string()),
    ));
    Ok(result)
}

/// Freezes [`PAUSED_NODE`] for `pause` and counts the live nodes reported dead, while it is
/// frozen (by the others) and for [`PAUSE_WATCH`] after it is thawed (by all).
fn pause_observer(
    fleet: &mut dyn Fleet,
    pause: Duration,
    times: &mut ChurnTimes,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    if fleet.len() < 3 {
        say("pause skipped: fewer than 3 nodes");
        return Ok(());
    }
    let observers: Vec<usize> = (0..fleet.len()).filter(|&i| fleet.running(i)).collect();
    let live: BTreeSet<String> = names(fleet, &observers).into_iter().collect();
    let others: Vec<usize> = observers
        .iter()
        .copied()
        .filter(|&i| i != PAUSED_NODE)
        .collect();
    let pid = fleet
        .pid(PAUSED_NODE)
        .ok_or_else(|| format!("node {PAUSED_NODE} has no process to pause"))?;
    say(&format!(
        "pausing {} (SIGSTOP) for {pause:?}",
        fleet.name(PAUSED_NODE)
    ));
    let frozen = Frozen::freeze(pid)?;
    let during = watch_false_positives(fleet, &others, &live, pause, "paused", say);
    drop(frozen);
    let after = watch_false_positives(fleet, &observers, &live, PAUSE_WATCH, "thawed", say);
    let nodes: BTreeSet<&String> = during.nodes.iter().chain(&after.nodes).collect();
    let paused_name = fleet.name(PAUSED_NODE);
    times.pause_s = Some(pause.as_secs_f64());
    times.pause_false_positive_nodes = Some(nodes.len());
    times.pause_false_positive_reports = Some(during.reports + after.reports);
    times.pause_paused_node_reported = Some(nodes.contains(&paused_name));
    say(&format!(
        "pause done: {} live nodes reported dead ({} reports) while paused and {PAUSE_WATCH:?} after{}",
        nodes.len(),
        during.reports + after.reports,
        if nodes.is_empty() {
            String::new()
        } else {
            format!(
                ": {}",
                nodes.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(",")
            )
        }
    ));
    Ok(())
}

/// A process stopped with SIGSTOP, continued (SIGCONT) when this is dropped, so that no
/// early return leaves it frozen.
struct Frozen(nix::unistd::Pid);

impl Frozen {
    fn freeze(pid: u32) -> Result<Frozen, String> {
        let pid = nix::unistd::Pid::from_raw(
            i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?,
        );
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP)
            .map_err(|e| format!("SIGSTOP to {pid}: {e}"))?;
        Ok(Frozen(pid))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

fn partition(
    fleet: &mut dyn Fleet,
    system: System,
    times: &mut ChurnTimes,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let cut = fleet.len() - 1;
    let cut_name = vec![fleet.name(cut)];
    // The cut-off node cannot be asked (its address is cut too); node 0 stays first.
    let observers: Vec<usize> = (0..fleet.len())
        .filter(|&i| i != cut && fleet.running(i))
        .collect();
    let t = Instant::now();
    let faults = Faults::install(chaos::partition_rules(system, fleet.ip(cut)))?;
    let (dead, _) = wait_each(fleet, &observers, t, EVENT_LIMIT, |view| {
        all_are(view, &cut_name, Liveness::Dead)
    });
    times.cut_first_ms = dead[0].map(ms);
    times.cut_all_ms = slowest(&dead);
    // A fixed hold of the fault (not a wait on a condition): the partition lasts at least
    // PARTITION_HOLD even when the node is found dead sooner.
    if let Some(rest) = PARTITION_HOLD.checked_sub(t.elapsed()) {
        std::thread::sleep(rest);
    }
    times.cut_held_ms = Some(ms(t.elapsed()));
    times.cut_dropped_packets = faults.dropped().ok().map(|d| d.iter().sum());
    say(&format!(
        "partition of {} -> dead on node 0: {}, on all {} others: {}; cut held {:.1} s, {} packets dropped",
        cut_name[0],
        show_ms(times.cut_first_ms),
        observers.len(),
        show_ms(times.cut_all_ms),
        t.elapsed().as_secs_f64(),
        times
            .cut_dropped_packets
            .map_or_else(|| "?".to_string(), |d| d.to_string()),
    ));
    let t = Instant::now();
    faults.heal();
    let (alive, _) = wait_each(fleet, &observers, t, EVENT_LIMIT, |view| {
        all_are(view, &cut_name, Liveness::Alive)
    });
    times.heal_first_ms = alive[0].map(ms);
    times.heal_all_ms = slowest(&alive);
    say(&format!(
        "heal -> {} alive on node 0: {}, on all others: {}",
        cut_name[0],
        show_ms(times.heal_first_ms),
        show_ms(times.heal_all_ms),
    ));
    Ok(())
}

fn kill_and_restart(
    fleet: &mut dyn Fleet,
    times: &mut ChurnTimes,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let killed = victims(fleet.len());
    let killed_names = names(fleet, &killed);
    times.killed = killed.len();
    for &v in &killed {
        fleet.kill(v);
    }
    let t = Instant::now();
    let observers: Vec<usize> = (0..fleet.len()).filter(|&i| fleet.running(i)).collect();
    let (dead, _) = wait_each(fleet, &observers, t, EVENT_LIMIT, |view| {
        all_are(view, &killed_names, Liveness::Dead)
    });
    times.kill_first_ms = dead[0].map(ms);
    times.kill_all_ms = slowest(&dead);
    say(&format!(
        "SIGKILL {} ({}) -> all dead on node 0: {}, on all {} live: {}",
        killed.len(),
        killed_names.join(","),
        show_ms(times.kill_first_ms),
        observers.len(),
        show_ms(times.kill_all_ms),
    ));

    let t = Instant::now();
    for &v in &killed {
        fleet.restart(v)?;
    }
    let observers: Vec<usize> = (0..fleet.len()).filter(|&i| fleet.running(i)).collect();
    let (alive, _) = wait_each(fleet, &observers, t, EVENT_LIMIT, |view| {
        all_are(view, &killed_names, Liveness::Alive)
    });
    times.restart_first_ms = alive[0].map(ms);
    times.restart_all_ms = slowest(&alive);
    say(&format!(
        "restart of the {} -> alive on node 0: {}, on all {}: {}",
        killed.len(),
        show_ms(times.restart_first_ms),
        observers.len(),
        show_ms(times.restart_all_ms),
    ));
    Ok(())
}

/// Kills node N/2 and at once starts it again, the same member, at [`moved_ip`]; times how
/// long until node 0, then every other node, lists it alive at its new address.
fn move_address(
    fleet: &mut dyn Fleet,
    system: System,
    times: &mut ChurnTimes,
    say: &dyn Fn(&str),
) -> Result<(), String> {
    let moved = fleet.len() / 2;
    let name = fleet.name(moved);
    let (from, to) = (fleet.ip(moved), moved_ip(system));
    let at_new_address = format!("{to}:");
    let observers: Vec<usize> = (0..fleet.len())
        .filter(|&i| i != moved && fleet.running(i))
        .collect();
    fleet.kill(moved);
    let t = Instant::now();
    fleet.restart_at(moved, to)?;
    let (alive, _) = wait_each(fleet, &observers, t, MOVE_LIMIT, |view| {
        view.iter().any(|s| {
            s.name == name && s.status == Liveness::Alive && s.address.starts_with(&at_new_address)
        })
    });
    times.moved_first_ms = alive[0].map(ms);
    times.moved_all_ms = slowest(&alive);
    say(&format!(
        "{name} moved {from} -> {to}: alive at the new address on node 0: {}, on all {} others: {}",
        show_ms(times.moved_first_ms),
        observers.len(),
        show_ms(times.moved_all_ms),
    ));
    Ok(())
}

/// Key, label and the run's value of a churn timing row.
type ChurnRow = (&'static str, String, fn(&ChurnTimes) -> Option<f64>);

/// The churn rows of one size's table, when either system ran them.
pub fn figures(n: usize, bo: &SystemResult, sf: Option<&SystemResult>) -> Vec<Figure> {
    if bo.churn.is_empty() && sf.is_none_or(|s| s.churn.is_empty()) {
        return Vec::new();
    }
    let killed = bo
        .churn
        .iter()
        .chain(sf.into_iter().flat_map(|s| &s.churn))
        .map(|c| c.killed)
        .max()
        .unwrap_or(0);
    let rows: [ChurnRow; 10] = [
        (
            "kill_first_ms",
            format!("SIGKILL 10 % ({killed}) -> all dead on node 0"),
            |c| c.kill_first_ms,
        ),
        (
            "kill_all_ms",
            format!("SIGKILL 10 % ({killed}) -> all dead on every live node"),
            |c| c.kill_all_ms,
        ),
        (
            "restart_first_ms",
            "restart of the killed -> alive on node 0".into(),
            |c| c.restart_first_ms,
        ),
        (
            "restart_all_ms",
            "restart of the killed -> alive on every node".into(),
            |c| c.restart_all_ms,
        ),
        (
            "cut_first_ms",
            "partition of one node -> dead on node 0".into(),
            |c| c.cut_first_ms,
        ),
        (
            "cut_all_ms",
            "partition of one node -> dead on all others".into(),
            |c| c.cut_all_ms,
        ),
        (
            "heal_first_ms",
            "heal -> alive again on node 0".into(),
            |c| c.heal_first_ms,
        ),
        (
            "heal_all_ms",
            "heal -> alive again on all others".into(),
            |c| c.heal_all_ms,
        ),
        (
            "moved_first_ms",
            "restart at a new address -> alive there on node 0".into(),
            |c| c.moved_first_ms,
        ),
        (
            "moved_all_ms",
            "restart at a new address -> alive there on all others".into(),
            |c| c.moved_all_ms,
        ),
    ];
    let runs = |r: &SystemResult, f: fn(&ChurnTimes) -> Option<f64>| {
        Stat::of(&r.churn.iter().filter_map(f).collect::<Vec<_>>())
    };
    let mut figures: Vec<Figure> = rows
        .into_iter()
        .map(|(key, label, f)| {
            figure(
                key,
                &label,
                "ms",
                runs(bo, f),
                sf.and_then(|s| runs(s, f)),
                target_ratio(key, n),
            )
        })
        .collect();
    // The rates are over each system's own window, which ends when its fleet has seen the
    // restart: a system that gets through the same events sooner spreads its bytes over fewer
    // seconds. The bytes of the whole sequence compare what the same events cost.
    let bandwidth: [(ChurnRow, &str); 3] = [
        (
            (
                "churn_bytes_in_per_s",
                "bandwidth in per node (partition, kill, restart)".into(),
                |c| c.churn_bytes_in_per_s,
            ),
            "B/s",
        ),
        (
            (
                "churn_bytes_out_per_s",
                "bandwidth out per node (partition, kill, restart)".into(),
                |c| c.churn_bytes_out_per_s,
            ),
            "B/s",
        ),
        (
            (
                "churn_bytes_out",
                "bytes out per node, the whole partition, kill and restart".into(),
                ChurnTimes::churn_bytes_out,
            ),
            "B",
        ),
    ];
    for ((key, label, f), unit) in bandwidth {
        let (ours, theirs) = (runs(bo, f), sf.and_then(|s| runs(s, f)));
        if ours.is_some() || theirs.is_some() {
            figures.push(figure(
                key,
                &label,
                unit,
                ours,
                theirs,
                target_ratio(key, n),
            ));
        }
    }
    let fp = |r: &SystemResult| {
        r.loss
            .as_ref()
            .and_then(|l| Stat::of(&[l.false_positive_nodes as f64]))
    };
    let (bo_fp, sf_fp) = (fp(bo), sf.and_then(fp));
    if bo_fp.is_some() || sf_fp.is_some() {
        let window = bo
            .loss
            .as_ref()
            .or(sf.and_then(|s| s.loss.as_ref()))
            .map_or(0.0, |l| l.window_s);
        figures.push(false_dead_row(
            "loss_false_positives",
            format!(
                "live nodes reported dead, {:.0} % UDP loss ({window:.0} s)",
                LOSS * 100.0
            ),
            bo_fp,
            sf_fp,
            |s| s.median == 0.0,
        ));
    }
    let paused = |r: &SystemResult| {
        Stat::of(
            &r.churn
                .iter()
                .filter_map(|c| c.pause_false_positive_nodes)
                .map(|n| n as f64)
                .collect::<Vec<_>>(),
        )
    };
    let (bo_paused, sf_paused) = (paused(bo), sf.and_then(paused));
    if bo_paused.is_some() || sf_paused.is_some() {
        let paused_for = bo
            .churn
            .iter()
            .chain(sf.into_iter().flat_map(|s| &s.churn))
            .find_map(|c| c.pause_s)
            .unwrap_or(PAUSE.as_secs_f64());
        figures.push(false_dead_row(
            "pause_false_positives",
            format!(
                "live nodes reported dead, one observer paused {paused_for:.0} s (and {:.0} s after)",
                PAUSE_WATCH.as_secs_f64()
            ),
            bo_paused,
            sf_paused,
            // Met only when no run found one: the worst run, not the median.
            |s| s.max == 0.0,
        ));
        // Which side of the pause it was: peers that took the silent node for dead (a
        // silence longer than the detection time looks like a crash from outside) or the
        // thawed node that took its peers for dead (what local health is there to prevent).
        let itself = |r: &SystemResult| {
            let runs: Vec<bool> = r
                .churn
                .iter()
                .filter_map(|c| c.pause_paused_node_reported)
                .collect();
            let count = runs.iter().filter(|&&reported| reported).count();
            (!runs.is_empty())
                .then(|| Stat::of(&[count as f64]))
                .flatten()
        };
        let (bo_itself, sf_itself) = (itself(bo), sf.and_then(itself));
        if bo_itself.is_some() || sf_itself.is_some() {
            figures.push(Figure {
                key: "pause_paused_node_reported".into(),
                label: "runs in which peers listed the paused node itself dead".into(),
                unit: "runs".into(),
                ratio: None,
                target: None,
                met: None,
                bocluster: bo_itself,
                serf: sf_itself,
            });
        }
    }
    figures
}

/// A row of live nodes listed dead: its target is none, judged on bocluster's figure by
/// `met`.
fn false_dead_row(
    key: &str,
    label: String,
    ours: Option<Stat>,
    theirs: Option<Stat>,
    met: fn(&Stat) -> bool,
) -> Figure {
    Figure {
        key: key.into(),
        label,
        unit: "nodes".into(),
        ratio: ratio(ours.as_ref(), theirs.as_ref()),
        target: Some("0".into()),
        met: ours.as_ref().map(met),
        bocluster: ours,
        serf: theirs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_spread_out_never_node_zero() {
        assert_eq!(victims(3), vec![2]);
        assert_eq!(victims(10), vec![9]);
        assert_eq!(victims(19), vec![18]);
        assert_eq!(victims(20), vec![9, 19]);
        assert_eq!(victims(50), vec![9, 19, 29, 39, 49]);
        let hundred = victims(100);
        assert_eq!(hundred.len(), 10);
        assert!(!hundred.contains(&0));
        assert_eq!(
            hundred.iter().collect::<BTreeSet<_>>().len(),
            10,
            "distinct"
        );
        assert!(hundred.iter().all(|&v| v < 100));
        assert!(victims(1).is_empty());
    }

    #[test]
    fn every_name_must_have_the_status() {
        let seen = |name: &str, status| Seen {
            name: name.into(),
            status,
            markers: vec![],
            address: String::new(),
        };
        let view = [seen("a", Liveness::Dead), seen("b", Liveness::Alive)];
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(all_are(&view, &names(&["a"]), Liveness::Dead));
        assert!(!all_are(&view, &names(&["a", "b"]), Liveness::Dead));
        assert!(!all_are(&view, &names(&["c"]), Liveness::Dead));
        assert!(all_are(&view, &[], Liveness::Dead));
    }

    fn result(kill: &[f64], fp: Option<usize>) -> SystemResult {
        SystemResult {
            churn: kill
                .iter()
                .map(|&k| ChurnTimes {
                    killed: 5,
                    kill_first_ms: Some(k),
                    heal_all_ms: Some(2.0 * k),
                    churn_bytes_out_per_s: Some(k / 10.0),
                    churn_window_s: Some(10.0),
                    ..ChurnTimes::default()
                })
                .collect(),
            loss: fp.map(|f| LossWindow {
                window_s: 60.0,
                probability: LOSS,
                dropped: loss_note(),
                polls: 60,
                false_positive_nodes: f,
                false_positive_reports: f * 3,
                dropped_packets: Some(100),
            }),
            ..SystemResult::default()
        }
    }

    #[test]
    fn rows_with_ratios_only_when_churn_ran() {
        assert!(figures(10, &SystemResult::default(), Some(&SystemResult::default())).is_empty());
        let bo = result(&[1000.0, 3000.0, 2000.0], Some(0));
        let mut sf = result(&[4000.0], Some(2));
        // Serf took twice as long over the same events: half the rate of the same bytes.
        sf.churn[0].churn_window_s = Some(20.0);
        let rows = figures(10, &bo, Some(&sf));
        let get = |key: &str| rows.iter().find(|f| f.key == key).unwrap();
        let kill = get("kill_first_ms");
        assert_eq!(kill.label, "SIGKILL 10 % (5) -> all dead on node 0");
        assert_eq!(kill.bocluster.unwrap().median, 2000.0);
        assert_eq!(kill.ratio, Some(0.5));
        assert_eq!(
            (kill.target.as_deref(), kill.met),
            (Some("<= 0.5x"), Some(true))
        );
        let heal = get("heal_all_ms");
        assert_eq!(
            (heal.ratio, heal.target.as_deref(), heal.met),
            (Some(0.5), None, None)
        );
        let restart = get("restart_all_ms");
        assert_eq!(
            (restart.target.as_deref(), restart.met),
            (Some("<= 1x"), None)
        );
        let out = get("churn_bytes_out_per_s");
        assert_eq!((out.unit.as_str(), out.ratio), ("B/s", Some(0.5)));
        let all = get("churn_bytes_out");
        assert_eq!(all.unit, "B");
        assert_eq!(all.bocluster.unwrap().median, 2000.0);
        assert_eq!(all.serf.unwrap().median, 8000.0);
        assert_eq!(all.ratio, Some(0.25));
        assert!(
            rows.iter().all(|f| f.key != "churn_bytes_in_per_s"),
            "not counted"
        );
        assert!(get("restart_first_ms").bocluster.is_none());
        let fp = get("loss_false_positives");
        assert_eq!(fp.met, Some(true));
        assert_eq!(fp.serf.unwrap().median, 2.0);
        assert!(fp.label.contains("5 % UDP loss (60 s)"));
        // Without a loss window, no false-positive row.
        let rows = figures(10, &result(&[1.0], None), None);
        assert!(rows.iter().all(|f| f.key != "loss_false_positives"));
        assert_eq!(rows.len(), 12);
        assert!(rows.iter().all(|f| f.key != "pause_false_positives"));
    }

    #[test]
    fn a_paused_observer_row_is_met_only_when_no_run_found_a_false_dead() {
        let paused = |found: &[usize]| SystemResult {
            churn: found
                .iter()
                .map(|&n| ChurnTimes {
                    pause_false_positive_nodes: Some(n),
                    ..ChurnTimes::default()
                })
                .collect(),
            ..SystemResult::default()
        };
        let rows = figures(10, &paused(&[0, 0, 1]), Some(&paused(&[3])));
        let row = rows
            .iter()
            .find(|f| f.key == "pause_false_positives")
            .expect("a row");
        assert_eq!(row.bocluster.map(|s| s.median), Some(0.0));
        assert_eq!(row.met, Some(false), "one run of three found one");
        assert!(row.label.contains("paused 3 s"));
        let rows = figures(10, &paused(&[0, 0]), None);
        let row = rows.iter().find(|f| f.key == "pause_false_positives");
        assert_eq!(row.and_then(|f| f.met), Some(true));
        assert!(
            rows.iter().all(|f| f.key != "pause_paused_node_reported"),
            "runs from before the field have no count"
        );
        let mut told = paused(&[1, 0, 1]);
        for (run, reported) in told.churn.iter_mut().zip([true, false, false]) {
            run.pause_paused_node_reported = Some(reported);
        }
        let rows = figures(10, &told, None);
        let itself = rows
            .iter()
            .find(|f| f.key == "pause_paused_node_reported")
            .expect("a row");
        assert_eq!(itself.bocluster.map(|s| s.median), Some(1.0), "one run");
    }
}
