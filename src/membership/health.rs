//! Local health (what Lifeguard added to memberlist and foca lacks): a node that is itself
//! starved of CPU, or whose packets arrive late, must not declare healthy peers dead.
//!
//! The score rises when this node's own timers fire late (it was not scheduled in time) and
//! when its probes fail twice in a row, and falls with every probe answered. One failed probe
//! says more about its target than about us (a crashed peer fails exactly one of our probes):
//! counting it would delay every real failure by a probe interval. While it is above zero, a
//! suspicion that expires here is given more time (score x probe interval) before it is
//! handed to foca: the peer may well be fine and only this node slow.

use std::time::Duration;

/// The highest score: at most this many extra probe intervals of patience.
pub const MAX_SCORE: u32 = 8;

#[derive(Debug, Default, Clone)]
pub struct LocalHealth {
    score: u32,
    /// Whether our last probe went unanswered.
    last_probe_failed: bool,
}

impl LocalHealth {
    pub fn score(&self) -> u32 {
        self.score
    }

    /// A timer fired `lateness` after it was due.
    pub fn timer_fired_late(&mut self, lateness: Duration, tolerance: Duration) {
        if lateness > tolerance {
            self.raise();
        }
    }

    /// A probe of ours got no answer at all.
    pub fn probe_failed(&mut self) {
        if self.last_probe_failed {
            self.raise();
        }
        self.last_probe_failed = true;
    }

    /// A probe of ours was answered.
    pub fn probe_answered(&mut self) {
        self.score = self.score.saturating_sub(1);
        self.last_probe_failed = false;
    }

    /// Extra time a suspicion gets before it turns into `dead`.
    pub fn patience(&self, probe_interval: Duration) -> Duration {
        probe_interval * self.score
    }

    fn raise(&mut self) {
        self.score = (self.score + 1).min(MAX_SCORE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_timers_and_failed_probes_raise_answers_lower() {
        let mut health = LocalHealth::default();
        let tolerance = Duration::from_millis(100);
        health.timer_fired_late(Duration::from_millis(50), tolerance);
        assert_eq!(health.score(), 0);
        health.timer_fired_late(Duration::from_secs(3), tolerance);
        health.probe_failed();
        assert_eq!(health.score(), 1, "one failed probe blames its target");
        health.probe_failed();
        assert_eq!(health.score(), 2, "a second in a row blames us");
        assert_eq!(
            health.patience(Duration::from_secs(1)),
            Duration::from_secs(2)
        );
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
}
