//! `testnet bench start`: how long a new service's tasks take to run, with real agents and the
//! process driver.
//!
//! One manager and `--workers` workers (10) on loopback. Each of `--trials` (3) creates a
//! service of `--tasks` (100) `sleep` tasks and waits until every one runs; a task's start time
//! is from the `service create` call to its `running` transition (as the log recorded it: the
//! proposer's clock, this machine's). The benchmark prints p50, p99 and the slowest over all
//! tasks of all trials and, per trial, the time until every task ran, then one JSON object.
//! Each trial's service is removed, and its tasks gone, before the next.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde_json::json;
use symphony_ctl::proto::{ReadConsistency, ServiceSpecView, TaskInfo};

use super::figures::{millis, round2};
use super::latency::Latencies;
use super::update::start_fleet;
use crate::harness::poll_until;

/// What `testnet bench start` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    pub workers: usize,
    pub tasks: u32,
    pub trials: usize,
    /// How long forming and each trial may take.
    pub timeout_s: u64,
    /// The agent binary; `None`: `$SYMPHONY_AGENT_BIN` or next to this executable.
    pub agent_bin: Option<PathBuf>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            workers: 10,
            tasks: 100,
            trials: 3,
            timeout_s: 300,
            agent_bin: None,
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// When `task` reached `running`, by the log.
fn running_at(task: &TaskInfo) -> Option<u64> {
    task.transitions
        .iter()
        .find(|(state, _)| state == "running")
        .map(|(_, at)| *at)
}

/// Each task's time from `created_ms` to running.
fn start_times(tasks: &[TaskInfo], created_ms: u64) -> Vec<Duration> {
    tasks
        .iter()
        .filter_map(running_at)
        .map(|at| Duration::from_millis(at.saturating_sub(created_ms)))
        .collect()
}

pub async fn run(options: StartOptions) -> anyhow::Result<()> {
    if options.tasks == 0 || options.trials == 0 {
        bail!("--tasks and --trials must be at least 1");
    }
    let timeout = Duration::from_secs(options.timeout_s);
    let (cluster, workers, client) =
        start_fleet(options.workers, options.agent_bin.clone(), timeout).await?;
    println!("cluster: 1 manager, {} workers", options.workers);
    let count = usize::try_from(options.tasks)?;
    let mut all = Vec::new();
    let mut whole = Vec::new();
    for trial in 1..=options.trials {
        let name = format!("bench-start-{trial}");
        let spec = ServiceSpecView {
            driver: "process".into(),
            command: vec!["sleep".into(), "100000".into()],
            mode: "replicated".into(),
            replicas: Some(options.tasks),
            restart_condition: "any".into(),
            restart_delay_ms: 0,
            on_isolation: "keep".into(),
            stop_grace_ms: 1_000,
            ..ServiceSpecView::default()
        };
        let created_ms = now_ms();
        client.service_create(&name, spec).await?;
        let tasks = poll_until(timeout, "every task running", async || {
            let tasks = client
                .service_ps(&name, ReadConsistency::Stale)
                .await
                .map_err(|e| e.to_string())?;
            let running = tasks.iter().filter(|task| task.state == "running").count();
            if running == count {
                Ok(tasks)
            } else {
                Err(format!("{running} of {count} running"))
            }
        })
        .await?;
        let times = start_times(&tasks, created_ms);
        let slowest = times.iter().max().copied().unwrap_or_default();
        println!(
            "trial {trial}: every task running {:.0} ms after service create",
            millis(slowest)
        );
        whole.push(slowest);
        all.extend(times);
        client.service_remove(&name).await?;
        poll_until(timeout, "the trial's tasks gone", async || {
            let listed = client
                .service_list(ReadConsistency::Stale)
                .await
                .map_err(|e| e.to_string())?;
            if listed.iter().any(|service| service.name == name) {
                return Err("still listed".to_string());
            }
            Ok(())
        })
        .await?;
    }
    let latencies = Latencies::new(all);
    let p50 = latencies.median().unwrap_or_default();
    let p99 = latencies.percentile(99.0).unwrap_or_default();
    let max = latencies.max().unwrap_or_default();
    println!(
        "{} tasks on {} workers, {} trials: create to running p50 {:.0} ms, p99 {:.0} ms, slowest {:.0} ms",
        count,
        options.workers,
        options.trials,
        millis(p50),
        millis(p99),
        millis(max)
    );
    drop(workers);
    drop(cluster);
    println!(
        "{}",
        json!({
            "bench": "start",
            "workers": options.workers,
            "tasks": count,
            "trials": options.trials,
            "p50_ms": round2(millis(p50)),
            "p99_ms": round2(millis(p99)),
            "max_ms": round2(millis(max)),
            "all_running_ms": whole.iter().map(|d| round2(millis(*d))).collect::<Vec<_>>(),
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_s_start_time_runs_from_the_create_call_to_its_running_transition() {
        let task = |transitions: Vec<(&str, u64)>| TaskInfo {
            task_id: 1,
            service: "s".into(),
            slot: Some(0),
            node_id: Some(2),
            hostname: None,
            desired: "running".into(),
            state: "running".into(),
            since_ms: 0,
            exit_code: None,
            error: None,
            pending_reason: None,
            attempt: 0,
            created_at_ms: 0,
            template_version: 1,
            transitions: transitions
                .into_iter()
                .map(|(state, at)| (state.to_string(), at))
                .collect(),
            health: None,
        };
        let tasks = [
            task(vec![("new", 1_010), ("running", 1_250)]),
            task(vec![("new", 1_010)]),
        ];
        assert_eq!(start_times(&tasks, 1_000), [Duration::from_millis(250)]);
    }
}
