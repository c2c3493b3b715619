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

use symphony_ctl::proto::{ReadConsistency, ServiceSpecView, TaskInfo};
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
    /// For each service short of its count at the end: its newest tasks in every slot, one
    /// line each (task, slot, node, desired and observed state, error), so that a failed run
    /// says where each missing task is and why it does not run.
    pub short: Vec<String>,
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
        if !self.ok() {
            for task in &self.short {
                line.push_str(&format!("\n  services: {task}"));
            }
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
                .all(|count| count.running == count.wanted as usize)
        });
        if done || tokio::time::Instant::now() >= deadline {
            match counts {
                Ok(counts) => {
                    let short: Vec<&Count> = counts
                        .iter()
                        .filter(|count| count.running != count.wanted as usize)
                        .collect();
                    if !short.is_empty() {
                        let nodes = node_names(lab).await;
                        report.short = short
                            .into_iter()
                            .flat_map(|count| {
                                slot_lines(&count.name, count.wanted, &count.tasks, &nodes)
                            })
                            .collect();
                    }
                    report.counts = counts
                        .into_iter()
                        .map(|count| (count.name, count.running, count.wanted))
                        .collect();
                }
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

/// One service as the leader lists it at the end.
struct Count {
    name: String,
    /// Tasks that should run and run.
    running: usize,
    wanted: u32,
    tasks: Vec<TaskInfo>,
}

/// Each service's running tasks that should run, its count, and its tasks.
async fn counts(lab: &Lab) -> Result<Vec<Count>, String> {
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
        counts.push(Count {
            name: name.to_string(),
            running,
            wanted: replicas,
            tasks,
        });
    }
    Ok(counts)
}

/// The lab's name of each node id, with the status the leader gives it (`manager-2, ready`).
async fn node_names(lab: &Lab) -> std::collections::BTreeMap<u64, String> {
    lab.status()
        .await
        .nodes
        .into_iter()
        .filter_map(|row| {
            let id = row.node_id?;
            let status = row.status.unwrap_or_else(|| "status unknown".to_string());
            Some((id, format!("{}, {status}", row.name)))
        })
        .collect()
}

/// The newest tasks kept per slot.
const TASKS_PER_SLOT: usize = 3;

/// `service`'s newest tasks in each slot (newest first, a few per slot), one line each: what a
/// service short of its count prints, so the run says which slot lacks a task and why.
fn slot_lines(
    service: &str,
    replicas: u32,
    tasks: &[TaskInfo],
    nodes: &std::collections::BTreeMap<u64, String>,
) -> Vec<String> {
    let mut by_slot: std::collections::BTreeMap<Option<u32>, Vec<&TaskInfo>> =
        std::collections::BTreeMap::new();
    // Every slot of the count, even one without any task.
    for slot in 0..replicas {
        by_slot.insert(Some(slot), Vec::new());
    }
    for task in tasks {
        by_slot.entry(task.slot).or_default().push(task);
    }
    let mut lines = Vec::new();
    for (slot, mut tasks) in by_slot {
        tasks.sort_by_key(|task| std::cmp::Reverse(task.task_id));
        let slot = slot.map_or_else(|| "-".to_string(), |slot| slot.to_string());
        if tasks.is_empty() {
            lines.push(format!("{service} slot {slot}: no task"));
        }
        for task in tasks.into_iter().take(TASKS_PER_SLOT) {
            lines.push(task_line(service, &slot, task, nodes));
        }
    }
    if lines.is_empty() {
        lines.push(format!("{service}: no task at all"));
    }
    lines
}

fn task_line(
    service: &str,
    slot: &str,
    task: &TaskInfo,
    nodes: &std::collections::BTreeMap<u64, String>,
) -> String {
    let node = match (task.node_id, task.node_id.and_then(|id| nodes.get(&id))) {
        (Some(id), Some(name)) => format!("node {id} ({name})"),
        (Some(id), None) => format!("node {id}"),
        (None, _) => "no node".to_string(),
    };
    // Each state reached, in ms after the task's creation (on the proposers' clocks).
    let transitions = task
        .transitions
        .iter()
        .map(|(state, at_ms)| {
            let after = i128::from(*at_ms) - i128::from(task.created_at_ms);
            format!("{state}@{after}ms")
        })
        .collect::<Vec<_>>()
        .join(" ");
    let mut line = format!(
        "{service} slot {slot}: task {} attempt {} on {node}, desired {}, state {}",
        task.task_id, task.attempt, task.desired, task.state
    );
    if let Some(code) = task.exit_code {
        line.push_str(&format!(", exit code {code}"));
    }
    if let Some(error) = &task.error {
        line.push_str(&format!(", error: {error}"));
    }
    if let Some(reason) = &task.pending_reason {
        line.push_str(&format!(", pending: {reason}"));
    }
    if !transitions.is_empty() {
        line.push_str(&format!(" [{transitions}]"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(task_id: u64, slot: u32, state: &str, error: Option<&str>) -> TaskInfo {
        TaskInfo {
            task_id,
            service: "chaos-stop".into(),
            slot: Some(slot),
            node_id: Some(7),
            hostname: Some("vm".into()),
            desired: "running".into(),
            state: state.into(),
            since_ms: 1_500,
            exit_code: None,
            error: error.map(str::to_string),
            pending_reason: None,
            attempt: 1,
            created_at_ms: 1_000,
            template_version: 1,
            transitions: vec![("accepted".into(), 1_200)],
            health: None,
        }
    }

    #[test]
    fn a_short_service_names_each_slot_s_newest_tasks() {
        let tasks = vec![
            task(3, 1, "accepted", None),
            task(1, 0, "running", None),
            task(
                2,
                1,
                "shutdown",
                Some("no manager was reachable for the isolation lease"),
            ),
            task(0, 1, "failed", None),
            task(4, 1, "rejected", None),
        ];
        let nodes = std::collections::BTreeMap::from([(7, "manager-2, ready".to_string())]);
        let lines = slot_lines("chaos-stop", 2, &tasks, &nodes);
        assert_eq!(lines.len(), 1 + TASKS_PER_SLOT, "{lines:#?}");
        assert_eq!(
            lines[0],
            "chaos-stop slot 0: task 1 attempt 1 on node 7 (manager-2, ready), desired running, state running [accepted@200ms]"
        );
        // Newest first, and the oldest beyond the few is left out.
        assert!(
            lines[1].starts_with("chaos-stop slot 1: task 4 "),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("chaos-stop slot 1: task 3 "),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains("task 2 ")
                && lines[3].contains("error: no manager was reachable for the isolation lease"),
            "{}",
            lines[3]
        );
        assert_eq!(
            slot_lines("chaos-stop", 0, &[], &nodes),
            ["chaos-stop: no task at all"]
        );
        // A node the lab does not know is named by its id alone.
        // A node the lab does not know is named by its id alone; an empty slot says so.
        let unknown = slot_lines("chaos-stop", 2, &tasks[1..2], &Default::default());
        assert!(unknown[0].contains("on node 7, desired"), "{unknown:?}");
        assert_eq!(unknown[1], "chaos-stop slot 1: no task");
    }

    #[test]
    fn the_violation_line_carries_the_short_service_s_tasks() {
        let report = ServicesReport {
            checked: true,
            counts: vec![("chaos-stop".into(), 1, 2)],
            short: slot_lines(
                "chaos-stop",
                2,
                &[task(5, 1, "accepted", None)],
                &Default::default(),
            ),
            ..ServicesReport::default()
        };
        let line = report.line();
        assert!(line.contains("VIOLATED"), "{line}");
        assert!(
            line.contains("\n  services: chaos-stop slot 1: task 5 attempt 1 on node 7, desired running, state accepted"),
            "{line}"
        );
    }
}
