//! The worker check: every worker the nemesis kills, pauses or cuts off must become `down` in
//! the leader's `node ls`, must be `ready` again after it recovers, and a worker that nothing
//! happened to must never be marked `down`.
//!
//! [`WorkerWatch`] is the bookkeeping, kept apart from any I/O so its rules can be tested: the
//! nemesis tells it when a fault on a worker begins and ends, and a sampler (see
//! [`super::sampler`]) feeds it what `node ls` on the leader says, with the times the sample was
//! taken. Each worker is in one of three states:
//! - healthy: no fault, and `ready` seen since the last one; a `down` seen by a sample that
//!   began while it was healthy is a false down — the violation this check exists for;
//! - faulted: a fault is on it; `down` is expected (for kill, pause and an isolating partition
//!   the nemesis waits for it and reports it missing after a deadline);
//! - recovering: the fault ended; `down` is still allowed until a `ready` is seen by a sample
//!   that began at least [`AFTER_FAULT_ALLOWANCE`] after the end (the leader's view lags the
//!   fault by the gossip and grace timings in both directions, so a `ready` right after the end
//!   may be the view from before the fault was noticed).

use std::collections::BTreeMap;

use serde::Serialize;

/// How long after a fault ends its worker may still be (or newly be) marked down.
pub const AFTER_FAULT_ALLOWANCE_NS: u64 = 5_000_000_000;

#[derive(Debug, Clone)]
enum Health {
    Healthy {
        since_ns: u64,
    },
    Faulted {
        since_ns: u64,
        down_ns: Option<u64>,
    },
    Recovering {
        ended_ns: u64,
        ready_ns: Option<u64>,
    },
}

/// Something the check found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkerViolation {
    /// A worker nothing happened to was marked down.
    FalseDown {
        worker: String,
        at_ms: u64,
        /// The last fault the worker had, if any.
        after_fault: Option<String>,
    },
    /// A worker under a fault was never marked down.
    NotMarkedDown {
        worker: String,
        fault: String,
        waited_ms: u64,
    },
    /// A recovered worker did not become ready.
    NotReady {
        worker: String,
        fault: String,
        waited_ms: u64,
    },
    /// `node ls` showed a status other than ready or down for a worker no one removed.
    UnexpectedStatus {
        worker: String,
        status: String,
        at_ms: u64,
    },
}

impl std::fmt::Display for WorkerViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerViolation::FalseDown {
                worker,
                at_ms,
                after_fault,
            } => {
                write!(
                    f,
                    "{worker} was marked down at t={:.1}s while healthy",
                    *at_ms as f64 / 1000.0
                )?;
                match after_fault {
                    Some(fault) => write!(f, " (its last fault: {fault})"),
                    None => write!(f, " (it had no fault)"),
                }
            }
            WorkerViolation::NotMarkedDown {
                worker,
                fault,
                waited_ms,
            } => write!(
                f,
                "{worker} was not marked down within {:.1}s of {fault}",
                *waited_ms as f64 / 1000.0
            ),
            WorkerViolation::NotReady {
                worker,
                fault,
                waited_ms,
            } => write!(
                f,
                "{worker} was not ready again within {:.1}s after {fault} ended",
                *waited_ms as f64 / 1000.0
            ),
            WorkerViolation::UnexpectedStatus {
                worker,
                status,
                at_ms,
            } => write!(
                f,
                "{worker} was shown as {status:?} at t={:.1}s",
                *at_ms as f64 / 1000.0
            ),
        }
    }
}

/// What the worker check found, for the summary and the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerReport {
    /// Faults on workers.
    pub faults: usize,
    /// For each fault seen as `down`: milliseconds from its start until a sample saw it.
    pub down_after_ms: Vec<u64>,
    /// For each recovered worker: milliseconds from the fault's end until a sample saw it ready.
    pub ready_after_ms: Vec<u64>,
    /// `node ls` samples taken, and how many of them got no answer.
    pub samples: u64,
    pub samples_failed: u64,
    pub violations: Vec<WorkerViolation>,
    /// Checks that could not decide (e.g. leadership changed while a down was awaited).
    pub inconclusive: Vec<String>,
}

impl WorkerReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The state of every worker (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct WorkerWatch {
    workers: BTreeMap<String, Health>,
    /// The last status each worker was seen with, so one false-down episode is reported once.
    last_status: BTreeMap<String, String>,
    last_fault: BTreeMap<String, String>,
    report: WorkerReport,
}

impl WorkerWatch {
    /// Watches `workers`, healthy from time 0.
    pub fn new(workers: impl IntoIterator<Item = String>) -> WorkerWatch {
        WorkerWatch {
            workers: workers
                .into_iter()
                .map(|name| (name, Health::Healthy { since_ns: 0 }))
                .collect(),
            ..WorkerWatch::default()
        }
    }

    /// Whether `name` is a watched worker.
    pub fn watches(&self, name: &str) -> bool {
        self.workers.contains_key(name)
    }

    /// A fault on worker `name` begins at `now_ns`.
    pub fn fault_begins(&mut self, name: &str, fault: &str, now_ns: u64) {
        if let Some(health) = self.workers.get_mut(name) {
            *health = Health::Faulted {
                since_ns: now_ns,
                down_ns: None,
            };
            self.last_fault.insert(name.to_string(), fault.to_string());
            self.report.faults += 1;
        }
    }

    /// The fault on worker `name` ends at `now_ns` (it was resumed, restarted or healed).
    pub fn fault_ends(&mut self, name: &str, now_ns: u64) {
        if let Some(health) = self.workers.get_mut(name)
            && let Health::Faulted { .. } = health
        {
            *health = Health::Recovering {
                ended_ns: now_ns,
                ready_ns: None,
            };
        }
    }

    /// When worker `name` was first seen down during its current fault.
    pub fn down_seen(&self, name: &str) -> Option<u64> {
        match self.workers.get(name) {
            Some(Health::Faulted { down_ns, .. }) => *down_ns,
            _ => None,
        }
    }

    /// Whether worker `name` was seen ready since its last fault ended (or never had one).
    pub fn ready_seen(&self, name: &str) -> bool {
        match self.workers.get(name) {
            Some(Health::Healthy { .. }) => true,
            Some(Health::Recovering { ready_ns, .. }) => ready_ns.is_some(),
            _ => false,
        }
    }

    /// A sample of `node ls` begun at `invoke_ns` and answered at `complete_ns` showed worker
    /// `name` with `status`.
    pub fn observe(&mut self, name: &str, status: &str, invoke_ns: u64, complete_ns: u64) {
        let Some(health) = self.workers.get_mut(name) else {
            return;
        };
        let previous = self
            .last_status
            .insert(name.to_string(), status.to_string());
        match (status, &mut *health) {
            ("down", Health::Healthy { since_ns })
                if *since_ns <= invoke_ns && previous.as_deref() != Some("down") =>
            {
                self.report.violations.push(WorkerViolation::FalseDown {
                    worker: name.to_string(),
                    at_ms: complete_ns / 1_000_000,
                    after_fault: self.last_fault.get(name).cloned(),
                });
            }
            ("down", Health::Faulted { since_ns, down_ns }) if down_ns.is_none() => {
                *down_ns = Some(complete_ns);
                self.report
                    .down_after_ms
                    .push(complete_ns.saturating_sub(*since_ns) / 1_000_000);
            }
            ("ready", Health::Recovering { ended_ns, ready_ns }) => {
                if invoke_ns >= *ended_ns && ready_ns.is_none() {
                    *ready_ns = Some(complete_ns);
                    self.report
                        .ready_after_ms
                        .push(complete_ns.saturating_sub(*ended_ns) / 1_000_000);
                }
                if invoke_ns >= ended_ns.saturating_add(AFTER_FAULT_ALLOWANCE_NS) {
                    *health = Health::Healthy {
                        since_ns: complete_ns,
                    };
                }
            }
            ("ready" | "down", _) => {}
            (other, Health::Healthy { since_ns })
                if *since_ns <= invoke_ns && previous.as_deref() != Some(other) =>
            {
                self.report
                    .violations
                    .push(WorkerViolation::UnexpectedStatus {
                        worker: name.to_string(),
                        status: other.to_string(),
                        at_ms: complete_ns / 1_000_000,
                    });
            }
            _ => {}
        }
    }

    /// Counts one `node ls` sample, answered or not.
    pub fn sampled(&mut self, answered: bool) {
        self.report.samples += 1;
        if !answered {
            self.report.samples_failed += 1;
        }
    }

    /// Records a violation found by the nemesis (a missed down, a worker not ready again).
    pub fn violation(&mut self, violation: WorkerViolation) {
        self.report.violations.push(violation);
    }

    /// Records a check that could not decide, and why.
    pub fn inconclusive(&mut self, note: String) {
        self.report.inconclusive.push(note);
    }

    pub fn report(&self) -> WorkerReport {
        self.report.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn watch() -> WorkerWatch {
        WorkerWatch::new(["worker-1".to_string(), "worker-2".to_string()])
    }

    #[test]
    fn a_healthy_worker_marked_down_is_a_violation_once() {
        let mut watch = watch();
        watch.observe("worker-1", "ready", S, S + 1);
        watch.observe("worker-1", "down", 2 * S, 2 * S + 1);
        watch.observe("worker-1", "down", 3 * S, 3 * S + 1);
        let report = watch.report();
        assert_eq!(report.violations.len(), 1);
        assert!(matches!(
            &report.violations[0],
            WorkerViolation::FalseDown { worker, after_fault: None, .. } if worker == "worker-1"
        ));
    }

    #[test]
    fn a_fault_allows_down_and_needs_ready_after() {
        let mut watch = watch();
        watch.fault_begins("worker-2", "kill worker-2", 10 * S);
        watch.observe("worker-2", "ready", 11 * S, 11 * S);
        assert_eq!(watch.down_seen("worker-2"), None);
        watch.observe("worker-2", "down", 12 * S, 12 * S + 500_000_000);
        assert_eq!(watch.down_seen("worker-2"), Some(12 * S + 500_000_000));
        watch.fault_ends("worker-2", 15 * S);
        assert!(!watch.ready_seen("worker-2"));
        // Still down right after the end, then ready: fine.
        watch.observe("worker-2", "down", 15 * S, 15 * S);
        watch.observe("worker-2", "ready", 16 * S, 16 * S);
        assert!(watch.ready_seen("worker-2"));
        // A late down within the allowance is tolerated...
        watch.observe("worker-2", "down", 17 * S, 17 * S);
        // ...after it, once ready was seen again, it is not.
        watch.observe("worker-2", "ready", 21 * S, 21 * S);
        watch.observe("worker-2", "down", 22 * S, 22 * S);
        let report = watch.report();
        assert_eq!(report.faults, 1);
        assert_eq!(report.down_after_ms, vec![2500]);
        assert_eq!(report.ready_after_ms, vec![1000]);
        assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
        assert!(matches!(
            &report.violations[0],
            WorkerViolation::FalseDown { after_fault: Some(fault), .. } if fault == "kill worker-2"
        ));
    }

    #[test]
    fn a_sample_begun_before_recovery_is_not_trusted() {
        let mut watch = watch();
        watch.fault_begins("worker-1", "pause worker-1", S);
        watch.fault_ends("worker-1", 3 * S);
        // Began before the end: says nothing about the recovery.
        watch.observe("worker-1", "ready", 2 * S, 4 * S);
        assert!(!watch.ready_seen("worker-1"));
        watch.observe("worker-1", "left", 5 * S, 5 * S);
        assert!(watch.report().violations.is_empty());
        watch.observe("worker-1", "ready", 9 * S, 9 * S);
        watch.observe("worker-1", "left", 10 * S, 10 * S);
        assert_eq!(watch.report().violations.len(), 1);
    }

    #[test]
    fn unknown_nodes_are_ignored() {
        let mut watch = watch();
        watch.fault_begins("manager-1", "kill manager-1", S);
        watch.observe("manager-1", "down", 2 * S, 2 * S);
        assert!(!watch.watches("manager-1"));
        assert_eq!(watch.report().faults, 0);
        assert!(watch.report().violations.is_empty());
    }
}
