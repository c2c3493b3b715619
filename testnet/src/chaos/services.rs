//! Services under chaos: two services run through the whole run, and at the end each must be
//! back at its count, and no slot of the `--on-isolation stop` one may ever have run twice at
//! once.
//!
//! - `chaos-keep`: 3 replicas of `sleep`, `--on-isolation keep` (availability first: copies
//!   may overlap while a node is cut off or dead, which is allowed);
//! - `chaos-stop`: 2 replicas, `--on-isolation stop`. Each task holds an exclusive lock on its
//!   slot's file for as long as it runs (`flock -n`); a task that finds its slot's lock taken
//!   leaves a line in `ran-twice` and exits. Every node is a process on this machine, so one
//!   lock file per slot sees every copy in the cluster. A line there is a violation.
//!
//! The docker backend's image holds only the agent (no shell, no flock): services are checked
//! on the local backend only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use symphony_ctl::proto::{ReadConsistency, ServiceSpecView};
use tokio::sync::watch;

use super::tasks::pause;
use crate::lab::rpc::call;
use crate::lab::{BackendKind, Lab};

/// The services and their replica counts.
pub const SERVICES: [(&str, u32); 2] = [("chaos-keep", 3), ("chaos-stop", 2)];
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the end of the run found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServicesReport {
    /// Whether services ran in this run (the local backend).
    pub checked: bool,
    /// Each service: running tasks of the wanted count at the end.
    pub counts: Vec<(String, usize, u32)>,
    /// Lines of `ran-twice`: slots of `chaos-stop` that ran twice at once.
    pub ran_twice: Vec<String>,
    /// Why services could not be created or read.
    pub problems: Vec<String>,
}

impl ServicesReport {
    pub fn ok(&self) -> bool {
        !self.checked
            || (self.problems.is_empty()
                && self.ran_twice.is_empty()
                && self
                    .counts
                    .iter()
                    .all(|(_, running, wanted)| *running == *wanted as usize))
    }

    /// The summary line.
    pub fn line(&self) -> String {
        if !self.checked {
            return "services: not run on this backend".to_string();
        }
        let counts = self
            .counts
            .iter()
            .map(|(name, running, wanted)| format!("{name} {running}/{wanted}"))
            .collect::<Vec<_>>()
            .join(", ");
        let twice = if self.ran_twice.is_empty() {
            "no stop slot ran twice".to_string()
        } else {
            format!("{} slot(s) ran twice", self.ran_twice.len())
        };
        let mut line = format!(
            "services: {counts}; {twice}: {}",
            if self.ok() { "ok" } else { "VIOLATED" }
        );
        for problem in self.problems.iter().chain(&self.ran_twice) {
            line.push_str(&format!("\n  services: {problem}"));
        }
        line
    }
}

fn slots_dir(lab: &Lab) -> PathBuf {
    lab.dir().join("slots")
}

fn spec(replicas: u32, stop: Option<&Path>) -> ServiceSpecView {
    let command = match stop {
        None => vec!["sleep".to_string(), "3600".to_string()],
        Some(dir) => vec![
            "sh".to_string(),
            "-c".to_string(),
            format!(
                "exec flock -n {dir}/slot-$SYMPHONY_SLOT.lock sleep 3600 || echo \"slot $SYMPHONY_SLOT: task $SYMPHONY_TASK_ID started while another copy ran\" >> {dir}/ran-twice",
                dir = dir.display()
            ),
        ],
    };
    ServiceSpecView {
        driver: "process".into(),
        command,
        env: std::collections::BTreeMap::new(),
        workdir: None,
        mode: "replicated".into(),
        replicas: Some(replicas),
        constraints: Vec::new(),
        reserve_cpus_milli: 0,
        reserve_memory_bytes: 0,
        restart_condition: "any".into(),
        restart_delay_ms: 0,
        restart_max_attempts: None,
        restart_window_ms: None,
        on_isolation: if stop.is_some() { "stop" } else { "keep" }.into(),
        stop_grace_ms: 1_000,
        ..ServiceSpecView::default()
    }
}

/// Creates the services through the leader; `checked` is false where they cannot run.
pub async fn create(lab: &Lab) -> ServicesReport {
    let mut report = ServicesReport::default();
    if lab.state().backend != BackendKind::Local {
        return report;
    }
    report.checked = true;
    let dir = slots_dir(lab);
    if let Err(error) = std::fs::create_dir_all(&dir) {
        report
            .problems
            .push(format!("cannot create {}: {error}", dir.display()));
        return report;
    }
    let Some(socket) = leader_socket(lab).await else {
        report
            .problems
            .push("no leader to create the services".to_string());
        return report;
    };
    for (name, replicas) in SERVICES {
        let stop = (name == "chaos-stop").then_some(dir.as_path());
        let created = call(&socket, CALL_TIMEOUT, async |client| {
            client.service_create(name, spec(replicas, stop)).await
        })
        .await;
        if let Err(error) = created {
            report
                .problems
                .push(format!("cannot create {name}: {error}"));
        }
    }
    report
}

async fn leader_socket(lab: &Lab) -> Option<PathBuf> {
    let leader = lab.status().await.leader?;
    lab.node(&leader).ok().map(|node| node.socket_path())
}

/// After the recovery: waits (up to `timeout`) until every service has its count running, then
/// reads the marks.
pub async fn check(
    lab: &Lab,
    mut report: ServicesReport,
    timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> ServicesReport {
    if !report.checked || !report.problems.is_empty() {
        return report;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let counts = counts(lab).await;
        let done = counts.as_ref().is_ok_and(|counts| {
            counts
                .iter()
                .all(|(_, running, wanted)| *running == *wanted as usize)
        });
        if done || tokio::time::Instant::now() >= deadline {
            match counts {
                Ok(counts) => report.counts = counts,
                Err(problem) => report.problems.push(problem),
            }
            break;
        }
        if pause(stop, Duration::from_millis(250)).await {
            break;
        }
    }
    report.ran_twice = std::fs::read_to_string(slots_dir(lab).join("ran-twice"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    report
}

/// Each service's running tasks that should run, and its count.
async fn counts(lab: &Lab) -> Result<Vec<(String, usize, u32)>, String> {
    let socket = leader_socket(lab).await.ok_or("no leader")?;
    let mut counts = Vec::new();
    for (name, replicas) in SERVICES {
        let tasks = call(&socket, CALL_TIMEOUT, async |client| {
            client.service_ps(name, ReadConsistency::Linearizable).await
        })
        .await
        .map_err(|error| format!("cannot list the tasks of {name}: {error}"))?;
        let running = tasks
            .iter()
            .filter(|task| task.desired == "running" && task.state == "running")
            .count();
        counts.push((name.to_string(), running, replicas));
    }
    Ok(counts)
}
