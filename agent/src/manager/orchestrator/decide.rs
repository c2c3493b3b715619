//! The orchestrator's decision: a pure function of the cluster state and of what this leader
//! has observed (for how long nodes have been down and tasks have been ended), level-triggered
//! like the liveness reconciler, so a lost or reordered event cannot leave anything undone.
//!
//! For each service it looks at every slot (a replicated service's `0..replicas`, a global
//! service's nodes) and the tasks in it, newest last; the newest task the orchestrator still
//! wants running is the slot's *current* task:
//! - an empty slot gets a task (scaling up, a new node for a global service);
//! - a current task that ended is replaced after the restart delay if the restart policy
//!   allows (a task its worker stopped on isolation is always replaced);
//! - a current task on a node that left or was removed is replaced at once; on a node that is
//!   down, once this leader has seen it down for the node-loss grace (for `--on-isolation
//!   stop` services: for the isolation lease and a margin, by when the worker has stopped it);
//! - a current task on a draining node gets a replacement first and is stopped once the
//!   replacement is ready (running, and healthy if it has a health check);
//! - while a service's update or rollback is under way, [`rollout`](super::rollout) picks the
//!   slots whose tasks move to the new template now (stop-first: the old task stops and the
//!   new one is created once it has; start-first: the new one first), and moves the update's
//!   state on (completed, paused, rolled back);
//! - a rebalance (`service rebalance`, or by itself for `--rebalance auto` once every slot
//!   runs and the spread is uneven) is such an update at the same template, start-first,
//!   moving the slots [`balance`](super::balance) picks;
//! - slots beyond the count are stopped (scaling down removes the highest slots);
//! - of the tasks that ended, the newest few per slot are kept for `service ps` and the rest
//!   forgotten; a removed service's tasks are forgotten once they have stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use symphony_consensus::{
    Availability, ClusterState, DesiredState, NewTask, NodeStatus, OnIsolation, RebalanceMode,
    ServiceCommand, ServiceMode, ServiceRecord, TaskRecord, TaskState, UpdateKind, UpdateOrder,
    UpdateState,
};

use super::balance;
use super::rollout::{self, Slot, is_ready};
use crate::manager::scheduler::filters::meets;

/// The orchestrator's knobs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a node must be down before its tasks are replaced elsewhere.
    pub node_loss_grace: Duration,
    /// How long a worker cut off from every manager keeps running `--on-isolation stop` tasks.
    pub isolation_lease: Duration,
    /// Ended tasks kept per slot.
    pub keep_ended: usize,
    /// The most tasks one decision creates (the rest come in the next).
    pub max_creates: usize,
}

/// Added to the isolation lease before a down worker's `stop` tasks are replaced: covers the
/// moment a manager that has not applied the `down` yet still answers the worker's session.
pub const ISOLATION_MARGIN: Duration = Duration::from_secs(2);

/// What this leader has seen, and when.
#[derive(Debug, Default, Clone)]
pub struct Observations {
    /// For each node whose record says `down`: how long this leader has seen it so.
    pub down_for: BTreeMap<u64, Duration>,
    /// For each task that has ended: how long this leader has seen it ended.
    pub ended_for: BTreeMap<u64, Duration>,
    /// For each task that is ready (running, and healthy if it has a health check): how long
    /// this leader has seen it so (an update's monitor period).
    pub ready_for: BTreeMap<u64, Duration>,
    /// The proposer's wall clock, for restart windows (counted from tasks' creation times).
    pub now_ms: u64,
}

/// What the orchestrator proposes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Decision {
    pub create: Vec<NewTask>,
    pub shutdown: Vec<u64>,
    pub delete: Vec<u64>,
    /// Updates moved on: completed, paused, rolled back.
    pub services: Vec<ServiceCommand>,
    /// Decide again this soon even if nothing changes (an update's monitor period ends).
    pub recheck_in: Option<Duration>,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.shutdown.is_empty()
            && self.delete.is_empty()
            && self.services.is_empty()
    }
}

/// Where a slot's task runs, as the orchestrator judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Fine,
    /// Left the cluster or was removed: replace now.
    Gone,
    /// Down for longer than the service tolerates: replace.
    Lost,
    /// Draining: replace first, then stop.
    Draining,
}

pub fn decide(state: &ClusterState, observed: &Observations, settings: &Settings) -> Decision {
    let mut planner = Planner {
        state,
        observed,
        settings,
        decision: Decision::default(),
    };
    for service in state.services.values() {
        match service.spec.mode {
            ServiceMode::Replicated { replicas } => planner.replicated(service, replicas),
            ServiceMode::Global => planner.global(service),
        }
    }
    // A removed service's tasks: forgotten once they are done.
    let removed: Vec<u64> = state
        .tasks
        .values()
        .filter(|task| !state.services.contains_key(&task.service))
        .filter(|task| planner.deletable(task))
        .map(|task| task.id)
        .collect();
    planner.decision.delete.extend(removed);
    planner.decision
}

struct Planner<'a> {
    state: &'a ClusterState,
    observed: &'a Observations,
    settings: &'a Settings,
    decision: Decision,
}

impl<'a> Planner<'a> {
    fn replicated(&mut self, service: &ServiceRecord, replicas: u32) {
        let mut slots: BTreeMap<u32, Vec<&'a TaskRecord>> = BTreeMap::new();
        let all: Vec<&'a TaskRecord> = self.state.tasks.of_service(&service.name).collect();
        for task in &all {
            match task.slot {
                Some(slot) => slots.entry(slot).or_default().push(task),
                None => self.stop_if_wanted(task),
            }
        }
        let views: Vec<Slot<'a>> = (0..replicas)
            .map(|slot| self.slot_view(slots.get(&slot).map_or(&[][..], Vec::as_slice)))
            .collect();
        let movers = self.rebalance(service, &views);
        let rolled = self.rollout(service, &views, &all, &movers);
        for slot in 0..replicas {
            let tasks = slots.remove(&slot).unwrap_or_default();
            let roll = rolled(usize::try_from(slot).unwrap_or(usize::MAX));
            self.slot(service, Some(slot), None, &tasks, roll);
            self.reap(&tasks);
        }
        // Scaled down: the slots beyond the count stop.
        for tasks in slots.values() {
            for task in tasks {
                self.stop_if_wanted(task);
            }
            self.reap(tasks);
        }
    }

    /// A slot's newest live task, and whether it stays where it runs.
    fn slot_view(&self, tasks: &[&'a TaskRecord]) -> Slot<'a> {
        let current = tasks
            .iter()
            .copied()
            .rfind(|task| task.desired == DesiredState::Running);
        Slot {
            current,
            settled: current.is_some_and(|task| self.judge(task) == Where::Fine),
        }
    }

    /// The slots a rebalance under way moves now; with `--rebalance auto` and no update of any
    /// kind under way or paused, a rebalance is started (next time round) when every slot runs
    /// and some would move.
    fn rebalance(&mut self, service: &ServiceRecord, views: &[Slot<'_>]) -> BTreeSet<usize> {
        let update = service
            .update
            .as_ref()
            .filter(|update| update.template_version == service.template_version);
        match update {
            Some(update)
                if update.kind == UpdateKind::Rebalance
                    && update.state == UpdateState::Updating =>
            {
                balance::of_service(self.state, service, views, Some(update.started_at_ms))
            }
            Some(update) if update.state != UpdateState::Completed => BTreeSet::new(),
            _ if service.spec.rebalance == RebalanceMode::Auto => {
                let all_run = views.iter().all(|view| {
                    view.settled
                        && view
                            .current
                            .is_some_and(|task| task.state == TaskState::Running)
                });
                if all_run && !balance::of_service(self.state, service, views, None).is_empty() {
                    self.decision.services.push(ServiceCommand::Rebalance {
                        name: service.name.clone(),
                        at_ms: self.observed.now_ms,
                    });
                }
                BTreeSet::new()
            }
            _ => BTreeSet::new(),
        }
    }

    /// Runs the service's update, if any: records its state change and says, for each slot
    /// index, how the slot's task is replaced now (if it is).
    fn rollout(
        &mut self,
        service: &ServiceRecord,
        slots: &[Slot<'_>],
        all: &[&TaskRecord],
        movers: &BTreeSet<usize>,
    ) -> impl Fn(usize) -> Option<UpdateOrder> + use<> {
        let plan = rollout::plan(
            service,
            slots,
            all,
            movers,
            &self.observed.ready_for,
            self.observed.now_ms,
        );
        self.decision.services.extend(plan.command);
        if let Some(wait) = plan.recheck_in {
            let soonest = self.decision.recheck_in.map_or(wait, |at| at.min(wait));
            self.decision.recheck_in = Some(soonest);
        }
        let replace: std::collections::BTreeSet<usize> = plan.replace.into_iter().collect();
        let order = plan.order;
        move |index| order.filter(|_| replace.contains(&index))
    }

    /// One slot: a replicated service's `slot`, or a global service's `node`. `roll` says the
    /// current task is replaced by one of the new template now, and how.
    fn slot(
        &mut self,
        service: &ServiceRecord,
        slot: Option<u32>,
        node: Option<u64>,
        tasks: &[&TaskRecord],
        roll: Option<UpdateOrder>,
    ) {
        let live: Vec<&TaskRecord> = tasks
            .iter()
            .copied()
            .filter(|task| task.desired == DesiredState::Running)
            .collect();
        let Some((current, older)) = live.split_last() else {
            if !self.old_template_stopping(service, tasks) {
                // A task of the template it ran before counts its attempts on; a new
                // template starts afresh.
                let attempt = tasks
                    .last()
                    .filter(|task| task.template_version == service.template_version)
                    .map_or(0, |task| task.attempt);
                self.create(service, slot, node, attempt);
            }
            return;
        };
        for task in older {
            // Replaced tasks (drained, start-first updates) stop once their replacement is
            // ready; dead or lost ones at once.
            if is_ready(current)
                || task.state.is_terminal()
                || matches!(self.judge(task), Where::Gone | Where::Lost)
            {
                self.decision.shutdown.push(task.id);
            }
        }
        if current.state.is_terminal() {
            self.restart(service, current, slot, node);
            return;
        }
        // A global task belongs to its node: only a replicated one moves elsewhere.
        let judged = match node {
            Some(_) => Where::Fine,
            None => self.judge(current),
        };
        match judged {
            Where::Fine => match roll {
                None => {}
                // The new task comes once the old one has stopped (above, next time).
                Some(UpdateOrder::StopFirst) => self.decision.shutdown.push(current.id),
                Some(UpdateOrder::StartFirst) => {
                    self.create(service, slot, node, 0);
                }
            },
            Where::Gone | Where::Lost => {
                self.create(service, slot, node, current.attempt);
                self.decision.shutdown.push(current.id);
            }
            Where::Draining => {
                // `current` is the newest: no replacement yet.
                self.create(service, slot, node, current.attempt);
            }
        }
    }

    /// Whether a task of an earlier template is still stopping in the slot, where it may yet
    /// run (a stop-first update waits for it; a lost node's tasks are not waited for).
    fn old_template_stopping(&self, service: &ServiceRecord, tasks: &[&TaskRecord]) -> bool {
        tasks.iter().any(|task| {
            task.template_version < service.template_version
                && task.desired == DesiredState::Shutdown
                && task.state.is_started()
                && !task.state.is_terminal()
                && matches!(self.judge(task), Where::Fine | Where::Draining)
        })
    }

    fn global(&mut self, service: &ServiceRecord) {
        let mut by_node: BTreeMap<u64, Vec<&'a TaskRecord>> = BTreeMap::new();
        let all: Vec<&'a TaskRecord> = self.state.tasks.of_service(&service.name).collect();
        for task in &all {
            match task.node_id {
                Some(node) => by_node.entry(node).or_default().push(task),
                None => self.stop_if_wanted(task),
            }
        }
        // The nodes that keep (or take) a task are the service's slots; an update moves
        // those that are up (a down node's task is updated when it is back).
        let mut slots: Vec<(u64, bool, Option<usize>)> = Vec::new();
        let mut views: Vec<Slot<'a>> = Vec::new();
        for node in self.state.nodes.values() {
            let keeps = node.status != NodeStatus::Left
                && node.availability != Availability::Drain
                && meets(node, &service.spec.constraints, service.spec.task.driver);
            let view = self.slot_view(by_node.get(&node.node_id).map_or(&[][..], Vec::as_slice));
            let index = (keeps && node.status == NodeStatus::Ready).then(|| {
                views.push(view);
                views.len() - 1
            });
            slots.push((node.node_id, keeps, index));
        }
        let rolled = self.rollout(service, &views, &all, &BTreeSet::new());
        for (node_id, keeps, index) in slots {
            let tasks = by_node.remove(&node_id).unwrap_or_default();
            if keeps {
                self.global_slot(service, node_id, &tasks, index.and_then(&rolled));
            } else {
                for task in &tasks {
                    self.stop_if_wanted(task);
                }
            }
            self.reap(&tasks);
        }
        // Tasks on nodes that are no longer in the cluster.
        for tasks in by_node.values() {
            for task in tasks {
                self.stop_if_wanted(task);
            }
            self.reap(tasks);
        }
    }

    /// A global service's task on one node that keeps it: created when the node takes new
    /// tasks, restarted, updated; a task on a down node stays (it is nowhere else to go).
    fn global_slot(
        &mut self,
        service: &ServiceRecord,
        node_id: u64,
        tasks: &[&TaskRecord],
        roll: Option<UpdateOrder>,
    ) {
        let Some(node) = self.state.nodes.get(&node_id) else {
            return;
        };
        let takes_new =
            node.status == NodeStatus::Ready && node.availability == Availability::Active;
        let has_live = tasks
            .iter()
            .any(|task| task.desired == DesiredState::Running);
        if has_live || takes_new {
            self.slot(service, None, Some(node_id), tasks, roll);
        }
    }

    /// Where `task` runs, and what that means for it.
    fn judge(&self, task: &TaskRecord) -> Where {
        let Some(node_id) = task.node_id else {
            return Where::Fine;
        };
        let Some(node) = self.state.nodes.get(&node_id) else {
            return Where::Gone;
        };
        match node.status {
            NodeStatus::Left => Where::Gone,
            NodeStatus::Down => {
                let down_for = self
                    .observed
                    .down_for
                    .get(&node_id)
                    .copied()
                    .unwrap_or_default();
                let tolerated = match task.spec.on_isolation {
                    OnIsolation::Keep => self.settings.node_loss_grace,
                    OnIsolation::Stop => self
                        .settings
                        .node_loss_grace
                        .max(self.settings.isolation_lease + ISOLATION_MARGIN),
                };
                if down_for >= tolerated {
                    Where::Lost
                } else {
                    Where::Fine
                }
            }
            NodeStatus::Ready if node.availability == Availability::Drain => Where::Draining,
            NodeStatus::Ready => Where::Fine,
        }
    }

    /// Asks for a new task, unless this decision has created enough.
    fn create(
        &mut self,
        service: &ServiceRecord,
        slot: Option<u32>,
        node_id: Option<u64>,
        attempt: u32,
    ) -> bool {
        if self.decision.create.len() >= self.settings.max_creates {
            return false;
        }
        self.decision.create.push(NewTask {
            service: service.name.clone(),
            slot,
            node_id,
            template_version: service.template_version,
            spec: service.spec.task.clone(),
            attempt,
        });
        true
    }

    fn stop_if_wanted(&mut self, task: &TaskRecord) {
        if task.desired == DesiredState::Running {
            self.decision.shutdown.push(task.id);
        }
    }

    /// Whether the log would let `task` be forgotten.
    fn deletable(&self, task: &TaskRecord) -> bool {
        task.desired == DesiredState::Shutdown
            && (task.state.is_terminal()
                || !task.state.is_started()
                || task
                    .node_id
                    .is_some_and(|node| !self.state.nodes.contains_key(&node)))
    }

    /// Forgets a slot's oldest stopped tasks beyond the few kept.
    fn reap(&mut self, tasks: &[&TaskRecord]) {
        let done: Vec<u64> = tasks
            .iter()
            .filter(|task| self.deletable(task))
            .map(|task| task.id)
            .collect();
        let excess = done.len().saturating_sub(self.settings.keep_ended);
        self.decision.delete.extend(done.into_iter().take(excess));
    }
}

mod restart;
#[cfg(test)]
mod tests;
