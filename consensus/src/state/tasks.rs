//! The `tasks` table: every task of every service, by id.
//!
//! A task is one run of a service's [`TaskSpec`] in one slot (replicated) or on one node
//! (global). Its id never changes meaning: a restart is a new task in the same slot. Who moves a
//! task is fixed: the orchestrator creates tasks and sets their desired state, the scheduler
//! moves new and pending tasks to `assigned`, and the worker a task is assigned to owns every
//! state after that, reporting it through the dispatcher. Observed states are ordered and only
//! move forward; a change that would go backwards (a late or repeated report) is ignored.
//!
//! Besides its rows the table keeps indexes by service and by node, rebuilt on load, and a
//! change counter per node, so a manager streaming a worker's assignments looks only at that
//! worker's tasks, and only when they changed.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use serde::{Deserialize, Serialize};

use super::CommandResult;
use super::nodes::NodeTable;
use super::services::TaskSpec;
use super::table::{Changes, Table, key_u64, u64_key};
use crate::codec::{decode, encode};

/// A task's observed state, in the only order it may move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Created by the orchestrator.
    New,
    /// The scheduler found no node for it yet (its `pending_reason` says why).
    Pending,
    /// Placed on a node; the worker has not taken it yet.
    Assigned,
    /// The worker took it.
    Accepted,
    /// The worker is starting it.
    Starting,
    Running,
    /// Ended by itself with exit code 0.
    Complete,
    /// Stopped because it was asked to.
    Shutdown,
    /// Ended by itself with a failure, or could not be started.
    Failed,
    /// The worker refused it (it cannot run it at all).
    Rejected,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
        }
    }

    /// Whether the task has ended: nothing runs for it any more.
    pub fn is_terminal(self) -> bool {
        self >= TaskState::Complete
    }

    /// Whether the task's worker has taken it (or it ended).
    pub fn is_started(self) -> bool {
        self >= TaskState::Accepted
    }
}

/// What the orchestrator wants of a task; moves forward only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    Running,
    Shutdown,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Shutdown => "shutdown",
        }
    }
}

/// What a task's health check last said (tasks without one have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// No verdict yet (the start period, or no check has finished).
    Starting,
    Healthy,
    /// Failed its retries: the worker stops the task, which then fails.
    Unhealthy,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// One observed transition, stamped by the proposer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub state: TaskState,
    pub at_ms: u64,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: u64,
    pub service: String,
    /// The slot of a replicated service's task.
    pub slot: Option<u32>,
    /// The node it is placed on (a global task's from the start).
    pub node_id: Option<u64>,
    /// The service's template version the task was made from.
    pub template_version: u64,
    pub spec: TaskSpec,
    pub desired: DesiredState,
    pub state: TaskState,
    /// Every state it reached, in order, with when.
    pub transitions: Vec<Transition>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// While pending: why no node takes it.
    pub pending_reason: Option<String>,
    /// How many times the slot was restarted before this task (after failures or exits).
    pub attempt: u32,
    pub created_at_ms: u64,
    /// What its health check last said, while it runs.
    #[serde(default)]
    pub health: Option<Health>,
}

impl TaskRecord {
    /// What of the task its node's assignments show, besides what never changes for a task id
    /// (its service, slot and spec): its desired state, and whether the node acts on it
    /// (placed, `assigned` or later, and not ended; the dispatcher's filter).
    fn as_its_node_sees_it(&self) -> (DesiredState, bool) {
        (
            self.desired,
            self.state >= TaskState::Assigned && !self.state.is_terminal(),
        )
    }

    /// When the task reached its current state.
    pub fn since_ms(&self) -> u64 {
        self.transitions
            .last()
            .map_or(self.created_at_ms, |transition| transition.at_ms)
    }
}

/// A task the orchestrator asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    pub service: String,
    pub slot: Option<u32>,
    pub node_id: Option<u64>,
    pub template_version: u64,
    pub spec: TaskSpec,
    pub attempt: u32,
}

/// What a worker says happened to one of its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    pub task_id: u64,
    pub state: TaskState,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// What its health check says now (a report may carry only that, in the same state).
    #[serde(default)]
    pub health: Option<Health>,
}

/// Changes to the tasks table; each carries many tasks, so one log entry carries a whole
/// decision of the orchestrator, the scheduler or the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskCommand {
    /// The orchestrator's new tasks; ids come from the table's counter. A task of a service
    /// that no longer exists is skipped.
    Create { tasks: Vec<NewTask>, at_ms: u64 },
    /// The orchestrator's desired states (only ever `running` to `shutdown`).
    SetDesired { changes: Vec<(u64, DesiredState)> },
    /// The scheduler's decision: placements, and why the rest wait.
    Schedule {
        placements: Vec<(u64, u64)>,
        pending: Vec<(u64, String)>,
        at_ms: u64,
    },
    /// A worker's reports, passed on by a manager; only for tasks placed on that worker, and
    /// only forward from `assigned`.
    Report {
        node_id: u64,
        reports: Vec<TaskReport>,
        at_ms: u64,
    },
    /// Forgets tasks that have ended, that never started and are to shut down, or whose node
    /// is gone.
    Delete { ids: Vec<u64> },
}

/// What a task command changed, for its proposer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutcome {
    /// The ids of the tasks created, or of those the command changed.
    pub changed: Vec<u64>,
    /// How many items were ignored (stale, backwards, not the reporter's).
    pub ignored: usize,
}

/// The name of this table (its rows on disk, its change watch).
pub const TABLE: &str = "sm_tasks";
/// The row holding the next task id.
const NEXT_ID: &[u8] = b"next_id";

/// The tasks table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "TaskRows", into = "TaskRows")]
pub struct TaskTable {
    tasks: BTreeMap<u64, TaskRecord>,
    next_id: u64,
    by_service: BTreeMap<String, BTreeSet<u64>>,
    by_node: BTreeMap<u64, BTreeSet<u64>>,
    /// Bumped whenever what the node is assigned changes (see [`TaskTable::node_changes`];
    /// not persisted: a manager's own counter for its assignment streams).
    node_changes: BTreeMap<u64, u64>,
    /// The nodes whose counter moved since [`TaskTable::take_touched_nodes`] was last called
    /// (not persisted: the state machine takes them after each apply to wake only those
    /// nodes' streams).
    touched_nodes: BTreeSet<u64>,
}

/// What the table is, without its indexes (how it is snapshotted).
#[derive(Clone, Serialize, Deserialize)]
struct TaskRows {
    tasks: BTreeMap<u64, TaskRecord>,
    next_id: u64,
}

impl From<TaskRows> for TaskTable {
    fn from(rows: TaskRows) -> TaskTable {
        let mut table = TaskTable {
            next_id: rows.next_id,
            ..TaskTable::default()
        };
        for (_, task) in rows.tasks {
            table.insert(task);
        }
        table
    }
}

impl From<TaskTable> for TaskRows {
    fn from(table: TaskTable) -> TaskRows {
        TaskRows {
            tasks: table.tasks,
            next_id: table.next_id,
        }
    }
}

impl PartialEq for TaskTable {
    fn eq(&self, other: &Self) -> bool {
        self.tasks == other.tasks && self.next_id == other.next_id
    }
}

impl Eq for TaskTable {}

impl std::ops::Deref for TaskTable {
    type Target = BTreeMap<u64, TaskRecord>;
    fn deref(&self) -> &BTreeMap<u64, TaskRecord> {
        &self.tasks
    }
}

impl TaskTable {
    /// The tasks of `service`, by id.
    pub fn of_service<'a>(&'a self, service: &str) -> impl Iterator<Item = &'a TaskRecord> {
        self.by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id))
    }

    /// The tasks placed on `node_id`, by id.
    pub fn on_node(&self, node_id: u64) -> impl Iterator<Item = &TaskRecord> {
        self.by_node
            .get(&node_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.tasks.get(id))
    }

    /// A counter that changes whenever what `node_id` is assigned changes: a task placed on
    /// it or taken off it, its desired state, or its passing into or out of what the node
    /// acts on (assigned and not ended). Not with every report.
    pub fn node_changes(&self, node_id: u64) -> u64 {
        self.node_changes.get(&node_id).copied().unwrap_or(0)
    }

    /// The nodes whose [`TaskTable::node_changes`] moved since the last call.
    pub fn take_touched_nodes(&mut self) -> BTreeSet<u64> {
        std::mem::take(&mut self.touched_nodes)
    }

    fn node_changed(&mut self, node: u64) {
        *self.node_changes.entry(node).or_default() += 1;
        self.touched_nodes.insert(node);
    }

    fn insert(&mut self, task: TaskRecord) {
        self.by_service
            .entry(task.service.clone())
            .or_default()
            .insert(task.id);
        if let Some(node) = task.node_id {
            self.by_node.entry(node).or_default().insert(task.id);
            self.node_changed(node);
        }
        self.tasks.insert(task.id, task);
    }

    fn remove(&mut self, id: u64) -> Option<TaskRecord> {
        let task = self.tasks.remove(&id)?;
        if let Some(ids) = self.by_service.get_mut(&task.service) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_service.remove(&task.service);
            }
        }
        if let Some(node) = task.node_id {
            if let Some(ids) = self.by_node.get_mut(&node) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_node.remove(&node);
                }
            }
            self.node_changed(node);
        }
        Some(task)
    }

    /// Changes one task in place, keeping the indexes and change counters right; `change`
    /// says whether it changed anything (the service never changes).
    fn update(&mut self, id: u64, change: impl FnOnce(&mut TaskRecord) -> bool) -> bool {
        let Some(task) = self.tasks.get_mut(&id) else {
            return false;
        };
        let before = task.node_id;
        let seen_before = task.as_its_node_sees_it();
        if !change(task) {
            return false;
        }
        let after = task.node_id;
        let seen_after = task.as_its_node_sees_it();
        if before != after {
            if let Some(node) = before
                && let Some(ids) = self.by_node.get_mut(&node)
            {
                ids.remove(&id);
                if ids.is_empty() {
                    self.by_node.remove(&node);
                }
            }
            if let Some(node) = after {
                self.by_node.entry(node).or_default().insert(id);
            }
        }
        // A report that moves a task along while it stays assigned (accepted, running)
        // changes nothing its node is assigned: its streams need not look again. At a
        // thousand nodes of a hundred tasks each, looking again on every report was most of
        // what a manager did while tasks started.
        if before != after || seen_before != seen_after {
            for node in [before, after].into_iter().flatten() {
                self.node_changed(node);
            }
        }
        true
    }

    /// Every task of `service` is to shut down (the service was removed).
    pub(super) fn shut_down_service(&mut self, service: &str, changes: &mut Changes) {
        let ids: Vec<u64> = self
            .of_service(service)
            .filter(|task| task.desired < DesiredState::Shutdown)
            .map(|task| task.id)
            .collect();
        for id in ids {
            self.update(id, |task| {
                task.desired = DesiredState::Shutdown;
                true
            });
            changes.touch(TABLE, u64_key(id));
        }
    }

    pub(super) fn apply(
        &mut self,
        command: &TaskCommand,
        services: &super::services::ServiceTable,
        nodes: &NodeTable,
        changes: &mut Changes,
    ) -> CommandResult {
        let mut outcome = TaskOutcome::default();
        match command {
            TaskCommand::Create { tasks, at_ms } => {
                for new in tasks {
                    if !services.contains_key(&new.service) {
                        outcome.ignored += 1;
                        continue;
                    }
                    self.next_id += 1;
                    let id = self.next_id;
                    self.insert(TaskRecord {
                        id,
                        service: new.service.clone(),
                        slot: new.slot,
                        node_id: new.node_id,
                        template_version: new.template_version,
                        spec: new.spec.clone(),
                        desired: DesiredState::Running,
                        state: TaskState::New,
                        transitions: vec![Transition {
                            state: TaskState::New,
                            at_ms: *at_ms,
                        }],
                        exit_code: None,
                        error: None,
                        pending_reason: None,
                        attempt: new.attempt,
                        created_at_ms: *at_ms,
                        health: None,
                    });
                    changes.touch(TABLE, u64_key(id));
                    outcome.changed.push(id);
                }
                if !outcome.changed.is_empty() {
                    changes.touch(TABLE, NEXT_ID.to_vec());
                }
            }
            TaskCommand::SetDesired { changes: wanted } => {
                for (id, desired) in wanted {
                    let moved = self.update(*id, |task| {
                        if *desired > task.desired {
                            task.desired = *desired;
                            true
                        } else {
                            false
                        }
                    });
                    self.count(*id, moved, &mut outcome, changes);
                }
            }
            TaskCommand::Schedule {
                placements,
                pending,
                at_ms,
            } => {
                for (id, node) in placements {
                    let placed = self.update(*id, |task| {
                        let open = task.state < TaskState::Assigned
                            && task.desired == DesiredState::Running
                            && task.node_id.is_none_or(|fixed| fixed == *node);
                        if open {
                            task.node_id = Some(*node);
                            task.pending_reason = None;
                            advance(task, TaskState::Assigned, *at_ms);
                        }
                        open
                    });
                    self.count(*id, placed, &mut outcome, changes);
                }
                for (id, reason) in pending {
                    let waits = self.update(*id, |task| {
                        if task.state > TaskState::Pending
                            || task.pending_reason.as_deref() == Some(reason)
                        {
                            return false;
                        }
                        task.pending_reason = Some(reason.clone());
                        if task.state < TaskState::Pending {
                            advance(task, TaskState::Pending, *at_ms);
                        }
                        true
                    });
                    self.count(*id, waits, &mut outcome, changes);
                }
            }
            TaskCommand::Report {
                node_id,
                reports,
                at_ms,
            } => {
                for report in reports {
                    let moved = self.update(report.task_id, |task| {
                        let theirs = task.node_id == Some(*node_id);
                        if !theirs || !report.state.is_started() {
                            return false;
                        }
                        // A new verdict of the health check of a task still running.
                        if report.state == task.state {
                            let fresh = report.health.is_some()
                                && report.health != task.health
                                && !task.state.is_terminal();
                            if fresh {
                                task.health = report.health;
                            }
                            return fresh;
                        }
                        // Workers own the states after `assigned`, and only forward.
                        if report.state < task.state {
                            return false;
                        }
                        advance(task, report.state, *at_ms);
                        if report.health.is_some() {
                            task.health = report.health;
                        }
                        if report.exit_code.is_some() {
                            task.exit_code = report.exit_code;
                        }
                        if report.error.is_some() {
                            task.error.clone_from(&report.error);
                        }
                        true
                    });
                    self.count(report.task_id, moved, &mut outcome, changes);
                }
            }
            TaskCommand::Delete { ids } => {
                for id in ids {
                    let deletable = self.tasks.get(id).is_some_and(|task| {
                        task.state.is_terminal()
                            || (task.desired == DesiredState::Shutdown && !task.state.is_started())
                            || task.node_id.is_some_and(|node| !nodes.contains_key(&node))
                    });
                    if deletable {
                        self.remove(*id);
                        changes.touch(TABLE, u64_key(*id));
                        outcome.changed.push(*id);
                    } else {
                        outcome.ignored += 1;
                    }
                }
            }
        }
        CommandResult::Tasks(outcome)
    }

    fn count(&self, id: u64, changed: bool, outcome: &mut TaskOutcome, changes: &mut Changes) {
        if changed {
            changes.touch(TABLE, u64_key(id));
            outcome.changed.push(id);
        } else {
            outcome.ignored += 1;
        }
    }
}

/// Moves `task` to `state` and records when.
fn advance(task: &mut TaskRecord, state: TaskState, at_ms: u64) {
    task.state = state;
    task.transitions.push(Transition { state, at_ms });
}

impl Table for TaskTable {
    fn name(&self) -> &'static str {
        TABLE
    }

    fn row_keys(&self) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self.tasks.keys().map(|id| u64_key(*id)).collect();
        keys.push(NEXT_ID.to_vec());
        keys
    }

    fn encode_row(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        if key == NEXT_ID {
            return encode(&self.next_id).map(Some);
        }
        self.tasks.get(&key_u64(key)?).map(encode).transpose()
    }

    fn load_row(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        if key == NEXT_ID {
            self.next_id = decode(value)?;
        } else {
            self.insert(decode(value)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
