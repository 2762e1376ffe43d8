//! Summaries of repeated measurements, and the bocluster / Serf ratio of two summaries.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Median, min and max of a series, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let stat = Stat::of_ms(samples)?;
        Some(Summary {
            runs: stat.samples,
            median_ms: stat.median,
            min_ms: stat.min,
            max_ms: stat.max,
        })
    }
}

/// Median of a series (the mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

/// Median, min and max of a series of any unit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    pub samples: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Stat> {
        let median = median(values)?;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Stat {
            samples: values.len(),
            median,
            min,
            max,
        })
    }

    /// Of durations, in milliseconds.
    pub fn of_ms(samples: &[Duration]) -> Option<Stat> {
        let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        Stat::of(&ms)
    }
}

/// `ours / theirs` of two medians: `None` when either is missing or theirs is zero (a ratio to
/// nothing says nothing; the table shows both values instead).
pub fn ratio(ours: Option<&Stat>, theirs: Option<&Stat>) -> Option<f64> {
    let (ours, theirs) = (ours?.median, theirs?.median);
    if theirs == 0.0 || !theirs.is_finite() || !ours.is_finite() {
        return None;
    }
    Some(ours / theirs)
}

/// Whether a ratio meets a target "at most `max` x Serf's". Unknown when there is no ratio.
pub fn meets(ratio: Option<f64>, max: f64) -> Option<bool> {
    ratio.map(|r| r <= max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_series() {
        let d = |ms| Duration::from_millis(ms);
        let s = Summary::of(&[d(30), d(10), d(20)]).unwrap();
        assert_eq!(
            (s.median_ms, s.min_ms, s.max_ms, s.runs),
            (20.0, 10.0, 30.0, 3)
        );
        let s = Summary::of(&[d(40), d(10), d(20), d(30)]).unwrap();
        assert_eq!(s.median_ms, 25.0);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn stat_of_values() {
        let s = Stat::of(&[5.0, 1.0, 3.0, 100.0]).unwrap();
        assert_eq!((s.samples, s.median, s.min, s.max), (4, 4.0, 1.0, 100.0));
        assert_eq!(Stat::of(&[7.0]).unwrap().median, 7.0);
        assert!(Stat::of(&[]).is_none());
        let ms = Stat::of_ms(&[Duration::from_millis(1500)]).unwrap();
        assert_eq!(ms.median, 1500.0);
    }

    #[test]
    fn ratio_of_medians() {
        let a = Stat::of(&[1.0, 2.0, 3.0]).unwrap();
        let b = Stat::of(&[4.0, 8.0]).unwrap();
        assert_eq!(ratio(Some(&a), Some(&b)), Some(2.0 / 6.0));
        assert_eq!(ratio(Some(&b), Some(&a)), Some(3.0));
        // Nothing to compare with.
        assert_eq!(ratio(None, Some(&b)), None);
        assert_eq!(ratio(Some(&a), None), None);
        let zero = Stat::of(&[0.0, 0.0]).unwrap();
        assert_eq!(ratio(Some(&a), Some(&zero)), None);
        assert_eq!(ratio(Some(&zero), Some(&a)), Some(0.0));
    }

    #[test]
    fn targets() {
        assert_eq!(meets(Some(0.4), 0.5), Some(true));
        assert_eq!(meets(Some(0.5), 0.5), Some(true));
        assert_eq!(meets(Some(1.2), 1.0), Some(false));
        assert_eq!(meets(None, 1.0), None);
    }
}
