//! Summaries of per-operation latencies.

use std::time::Duration;

/// Percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    /// Summarises `samples` (sorted in place); all zero when there are none.
    pub fn from_samples(samples: &mut [Duration]) -> LatencySummary {
        samples.sort_unstable();
        LatencySummary {
            p50_ms: millis(percentile(samples, 50.0)),
            p99_ms: millis(percentile(samples, 99.0)),
            max_ms: millis(samples.last().copied().unwrap_or_default()),
        }
    }
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], percent: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: the smallest sample with at least `percent`% of samples at or below it.
    let rank = (percent / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let summary = LatencySummary::from_samples(&mut samples);
        assert_eq!(summary.p50_ms, 50.0);
        assert_eq!(summary.p99_ms, 99.0);
        assert_eq!(summary.max_ms, 100.0);
    }

    #[test]
    fn empty_is_zero() {
        let summary = LatencySummary::from_samples(&mut []);
        assert_eq!(summary.max_ms, 0.0);
        assert_eq!(summary.p99_ms, 0.0);
    }

    #[test]
    fn single_sample() {
        let mut samples = [Duration::from_millis(7)];
        let summary = LatencySummary::from_samples(&mut samples);
        assert_eq!(
            (summary.p50_ms, summary.p99_ms, summary.max_ms),
            (7.0, 7.0, 7.0)
        );
    }
}
