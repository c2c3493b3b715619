//! What the simulated workers saw, all of them in one place: when each task first arrived in
//! a worker's assignments stream (its placement, as the worker learns it) and when the leader
//! acknowledged the worker's report that it runs; and the figures made from those times.
//!
//! The workers record under one lock, a message's tasks at once; the counts are also
//! published in a watch, so the bench waits for "all placed" and "all reported" without
//! polling.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How many tasks the workers have seen placed and reported, and what went wrong on the way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Workers whose assignments stream has sent its first full set.
    pub streams: usize,
    pub placed: usize,
    pub reported: usize,
    /// Tasks that arrived on a second worker: a task placed twice, which must never happen.
    pub duplicates: usize,
    /// Assignments streams opened again (a gap in the numbering, or a broken stream).
    pub stream_restarts: usize,
    /// Report batches sent again after a failure.
    pub report_retries: usize,
    /// Session calls that failed.
    pub session_failures: usize,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    worker: usize,
    placed: Instant,
    reported: Option<Instant>,
}

#[derive(Debug)]
pub struct Tally {
    tasks: Mutex<HashMap<u64, Seen>>,
    counts: watch::Sender<Counts>,
    /// Why the last report batch that was sent again had failed.
    last_report_failure: Mutex<Option<String>>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            tasks: Mutex::new(HashMap::new()),
            counts: watch::Sender::new(Counts::default()),
            last_report_failure: Mutex::new(None),
        }
    }
}

impl Tally {
    pub fn counts(&self) -> watch::Receiver<Counts> {
        self.counts.subscribe()
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Seen>> {
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `worker` was assigned `ids` (for the first time on its stream), at `at`.
    pub fn placed(&self, worker: usize, ids: &[u64], at: Instant) {
        let mut tasks = self.tasks();
        let mut new = 0;
        let mut duplicates = 0;
        for id in ids {
            match tasks.get(id) {
                None => {
                    tasks.insert(
                        *id,
                        Seen {
                            worker,
                            placed: at,
                            reported: None,
                        },
                    );
                    new += 1;
                }
                Some(seen) if seen.worker != worker => duplicates += 1,
                // The same worker again: a stream opened again sends the full set.
                Some(_) => {}
            }
        }
        drop(tasks);
        self.counts.send_modify(|counts| {
            counts.placed += new;
            counts.duplicates += duplicates;
        });
    }

    /// The leader acknowledged that `ids` run, at `at`.
    pub fn reported(&self, ids: &[u64], at: Instant) {
        let mut tasks = self.tasks();
        let mut new = 0;
        for id in ids {
            if let Some(seen) = tasks.get_mut(id)
                && seen.reported.is_none()
            {
                seen.reported = Some(at);
                new += 1;
            }
        }
        drop(tasks);
        self.counts.send_modify(|counts| counts.reported += new);
    }

    pub fn stream_opened(&self) {
        self.counts.send_modify(|counts| counts.streams += 1);
    }

    pub fn stream_restarted(&self) {
        self.counts
            .send_modify(|counts| counts.stream_restarts += 1);
    }

    pub fn report_retried(&self, why: String) {
        *self
            .last_report_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(why);
        self.counts.send_modify(|counts| counts.report_retries += 1);
    }

    /// Why the last report batch sent again had failed, if one was.
    pub fn last_report_failure(&self) -> Option<String> {
        self.last_report_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn session_failed(&self) {
        self.counts
            .send_modify(|counts| counts.session_failures += 1);
    }

    /// The placement and report times, counted from `since`.
    pub fn times(&self, since: Instant) -> Times {
        let tasks = self.tasks();
        let mut placed: Vec<Duration> = tasks
            .values()
            .map(|seen| seen.placed.saturating_duration_since(since))
            .collect();
        let mut reported: Vec<Duration> = tasks
            .values()
            .filter_map(|seen| seen.reported)
            .map(|at| at.saturating_duration_since(since))
            .collect();
        placed.sort_unstable();
        reported.sort_unstable();
        Times { placed, reported }
    }
}

/// Each task's placement and report time, sorted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Times {
    pub placed: Vec<Duration>,
    pub reported: Vec<Duration>,
}

impl Times {
    /// Placements per second over the whole run: every task placed, divided by the time from
    /// the start (the `service create` call) to the last placement.
    pub fn placements_per_sec(&self) -> f64 {
        match self.placed.last() {
            Some(last) if !last.is_zero() => self.placed.len() as f64 / last.as_secs_f64(),
            _ => 0.0,
        }
    }

    /// The most placements seen within any one second.
    pub fn peak_per_sec(&self) -> usize {
        let window = Duration::from_secs(1);
        let mut start = 0;
        let mut peak = 0;
        for (end, at) in self.placed.iter().enumerate() {
            while *at - self.placed[start] >= window {
                start += 1;
            }
            peak = peak.max(end + 1 - start);
        }
        peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_is_counted_once_and_a_second_worker_is_a_duplicate() {
        let tally = Tally::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        tally.placed(0, &[1, 2], at(100));
        // A stream opened again sends the full set: not new, not a duplicate.
        tally.placed(0, &[1, 2, 3], at(300));
        tally.placed(1, &[2], at(400));
        tally.reported(&[1, 1, 3, 9], at(500));
        let counts = *tally.counts().borrow();
        assert_eq!(
            (counts.placed, counts.reported, counts.duplicates),
            (3, 2, 1)
        );
        let times = tally.times(start);
        assert_eq!(
            times.placed,
            [100, 100, 300].map(Duration::from_millis).to_vec()
        );
        assert_eq!(times.reported, [500, 500].map(Duration::from_millis));
    }

    #[test]
    fn the_rate_runs_to_the_last_placement_and_the_peak_is_the_busiest_second() {
        let ms = |list: &[u64]| list.iter().copied().map(Duration::from_millis).collect();
        let times = Times {
            placed: ms(&[100, 200, 900, 1_050, 1_100, 1_150, 2_000, 4_000]),
            reported: Vec::new(),
        };
        assert_eq!(times.placements_per_sec(), 2.0);
        // 200 to 1_150: five within one second; 100 and 1_100 are a second apart.
        assert_eq!(times.peak_per_sec(), 5);
        assert_eq!(Times::default().placements_per_sec(), 0.0);
        assert_eq!(Times::default().peak_per_sec(), 0);
    }
}
