//! How long the store's commits take: one redb transaction with its fsync, which every Raft
//! append (and the state rows behind it) waits for before it is acknowledged — the number an
//! operator looks at first when writes are slow (etcd's WAL fsync duration, here).
//!
//! A fixed-bucket histogram of atomics, so the writer thread records without a lock or a
//! channel; whoever exports it (the agent's metrics) reads it. It belongs to whoever made it,
//! not to one Raft node, so it keeps counting across a Raft node's restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The buckets' upper bounds in seconds: 0.5 ms doubling to about 16 s, from a fast SSD's fsync
/// to a disk that has all but stopped.
pub const COMMIT_BUCKETS: [f64; 16] = [
    0.000_5, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048,
    4.096, 8.192, 16.384,
];

/// The commit-time histogram; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct CommitTimings {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Commits per bucket (not cumulative); the last one counts those above every bound.
    buckets: [AtomicU64; COMMIT_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A reading of the histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitTimes {
    pub count: u64,
    pub sum_seconds: f64,
    /// Each bucket's upper bound (the last one infinite) and the commits in it, not cumulative.
    pub buckets: Vec<(f64, u64)>,
}

impl CommitTimings {
    /// Records one commit that wrote something and succeeded.
    pub(crate) fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = COMMIT_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(COMMIT_BUCKETS.len());
        let counts = &self.inner;
        counts.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        counts.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        counts.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts now. Read without a lock, so a commit being recorded may show in one field
    /// and not yet in another; a scrape a moment later sees it whole.
    pub fn read(&self) -> CommitTimes {
        let counts = &self.inner;
        let bounds = COMMIT_BUCKETS.iter().copied().chain([f64::INFINITY]);
        CommitTimes {
            count: counts.count.load(Ordering::Relaxed),
            sum_seconds: Duration::from_nanos(counts.sum_nanos.load(Ordering::Relaxed))
                .as_secs_f64(),
            buckets: bounds
                .zip(&counts.buckets)
                .map(|(bound, count)| (bound, count.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_commit_lands_in_the_first_bucket_that_holds_it() {
        let timings = CommitTimings::default();
        timings.record(Duration::from_micros(300));
        timings.record(Duration::from_millis(3));
        timings.record(Duration::from_secs(60));
        let times = timings.read();
        assert_eq!(times.count, 3);
        assert!((times.sum_seconds - 60.0033).abs() < 1e-9);
        let nonzero: Vec<(f64, u64)> = times
            .buckets
            .iter()
            .copied()
            .filter(|(_, count)| *count > 0)
            .collect();
        assert_eq!(nonzero, vec![(0.000_5, 1), (0.004, 1), (f64::INFINITY, 1)]);
        assert_eq!(times.buckets.len(), COMMIT_BUCKETS.len() + 1);
    }
}
