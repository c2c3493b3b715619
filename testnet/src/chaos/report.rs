//! What a chaos run found, in the three forms people and machines need: a few lines to read, one
//! JSON object as the last line of the output, and on failure a file with everything (the
//! verdict with its minimal failing part, the whole history, the faults, the worker check), in
//! a shape [`ViolationReport::read_json`](super::ViolationReport::read_json) also reads, so the
//! history can be checked again.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::json;

use super::checker::{CheckResult, Verdict};
use super::error::ChaosError;
use super::history::{ClientId, History, Outcome};
use super::nemesis::FaultRecord;
use super::options::FaultKind;
use super::recovery::Recovery;
use super::replicas::ReplicaReport;
use super::services::ServicesReport;
use super::workers::WorkerReport;

/// The setup of a run, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct RunSetup {
    pub seed: u64,
    pub backend: String,
    pub managers: usize,
    pub workers: usize,
    pub clients: u32,
    pub keys: Vec<String>,
    pub duration_ms: u64,
    pub faults: Vec<FaultKind>,
}

/// The longest stretch with no successful operation from any client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Unavailability {
    pub longest_ms: u64,
    /// When it began, on the history's clock.
    pub from_ms: u64,
}

/// Everything a run found.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosRun {
    pub setup: RunSetup,
    pub verdict: Verdict,
    pub faults: Vec<FaultRecord>,
    pub notes: Vec<String>,
    pub workers: WorkerReport,
    pub services: ServicesReport,
    pub recovery: Recovery,
    /// Keys read at the end, after the recovery.
    pub final_reads: usize,
    /// Whether the managers' replicas agree at the end.
    pub replicas: ReplicaReport,
    pub unavailability: Unavailability,
    /// Problems taking the testnet down.
    pub teardown: Option<String>,
    pub history: History,
}

impl ChaosRun {
    /// Why the run failed, one clause each; empty when it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        match &self.verdict.result {
            CheckResult::Linearizable => {}
            CheckResult::NotLinearizable { key, .. } => {
                failures.push(format!("the history is not linearizable (key {key:?})"));
            }
            CheckResult::Unknown { reason } => {
                failures.push(format!("the checker could not decide ({reason})"));
            }
        }
        if !self.workers.ok() {
            failures.push(format!(
                "{} worker check violation(s): {}",
                self.workers.violations.len(),
                self.workers
                    .violations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        if let Some(missing) = &self.recovery.missing {
            failures.push(format!("the cluster did not recover: {missing}"));
        }
        if !self.services.ok() {
            failures.push(self.services.line());
        }
        if let Some(problem) = &self.replicas.problem {
            failures.push(format!("the managers' replicas disagree: {problem}"));
        }
        if self.final_reads < self.setup.keys.len() {
            failures.push(format!(
                "only {} of {} keys could be read at the end",
                self.final_reads,
                self.setup.keys.len()
            ));
        }
        failures
    }

    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// Faults injected, by kind.
    pub fn faults_by_kind(&self) -> BTreeMap<String, usize> {
        let mut counts: BTreeMap<String, usize> = FaultKind::ALL
            .iter()
            .filter(|kind| self.setup.faults.contains(kind))
            .map(|kind| (kind.to_string(), 0))
            .collect();
        for fault in &self.faults {
            *counts.entry(fault.kind.to_string()).or_default() += 1;
        }
        counts
    }

    /// The lines people read.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let setup = &self.setup;
        let _ = writeln!(
            out,
            "chaos: seed {}, {} backend, {} manager(s) + {} worker(s), {} client(s) on {} key(s), {:.1} s, faults {}",
            setup.seed,
            setup.backend,
            setup.managers,
            setup.workers,
            setup.clients,
            setup.keys.len(),
            setup.duration_ms as f64 / 1000.0,
            if setup.faults.is_empty() {
                "none".to_string()
            } else {
                setup
                    .faults
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            }
        );
        let by_kind = self
            .faults_by_kind()
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out, "faults injected: {} ({by_kind})", self.faults.len());
        for fault in &self.faults {
            let settled = match fault.settled_ms {
                Some(ms) => format!("whole again after {:.1} s", ms as f64 / 1000.0),
                None if fault.cut_short => "the run ended first".to_string(),
                None => "NOT whole again".to_string(),
            };
            let _ = writeln!(
                out,
                "  t={:6.1}s..{:6.1}s  {}: {settled}",
                fault.start_ms as f64 / 1000.0,
                fault.end_ms as f64 / 1000.0,
                fault.action
            );
            for problem in &fault.problems {
                let _ = writeln!(out, "      problem: {problem}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = writeln!(
            out,
            "longest unavailability: {:.2} s (from t={:.1}s)",
            self.unavailability.longest_ms as f64 / 1000.0,
            self.unavailability.from_ms as f64 / 1000.0
        );
        let workers = &self.workers;
        let _ = writeln!(
            out,
            "workers: {} fault(s) on workers, marked down after {}, ready again after {}, {} sample(s) ({} unanswered): {}",
            workers.faults,
            range_ms(&workers.down_after_ms),
            range_ms(&workers.ready_after_ms),
            workers.samples,
            workers.samples_failed,
            if workers.ok() { "ok" } else { "VIOLATED" }
        );
        for violation in &workers.violations {
            let _ = writeln!(out, "  worker violation: {violation}");
        }
        for note in &workers.inconclusive {
            let _ = writeln!(out, "  worker check inconclusive: {note}");
        }
        let _ = writeln!(out, "{}", self.services.line());
        match (&self.recovery.whole_after_ms, &self.recovery.missing) {
            (Some(ms), _) => {
                let _ = writeln!(
                    out,
                    "recovery: whole after {:.1} s, leader {}, {} of {} keys read at the end{}",
                    *ms as f64 / 1000.0,
                    self.recovery.leader.as_deref().unwrap_or("-"),
                    self.final_reads,
                    setup.keys.len(),
                    if self.recovery.actions.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", self.recovery.actions.join("; "))
                    }
                );
            }
            (None, missing) => {
                let _ = writeln!(
                    out,
                    "recovery: FAILED: {}",
                    missing.as_deref().unwrap_or("unknown")
                );
            }
        }
        if self.recovery.recovered() {
            let _ = writeln!(out, "{}", self.replicas.line());
        }
        if let Some(problem) = &self.teardown {
            let _ = writeln!(out, "teardown: {problem}");
        }
        // The verdict's own lines: the operation counts, the verdict, any minimal failing part.
        let _ = write!(out, "{}", self.verdict);
        out
    }

    /// The machine-readable last line.
    pub fn json_line(&self, report: Option<&Path>) -> String {
        let verdict = match &self.verdict.result {
            CheckResult::Linearizable => "linearizable",
            CheckResult::NotLinearizable { .. } => "not_linearizable",
            CheckResult::Unknown { .. } => "unknown",
        };
        json!({
            "seed": self.setup.seed,
            "backend": self.setup.backend,
            "duration_ms": self.setup.duration_ms,
            "ops_total": self.verdict.ops_total,
            "ops_ok": self.verdict.ops_ok,
            "ops_failed": self.verdict.ops_failed,
            "ops_indeterminate": self.verdict.ops_indeterminate,
            "faults": self.faults_by_kind(),
            "faults_total": self.faults.len(),
            "longest_unavailability_ms": self.unavailability.longest_ms,
            "verdict": verdict,
            "workers": if self.workers.ok() { "ok" } else { "violated" },
            "services": match (self.services.checked, self.services.ok()) {
                (false, _) => "not_run",
                (true, true) => "ok",
                (true, false) => "violated",
            },
            "replicas": match (self.replicas.ok(), self.replicas.revision) {
                (false, _) => "disagree",
                (true, Some(_)) => "agree",
                (true, None) => "not_compared",
            },
            "worker_violations": self.workers.violations.len(),
            "recovered": self.recovery.recovered(),
            "passed": self.passed(),
            "report": report.map(|path| path.display().to_string()),
        })
        .to_string()
    }

    /// Writes the whole run to `path` (see the module docs).
    pub fn write_json(&self, path: &Path) -> Result<(), ChaosError> {
        let text = serde_json::to_string_pretty(self).map_err(|error| ChaosError::Io {
            context: "cannot encode the chaos report".to_string(),
            source: std::io::Error::other(error),
        })?;
        std::fs::write(path, text)
            .map_err(ChaosError::io(format!("cannot write {}", path.display())))
    }
}

/// The longest stretch within `[from_ns, to_ns]` in which no operation of the workload's
/// clients (ids below `clients`) completed successfully.
pub fn unavailability(
    history: &History,
    clients: ClientId,
    from_ns: u64,
    to_ns: u64,
) -> Unavailability {
    let mut completions: Vec<u64> = history
        .ops
        .iter()
        .filter(|op| op.client < clients && matches!(op.outcome, Outcome::Ok(_)))
        .map(|op| op.complete_ns.clamp(from_ns, to_ns))
        .collect();
    completions.sort_unstable();
    let mut longest = Unavailability::default();
    let mut previous = from_ns;
    for at in completions.into_iter().chain(std::iter::once(to_ns)) {
        let gap = at.saturating_sub(previous) / 1_000_000;
        if gap > longest.longest_ms {
            longest = Unavailability {
                longest_ms: gap,
                from_ms: previous / 1_000_000,
            };
        }
        previous = previous.max(at);
    }
    longest
}

fn range_ms(values: &[u64]) -> String {
    match (values.iter().min(), values.iter().max()) {
        (Some(low), Some(high)) if low == high => format!("{:.1} s", *low as f64 / 1000.0),
        (Some(low), Some(high)) => {
            format!("{:.1}-{:.1} s", *low as f64 / 1000.0, *high as f64 / 1000.0)
        }
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::history::{Op, OpRecord, OpResult};
    use super::*;

    fn op(client: ClientId, complete_ms: u64, ok: bool) -> OpRecord {
        OpRecord {
            id: complete_ms,
            client,
            op: Op::Get { key: "k".into() },
            invoke_ns: 0,
            complete_ns: complete_ms * 1_000_000,
            outcome: if ok {
                Outcome::Ok(OpResult::Read { found: None })
            } else {
                Outcome::Failed { reason: "x".into() }
            },
        }
    }

    #[test]
    fn the_longest_gap_between_successes_counts() {
        let history = History {
            ops: vec![
                op(0, 100, true),
                op(1, 400, false),
                op(1, 1_900, true),
                op(0, 2_000, true),
                // The final reads' client does not count.
                op(9, 1_000, true),
            ],
        };
        let gap = unavailability(&history, 2, 0, 2_500_000_000);
        assert_eq!(
            gap,
            Unavailability {
                longest_ms: 1_800,
                from_ms: 100
            }
        );
        // No success at all: the whole window.
        let gap = unavailability(&History::default(), 2, 0, 3_000_000_000);
        assert_eq!(gap.longest_ms, 3_000);
    }
}
