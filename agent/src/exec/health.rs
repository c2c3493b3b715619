//! Health checks: a command run in a task's environment at an interval; the task is healthy
//! when it exits 0 within its timeout, unhealthy after `retries` failures in a row. Failures in
//! the start period do not count (a slow start is not a failure), but a success there makes the
//! task healthy at once.
//!
//! [`judge`] is the decision, pure and tested on its own; the executor keeps a [`Checks`] entry
//! per running task with a check, starts each run when it is due (at most one at a time) and
//! feeds the results back. An unhealthy task is stopped and ends `failed`, so its restart
//! policy applies and a rolling update sees it fail.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use symphony_consensus::{Health, HealthCheck};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::remote::proto::Assignment;

/// How much of a failing check's output is kept for the task's error.
const OUTPUT_KEPT: usize = 200;

/// One task's checks so far.
#[derive(Debug, Clone)]
pub struct CheckState {
    pub verdict: Health,
    /// Failures in a row (outside the start period).
    pub failures: u32,
    started: Instant,
    last_run: Option<Instant>,
    in_flight: bool,
}

impl CheckState {
    pub fn new(now: Instant) -> CheckState {
        CheckState {
            verdict: Health::Starting,
            failures: 0,
            started: now,
            last_run: None,
            in_flight: false,
        }
    }
}

/// The verdict after one run: `passed`, at `since_start` into the task's life.
pub fn judge(
    check: &HealthCheck,
    verdict: Health,
    failures: u32,
    passed: bool,
    since_start: Duration,
) -> (Health, u32) {
    if verdict == Health::Unhealthy {
        return (Health::Unhealthy, failures);
    }
    if passed {
        return (Health::Healthy, 0);
    }
    if since_start < Duration::from_millis(check.start_period_ms) {
        return (verdict, failures);
    }
    let failures = failures.saturating_add(1);
    if failures >= check.retries.max(1) {
        (Health::Unhealthy, failures)
    } else {
        (verdict, failures)
    }
}

/// Where a check runs.
#[derive(Debug, Clone)]
pub enum Probe {
    /// A process task's: a command on the node, in the task's dir.
    Process(PathBuf),
    /// A docker task's: inside its container, through the engine.
    Docker {
        engine: super::docker::Engine,
        container: String,
    },
}

/// What one run found.
#[derive(Debug)]
pub struct Outcome {
    pub task_id: u64,
    pub passed: bool,
    /// Why it failed: the exit, a timeout, and the start of its output.
    pub detail: String,
}

/// The checks of every running task with one.
#[derive(Debug, Default)]
pub struct Checks {
    states: BTreeMap<u64, CheckState>,
}

impl Checks {
    pub fn get(&self, task_id: u64) -> Option<&CheckState> {
        self.states.get(&task_id)
    }

    /// Forgets tasks that no longer run.
    pub fn retain(&mut self, running: impl Fn(u64) -> bool) {
        self.states.retain(|id, _| running(*id));
    }

    /// Starts the check of `assignment` (run by `probe`) if it is due.
    pub fn run_if_due(
        &mut self,
        assignment: &Assignment,
        probe: Probe,
        results: &mpsc::UnboundedSender<Outcome>,
        now: Instant,
    ) {
        let Some(check) = &assignment.spec.health else {
            return;
        };
        let state = self
            .states
            .entry(assignment.task_id)
            .or_insert_with(|| CheckState::new(now));
        let due = state.last_run.is_none_or(|last| {
            now.saturating_duration_since(last) >= Duration::from_millis(check.interval_ms)
        });
        if state.in_flight || !due || state.verdict == Health::Unhealthy {
            return;
        }
        state.in_flight = true;
        state.last_run = Some(now);
        let timeout = Duration::from_millis(check.timeout_ms);
        let task_id = assignment.task_id;
        let results = results.clone();
        let assignment = assignment.clone();
        let command = check.command.clone();
        tokio::spawn(async move {
            let outcome = match probe {
                Probe::Process(dir) => {
                    let command = super::process::health_command(&dir, &assignment, &command);
                    run_once(command, timeout).await
                }
                Probe::Docker { engine, container } => {
                    super::docker::check(&engine, &container, &assignment, &command, timeout).await
                }
            };
            let _ = results.send(Outcome {
                task_id,
                passed: outcome.is_ok(),
                detail: outcome.err().unwrap_or_default(),
            });
        });
    }

    /// Records a run's outcome; returns the new verdict when it changed.
    pub fn record(
        &mut self,
        check: &HealthCheck,
        outcome: &Outcome,
        now: Instant,
    ) -> Option<Health> {
        let state = self.states.get_mut(&outcome.task_id)?;
        state.in_flight = false;
        let (verdict, failures) = judge(
            check,
            state.verdict,
            state.failures,
            outcome.passed,
            now.saturating_duration_since(state.started),
        );
        state.failures = failures;
        let changed = verdict != state.verdict;
        state.verdict = verdict;
        changed.then_some(verdict)
    }
}

async fn run_once(mut command: tokio::process::Command, timeout: Duration) -> Result<(), String> {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|error| format!("the health check could not start: {error}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(format!("the health check took longer than {timeout:?}")),
        Ok(Err(error)) => Err(format!("the health check failed to run: {error}")),
        Ok(Ok(output)) if output.status.success() => Ok(()),
        Ok(Ok(output)) => {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            let text = text.trim();
            let kept: String = text.chars().take(OUTPUT_KEPT).collect();
            Err(match output.status.code() {
                Some(code) if kept.is_empty() => format!("the health check exited with {code}"),
                Some(code) => format!("the health check exited with {code}: {kept}"),
                None => "the health check was killed".to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(retries: u32, start_period_ms: u64) -> HealthCheck {
        HealthCheck {
            command: vec!["true".into()],
            interval_ms: 1_000,
            timeout_ms: 1_000,
            retries,
            start_period_ms,
        }
    }

    #[test]
    fn failures_count_in_a_row_after_the_start_period() {
        let check = check(3, 5_000);
        let early = Duration::from_secs(1);
        let late = Duration::from_secs(10);
        // In the start period a failure does not count, a success does.
        assert_eq!(
            judge(&check, Health::Starting, 0, false, early),
            (Health::Starting, 0)
        );
        assert_eq!(
            judge(&check, Health::Starting, 0, true, early),
            (Health::Healthy, 0)
        );
        // After it, the third failure in a row makes it unhealthy; a success resets.
        let (verdict, failures) = judge(&check, Health::Healthy, 0, false, late);
        assert_eq!((verdict, failures), (Health::Healthy, 1));
        let (verdict, failures) = judge(&check, verdict, failures, false, late);
        assert_eq!((verdict, failures), (Health::Healthy, 2));
        let (verdict, failures) = judge(&check, verdict, failures, true, late);
        assert_eq!((verdict, failures), (Health::Healthy, 0));
        let (verdict, failures) = judge(&check, verdict, failures, false, late);
        assert_eq!(
            judge(&check, verdict, failures, false, late).0,
            Health::Healthy
        );
        assert_eq!(
            judge(&check, Health::Healthy, 2, false, late).0,
            Health::Unhealthy
        );
        // Unhealthy is final: the task is stopped.
        assert_eq!(
            judge(&check, Health::Unhealthy, 3, true, late).0,
            Health::Unhealthy
        );
    }

    #[tokio::test]
    async fn a_check_passes_fails_and_times_out() {
        let command = |script: &str| {
            let mut command = tokio::process::Command::new("sh");
            command.arg("-c").arg(script);
            command
        };
        assert!(
            run_once(command("exit 0"), Duration::from_secs(5))
                .await
                .is_ok()
        );
        let failed = run_once(command("echo not ready; exit 3"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(failed.contains("exited with 3: not ready"), "{failed}");
        let slow = run_once(command("sleep 5"), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(slow.contains("longer than"), "{slow}");
    }
}
