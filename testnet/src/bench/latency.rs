//! The one summary of measured times that every benchmark reports with, so that "p99" or
//! "median" means the same thing in `bench kv`, `failover`, `fleet` and `gossip`.
//!
//! Percentiles are **nearest-rank**: the p-th percentile of n samples is the sample of rank
//! ⌈p/100 · n⌉ (counting from 1) in ascending order, that is the smallest sample with at least
//! p% of the samples at or below it. It never interpolates, so it is always a time something
//! really took: the median (p50) of an even count is the lower of the two middle samples, p100
//! is the largest sample.
//!
//! Some measurements can fail to finish (a gossip trial that never reaches 99.9% of the
//! members): such a sample ranks above every time, and a percentile that falls on it is "not
//! reached" (`None`).

use std::time::Duration;

use super::figures::millis;

/// Measured times, sorted, and how many measurements never finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latencies {
    sorted: Vec<Duration>,
    unreached: usize,
}

impl Latencies {
    /// Times that all finished.
    pub fn new(samples: impl IntoIterator<Item = Duration>) -> Latencies {
        Latencies::with_unreached(samples.into_iter().map(Some))
    }

    /// Times of which some (`None`) never finished.
    pub fn with_unreached(samples: impl IntoIterator<Item = Option<Duration>>) -> Latencies {
        let mut sorted = Vec::new();
        let mut unreached = 0;
        for sample in samples {
            match sample {
                Some(time) => sorted.push(time),
                None => unreached += 1,
            }
        }
        sorted.sort_unstable();
        Latencies { sorted, unreached }
    }

    /// How many samples, finished or not.
    pub fn len(&self) -> usize {
        self.sorted.len() + self.unreached
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The nearest-rank `percent`-th percentile (see the module docs), `percent` in (0, 100];
    /// `None` without samples or when the rank falls on a sample that never finished.
    pub fn percentile(&self, percent: f64) -> Option<Duration> {
        if self.is_empty() {
            return None;
        }
        let rank = (percent / 100.0 * self.len() as f64).ceil() as usize;
        self.sorted.get(rank.clamp(1, self.len()) - 1).copied()
    }

    /// The nearest-rank median: p50.
    pub fn median(&self) -> Option<Duration> {
        self.percentile(50.0)
    }

    /// The largest sample: p100 (`None` if any never finished).
    pub fn max(&self) -> Option<Duration> {
        self.percentile(100.0)
    }

    /// p50, p99 and the maximum in milliseconds, zero where there is no figure.
    pub fn summary(&self) -> LatencySummary {
        let ms = |time: Option<Duration>| millis(time.unwrap_or_default());
        LatencySummary {
            p50_ms: ms(self.median()),
            p99_ms: ms(self.percentile(99.0)),
            max_ms: ms(self.max()),
        }
    }
}

/// The percentiles a benchmark prints for its operations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Latencies {
        Latencies::new(values.iter().copied().map(Duration::from_millis))
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples = Latencies::new((1..=100).rev().map(Duration::from_millis));
        let summary = samples.summary();
        assert_eq!(summary.p50_ms, 50.0);
        assert_eq!(summary.p99_ms, 99.0);
        assert_eq!(summary.max_ms, 100.0);
        assert_eq!(samples.percentile(0.5), Some(Duration::from_millis(1)));
    }

    #[test]
    fn the_median_is_a_sample_the_lower_middle_one_of_an_even_count() {
        assert_eq!(ms(&[5, 1, 3]).median(), Some(Duration::from_millis(3)));
        assert_eq!(ms(&[4, 1, 3, 2]).median(), Some(Duration::from_millis(2)));
        assert_eq!(ms(&[1, 2, 3, 4, 5]).max(), Some(Duration::from_millis(5)));
    }

    #[test]
    fn empty_is_none_and_its_summary_zero() {
        let none = Latencies::new([]);
        assert_eq!(none.median(), None);
        assert_eq!(none.summary().max_ms, 0.0);
        assert_eq!(none.summary().p99_ms, 0.0);
    }

    #[test]
    fn single_sample() {
        let summary = ms(&[7]).summary();
        assert_eq!(
            (summary.p50_ms, summary.p99_ms, summary.max_ms),
            (7.0, 7.0, 7.0)
        );
    }

    #[test]
    fn unfinished_samples_rank_last() {
        let d = Duration::from_secs;
        let samples = Latencies::with_unreached([Some(d(3)), None, Some(d(1))]);
        assert_eq!(samples.len(), 3);
        assert_eq!(samples.median(), Some(d(3)));
        assert_eq!(samples.max(), None);
        let mostly_unfinished = Latencies::with_unreached([None, Some(d(1)), None]);
        assert_eq!(mostly_unfinished.median(), None);
        assert_eq!(mostly_unfinished.percentile(1.0), Some(d(1)));
    }
}
