//! Local health (what Lifeguard added to memberlist and foca lacks): a node that is itself
//! starved of CPU, or whose packets arrive late, must not declare healthy peers dead.
//!
//! Two signs that the fault may be ours rather than the suspect's:
//! - Our own timers fire late (this process was not scheduled in time, or was paused): a
//!   suspicion that runs out here gets back the time this node lost lately, once. Not more:
//!   a brief starvation (a burst of process starts on a loaded host) costs its length, not a
//!   probe interval per late timer, and a crash is still declared soon.
//! - Our probes fail twice in a row (one failed probe says more about its target: a crashed
//!   peer fails exactly one of our probes). Each such failure raises a score, each answered
//!   probe lowers it, and a suspicion gets score x probe interval more.

use std::time::Duration;

/// The highest score: at most this many extra probe intervals of patience.
pub const MAX_SCORE: u32 = 8;

/// How long a late timer is remembered: longer than any suspicion it could have cut short.
pub const LATENESS_MEMORY: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone)]
pub struct LocalHealth {
    score: u32,
    /// Whether our last probe went unanswered.
    last_probe_failed: bool,
    /// The largest lateness of a timer lately, and when it was seen.
    lateness: Duration,
    late_at: Duration,
}

impl LocalHealth {
    pub fn score(&self) -> u32 {
        self.score
    }

    /// A timer due earlier fired at `now`, `lateness` late; below `tolerance` it is noise.
    pub fn timer_fired_late(&mut self, now: Duration, lateness: Duration, tolerance: Duration) {
        if lateness <= tolerance {
            return;
        }
        if lateness >= self.recent_lateness(now) {
            self.lateness = lateness;
            self.late_at = now;
        }
    }

    /// A probe of ours got no answer at all.
    pub fn probe_failed(&mut self) {
        if self.last_probe_failed {
            self.score = (self.score + 1).min(MAX_SCORE);
        }
        self.last_probe_failed = true;
    }

    /// A probe of ours was answered.
    pub fn probe_answered(&mut self) {
        self.score = self.score.saturating_sub(1);
        self.last_probe_failed = false;
    }

    /// Extra time a suspicion running out at `now` gets before it turns into `dead`.
    pub fn patience(&self, now: Duration, probe_interval: Duration) -> Duration {
        probe_interval * self.score + self.recent_lateness(now)
    }

    fn recent_lateness(&self, now: Duration) -> Duration {
        if now.saturating_sub(self.late_at) <= LATENESS_MEMORY {
            self.lateness
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn two_failed_probes_in_a_row_raise_the_score_answers_lower_it() {
        let mut health = LocalHealth::default();
        health.probe_failed();
        assert_eq!(health.score(), 0, "one failed probe blames its target");
        health.probe_failed();
        assert_eq!(health.score(), 1, "a second in a row blames us");
        assert_eq!(health.patience(Duration::ZERO, SECOND), SECOND);
        for _ in 0..20 {
            health.probe_failed();
        }
        assert_eq!(health.score(), MAX_SCORE);
        health.probe_answered();
        assert_eq!(health.score(), MAX_SCORE - 1);
        health.probe_failed();
        assert_eq!(
            health.score(),
            MAX_SCORE - 1,
            "after an answer, one failure is not ours"
        );
    }

    #[test]
    fn late_timers_give_back_the_time_lost_lately() {
        let mut health = LocalHealth::default();
        let tolerance = Duration::from_millis(200);
        let now = Duration::from_secs(100);
        health.timer_fired_late(now, Duration::from_millis(150), tolerance);
        assert_eq!(health.patience(now, SECOND), Duration::ZERO, "noise");
        // Paused for 3 s: the suspicions running out now get those 3 s back.
        health.timer_fired_late(now, Duration::from_secs(3), tolerance);
        health.timer_fired_late(now, Duration::from_millis(300), tolerance);
        assert_eq!(health.patience(now, SECOND), Duration::from_secs(3));
        assert_eq!(
            health.patience(now + LATENESS_MEMORY, SECOND),
            Duration::from_secs(3)
        );
        // Long after, forgotten; a new, smaller lateness counts on its own.
        let later = now + LATENESS_MEMORY + SECOND;
        assert_eq!(health.patience(later, SECOND), Duration::ZERO);
        health.timer_fired_late(later, Duration::from_millis(400), tolerance);
        assert_eq!(health.patience(later, SECOND), Duration::from_millis(400));
    }
}
