//! Summaries of repeated measurements.

use std::time::Duration;

use serde::Serialize;

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
        if samples.is_empty() {
            return None;
        }
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(|a, b| a.total_cmp(b));
        let mid = ms.len() / 2;
        let median_ms = if ms.len().is_multiple_of(2) {
            (ms[mid - 1] + ms[mid]) / 2.0
        } else {
            ms[mid]
        };
        Some(Summary {
            runs: ms.len(),
            median_ms,
            min_ms: ms[0],
            max_ms: ms[ms.len() - 1],
        })
    }
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
}
