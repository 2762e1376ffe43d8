//! What the fleet-running subcommands (`compare`, `churn`) share: the limits and polls of a
//! run, its context, progress lines, waiting for every observer, counting bytes, watching for
//! false positives, and building a report's figure rows. Reports themselves are in
//! [`crate::reports`].

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::netns::ByteCounters;
use crate::reports::compare::Figure;
use crate::stats::{meets, ratio, Stat};
use crate::systems::{Fleet, Liveness, Seen, System};

/// Between two sweeps over the observers.
pub(crate) const POLL: Duration = Duration::from_millis(10);
/// A fleet must have formed by then: the default of `compare --form-limit`.
pub(crate) const FORM_LIMIT: Duration = Duration::from_secs(120);
/// A change, a join or a failure must be seen by then.
pub(crate) const EVENT_LIMIT: Duration = Duration::from_secs(90);
/// How often the steady window asks every observer.
pub(crate) const STEADY_POLL: Duration = Duration::from_secs(1);

pub(crate) fn progress(system: System, n: usize, run: usize, runs: usize, what: &str) {
    eprintln!(
        "compare: [N={n} run {}/{runs} {}] {what}",
        run + 1,
        system.name()
    );
}

pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) struct RunContext {
    pub n: usize,
    pub run: usize,
    pub runs: usize,
    pub steady: Option<Duration>,
    pub counting: bool,
    /// How long a fleet may take to form (all see all) before the run is given up.
    pub form_limit: Duration,
}

pub(crate) type Started = Result<(Box<dyn Fleet>, Instant), String>;

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn show_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "NOT SEEN in time".to_string(), |v| format!("{v:.0} ms"))
}

pub(crate) fn names(fleet: &dyn Fleet, nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|&i| fleet.name(i)).collect()
}

pub(crate) fn all_alive(view: &[Seen], names: &[String]) -> bool {
    names.iter().all(|name| {
        view.iter()
            .any(|s| &s.name == name && s.status == Liveness::Alive)
    })
}

/// The latest of the times, if every observer has one.
pub(crate) fn slowest(times: &[Option<Duration>]) -> Option<f64> {
    times
        .iter()
        .map(|t| t.map(ms))
        .collect::<Option<Vec<f64>>>()?
        .into_iter()
        .reduce(f64::max)
}

/// Sweeps `observers` until each has once satisfied `check`; returns, per observer, the time
/// from `since` to the first sweep where it did (`None`: not within `limit`), and the median
/// time one sweep took (the resolution of the slowest observer's time). The first observer
/// (node 0, whose own figure is reported) is asked again after every [`FIRST_EVERY`] others, so
/// its resolution stays a few requests even when a sweep over a loaded fleet takes seconds.
pub(crate) fn wait_each(
    fleet: &mut dyn Fleet,
    observers: &[usize],
    since: Instant,
    limit: Duration,
    check: impl Fn(&[Seen]) -> bool,
) -> (Vec<Option<Duration>>, Option<f64>) {
    let mut done = vec![None; observers.len()];
    let mut sweeps = Vec::new();
    let ask = |fleet: &mut dyn Fleet, k: usize, done: &mut Vec<Option<Duration>>| {
        if done[k].is_none() {
            if let Ok(view) = fleet.view(observers[k]) {
                if check(&view) {
                    done[k] = Some(since.elapsed());
                }
            }
        }
    };
    loop {
        let sweep = Instant::now();
        for k in 0..observers.len() {
            ask(fleet, k, &mut done);
            if k > 0 && k % FIRST_EVERY == 0 {
                ask(fleet, 0, &mut done);
            }
        }
        sweeps.push(ms(sweep.elapsed()));
        if done.iter().all(Option::is_some) || since.elapsed() >= limit {
            return (done, crate::stats::median(&sweeps));
        }
        std::thread::sleep(POLL);
    }
}

/// How many other observers are asked between two questions to the first one.
const FIRST_EVERY: usize = 8;

/// Byte counters for the first `n` nodes of `fleet` when `counting`; when they cannot be
/// installed, says so (with `skipped`: what goes unmeasured) and goes on without them.
pub(crate) fn count_bytes(
    fleet: &dyn Fleet,
    n: usize,
    counting: bool,
    skipped: &str,
    say: &dyn Fn(&str),
) -> Option<ByteCounters> {
    if !counting {
        return None;
    }
    match ByteCounters::install(n, fleet.counter_rules(n)) {
        Ok(c) => Some(c),
        Err(e) => {
            say(&format!("NOTICE: cannot count bytes ({e}); {skipped}"));
            None
        }
    }
}

/// Live nodes reported dead (or left) during a window.
#[derive(Debug, Default)]
pub(crate) struct FalsePositives {
    pub polls: usize,
    /// Distinct live nodes some observer reported dead or left.
    pub nodes: BTreeSet<String>,
    /// (observer, node) reports of that, over all polls.
    pub reports: usize,
}

/// Asks every observer every [`STEADY_POLL`] for `window` and tallies the members of `live`
/// reported dead or left: the steady window's false positives, and those under packet loss.
pub(crate) fn watch_false_positives(
    fleet: &mut dyn Fleet,
    observers: &[usize],
    live: &BTreeSet<String>,
    window: Duration,
    label: &str,
    say: &dyn Fn(&str),
) -> FalsePositives {
    let start = Instant::now();
    let mut found = FalsePositives::default();
    let mut next_note = Duration::from_secs(15);
    while start.elapsed() < window {
        let tick = Instant::now();
        for &observer in observers {
            let Ok(view) = fleet.view(observer) else {
                continue;
            };
            for seen in view {
                if live.contains(&seen.name)
                    && matches!(seen.status, Liveness::Dead | Liveness::Left)
                {
                    found.reports += 1;
                    found.nodes.insert(seen.name);
                }
            }
        }
        found.polls += 1;
        if start.elapsed() >= next_note {
            say(&format!(
                "{label}: {:.0}/{:.0} s, {} live nodes reported dead so far",
                start.elapsed().as_secs_f64(),
                window.as_secs_f64(),
                found.nodes.len()
            ));
            next_note += Duration::from_secs(15);
        }
        let spent = tick.elapsed();
        if spent < STEADY_POLL {
            std::thread::sleep((STEADY_POLL - spent).min(window.saturating_sub(start.elapsed())));
        }
    }
    found
}

/// The target of the figure `key` at `n` nodes: the largest ratio bocluster / Serf of the
/// medians that meets it. One table for `compare` and its churn rows, so the targets of the
/// current issue are read in one place; figures not listed have none (shown, not judged).
pub(crate) fn target_ratio(key: &str, n: usize) -> Option<f64> {
    match key {
        // No more than Serf at any size, and half of it once the fleet is large.
        "bytes_out_per_s" if n >= 100 => Some(0.5),
        "bytes_out_per_s" => Some(1.0),
        // SIGKILL to dead on the master (node 0) and on all nodes, one node or 10 % at once.
        "detect_first_ms" | "detect_all_ms" | "kill_first_ms" | "kill_all_ms" => Some(0.5),
        // A graceful stop, on all nodes.
        "leave_all_ms" => Some(0.5),
        "private_kib" => Some(0.5),
        "change_ms" | "cold_start_ms" | "master_join_ms" | "add_join_ms" | "cpu_percent"
        | "restart_first_ms" | "restart_all_ms" | "moved_first_ms" | "moved_all_ms" => Some(1.0),
        _ => None,
    }
}

/// A row with the ratio of the medians and whether it is within `max_ratio`.
pub(crate) fn figure(
    key: &str,
    label: &str,
    unit: &str,
    ours: Option<Stat>,
    theirs: Option<Stat>,
    max_ratio: Option<f64>,
) -> Figure {
    let r = ratio(ours.as_ref(), theirs.as_ref());
    Figure {
        key: key.into(),
        label: label.into(),
        unit: unit.into(),
        bocluster: ours,
        serf: theirs,
        ratio: r,
        target: max_ratio.map(|m| format!("<= {m}x")),
        met: max_ratio.and_then(|m| meets(r, m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_of_the_current_issue() {
        // Bandwidth out: no more than Serf below 100 nodes, half of it from 100 on.
        for n in [3, 10, 50, 99] {
            assert_eq!(target_ratio("bytes_out_per_s", n), Some(1.0), "N = {n}");
        }
        for n in [100, 150, 200] {
            assert_eq!(target_ratio("bytes_out_per_s", n), Some(0.5), "N = {n}");
        }
        for key in [
            "detect_first_ms",
            "detect_all_ms",
            "kill_first_ms",
            "kill_all_ms",
            "leave_all_ms",
            "private_kib",
        ] {
            assert_eq!(target_ratio(key, 10), Some(0.5), "{key}");
        }
        for key in [
            "change_ms",
            "cold_start_ms",
            "master_join_ms",
            "add_join_ms",
            "cpu_percent",
            "restart_first_ms",
            "restart_all_ms",
            "moved_first_ms",
            "moved_all_ms",
        ] {
            assert_eq!(target_ratio(key, 10), Some(1.0), "{key}");
            assert_eq!(target_ratio(key, 200), Some(1.0), "{key}");
        }
        // Shown, not judged: resident memory, bandwidth in, packets, the sweeps, partition
        // and heal, bandwidth under churn.
        for key in [
            "rss_kib",
            "bytes_in_per_s",
            "packets_out_per_s",
            "detect_sweep_ms",
            "cut_all_ms",
            "heal_first_ms",
            "churn_bytes_out_per_s",
        ] {
            assert_eq!(target_ratio(key, 100), None, "{key}");
        }
        let row = figure(
            "bytes_out_per_s",
            "",
            "B/s",
            None,
            None,
            target_ratio("bytes_out_per_s", 200),
        );
        assert_eq!((row.target.as_deref(), row.met), (Some("<= 0.5x"), None));
    }
}
