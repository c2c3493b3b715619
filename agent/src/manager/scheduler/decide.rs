//! The scheduler's decision: a pure function of the cluster state.
//!
//! Every task that is `new` or `pending` and still wanted is placed on a node that passes every
//! filter ([`super::filters`]): ready, active, meeting the service's constraints, with the CPUs
//! and memory the task reserves unreserved. Among those, a service's tasks spread out: the node
//! with the fewest tasks of this service wins, then the one with the fewest tasks overall, then
//! the lowest id (so the decision is deterministic). A task no node takes is `pending`, with a
//! reason that counts which filter failed where; [`explain`] gives every node's every failure.
//!
//! A node where the service's tasks were rejected lately (the worker said it cannot run them:
//! an image it does not have, say), or failed [`FAILURES_TO_AVOID`] times, ranks after every
//! other node for that service for [`FAILURE_WINDOW_MS`] (swarmkit does the same): a
//! replacement goes where it can run rather than back to where its predecessor just failed.
//! Such a node is not filtered out: when no other node takes the task, it is still used, and
//! after the window it ranks as any other.
//!
//! Tasks of one service with one reservation are placed as a group: the nodes that pass the
//! service's filters are found once, and the next node to use comes from a heap ordered by the
//! spread, so a decision over many tasks and nodes costs about a log per placement.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use symphony_consensus::{
    ClusterState, DesiredState, Driver, NodeRecord, Reservations, ServiceRecord, TaskRecord,
    TaskState,
};

use super::filters::{Failure, fits, placement_failures, resource_failures};

/// How long a node's rejections and failures of a service's tasks count against it.
pub const FAILURE_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Failures of a service's tasks on one node, within the window, after which the node ranks
/// last for that service (one rejection is enough).
pub const FAILURES_TO_AVOID: u32 = 3;

/// What the scheduler proposes: placements, and why the other tasks wait.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub placements: Vec<(u64, u64)>,
    /// Only reasons that differ from the task's current one.
    pub pending: Vec<(u64, String)>,
}

impl Schedule {
    pub fn is_empty(&self) -> bool {
        self.placements.is_empty() && self.pending.is_empty()
    }
}

/// One node's verdict on one task, for `service explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVerdict {
    pub node_id: u64,
    pub hostname: String,
    /// Empty when the node would take the task now.
    pub failures: Vec<Failure>,
}

/// What is reserved and running where, as the state says.
#[derive(Debug, Default)]
pub(crate) struct Load<'a> {
    reserved: BTreeMap<u64, Reservations>,
    /// Wanted tasks per node.
    total: BTreeMap<u64, u32>,
    /// Wanted tasks per service and node.
    per_service: BTreeMap<(&'a str, u64), u32>,
}

impl<'a> Load<'a> {
    pub(crate) fn of(state: &'a ClusterState) -> Load<'a> {
        let mut load = Load::default();
        for task in state.tasks.values() {
            let Some(node) = task.node_id else { continue };
            if task.state.is_terminal() || task.state < TaskState::Assigned {
                continue;
            }
            // A task asked to stop still holds its reservation until it has stopped.
            let reserved = load.reserved.entry(node).or_default();
            reserved.cpus_milli += task.spec.reservations.cpus_milli;
            reserved.memory_bytes += task.spec.reservations.memory_bytes;
            if task.desired == DesiredState::Running {
                *load.total.entry(node).or_default() += 1;
                *load
                    .per_service
                    .entry((task.service.as_str(), node))
                    .or_default() += 1;
            }
        }
        load
    }

    pub(crate) fn reserved(&self, node: u64) -> Reservations {
        self.reserved.get(&node).copied().unwrap_or_default()
    }

    fn rank(&self, avoid: &Avoid<'_>, service: &str, node: u64) -> Rank {
        Reverse((
            u32::from(avoid.avoids(service, node)),
            self.per_service.get(&(service, node)).copied().unwrap_or(0),
            self.total.get(&node).copied().unwrap_or(0),
            node,
        ))
    }

    fn place(&mut self, service: &'a str, node: u64, needs: Reservations) {
        let reserved = self.reserved.entry(node).or_default();
        reserved.cpus_milli += needs.cpus_milli;
        reserved.memory_bytes += needs.memory_bytes;
        *self.total.entry(node).or_default() += 1;
        *self.per_service.entry((service, node)).or_default() += 1;
    }
}

/// A node's place in a group's heap: whether it is avoided for the service, then the spread.
type Rank = Reverse<(u32, u32, u32, u64)>;

/// The nodes where a service's tasks were rejected, or failed [`FAILURES_TO_AVOID`] times,
/// within [`FAILURE_WINDOW_MS`] of now.
#[derive(Debug, Default)]
pub(crate) struct Avoid<'a> {
    /// Failed tasks per service and node, within the window.
    failed: BTreeMap<(&'a str, u64), u32>,
    /// Services and nodes with a rejected task within the window.
    rejected: std::collections::BTreeSet<(&'a str, u64)>,
}

impl<'a> Avoid<'a> {
    pub(crate) fn of(state: &'a ClusterState, now_ms: u64) -> Avoid<'a> {
        let since = now_ms.saturating_sub(FAILURE_WINDOW_MS);
        let mut avoid = Avoid::default();
        for task in state.tasks.values() {
            let Some(node) = task.node_id else { continue };
            if !matches!(task.state, TaskState::Failed | TaskState::Rejected)
                || task.since_ms() < since
            {
                continue;
            }
            let key = (task.service.as_str(), node);
            if task.state == TaskState::Rejected {
                avoid.rejected.insert(key);
            } else {
                *avoid.failed.entry(key).or_default() += 1;
            }
        }
        avoid
    }

    pub(crate) fn avoids(&self, service: &str, node: u64) -> bool {
        self.rejected.contains(&(service, node))
            || self
                .failed
                .get(&(service, node))
                .is_some_and(|count| *count >= FAILURES_TO_AVOID)
    }
}

/// The tasks waiting for a node, oldest first.
fn waiting(state: &ClusterState) -> impl Iterator<Item = &TaskRecord> {
    state
        .tasks
        .values()
        .filter(|task| task.state < TaskState::Assigned && task.desired == DesiredState::Running)
}

/// Places up to `limit` waiting tasks; `now_ms` dates the failures that count (see
/// [`Avoid`]).
pub fn decide(state: &ClusterState, now_ms: u64, limit: usize) -> Schedule {
    let mut schedule = Schedule::default();
    // Most passes find nothing waiting (every task report wakes the loop): they are spared
    // counting the load, a walk over every task with a map entry for each.
    if waiting(state).next().is_none() {
        return schedule;
    }
    let mut load = Load::of(state);
    let avoid = Avoid::of(state, now_ms);
    // Tasks of one service with one reservation and driver and no fixed node are placed
    // together (in an update from one driver to the other, old and new tasks differ).
    let mut groups: BTreeMap<(&str, Reservations, Driver), Vec<&TaskRecord>> = BTreeMap::new();
    let mut fixed: Vec<&TaskRecord> = Vec::new();
    for task in waiting(state) {
        if task.node_id.is_some() {
            fixed.push(task);
        } else {
            groups
                .entry((
                    task.service.as_str(),
                    task.spec.reservations,
                    task.spec.driver,
                ))
                .or_default()
                .push(task);
        }
    }
    for task in fixed {
        let Some(service) = state.services.get(&task.service) else {
            continue;
        };
        let Some(node) = task.node_id.and_then(|id| state.nodes.get(&id)) else {
            note_pending(
                &mut schedule,
                task,
                "its node is no longer in the cluster".into(),
            );
            continue;
        };
        let mut failures = placement_failures(node, &service.spec.constraints, task.spec.driver);
        failures.extend(resource_failures(
            node,
            load.reserved(node.node_id),
            task.spec.reservations,
        ));
        if failures.is_empty() && schedule.placements.len() < limit {
            load.place(&task.service, node.node_id, task.spec.reservations);
            schedule.placements.push((task.id, node.node_id));
        } else if !failures.is_empty() {
            let reason = summary(&[(node, failures)]);
            note_pending(&mut schedule, task, reason);
        }
    }
    for ((name, needs, driver), tasks) in groups {
        let Some(service) = state.services.get(name) else {
            continue;
        };
        let mut heap: BinaryHeap<Rank> = state
            .nodes
            .values()
            .filter(|node| placement_failures(node, &service.spec.constraints, driver).is_empty())
            .map(|node| load.rank(&avoid, name, node.node_id))
            .collect();
        let mut reason: Option<String> = None;
        for task in tasks {
            if schedule.placements.len() >= limit {
                break;
            }
            let mut placed = None;
            while let Some(Reverse((_, _, _, node_id))) = heap.pop() {
                let Some(node) = state.nodes.get(&node_id) else {
                    continue;
                };
                // A node this group's reservation no longer fits stays out of the heap.
                if fits(node, load.reserved(node_id), needs) {
                    placed = Some(node_id);
                    break;
                }
            }
            match placed {
                Some(node_id) => {
                    load.place(name, node_id, needs);
                    heap.push(load.rank(&avoid, name, node_id));
                    schedule.placements.push((task.id, node_id));
                }
                None => {
                    let reason = reason
                        .get_or_insert_with(|| group_summary(state, service, needs, driver, &load))
                        .clone();
                    note_pending(&mut schedule, task, reason);
                }
            }
        }
    }
    schedule
}

fn note_pending(schedule: &mut Schedule, task: &TaskRecord, reason: String) {
    if task.pending_reason.as_deref() != Some(reason.as_str()) {
        schedule.pending.push((task.id, reason));
    }
}

/// Every node's verdict on `task`, as the scheduler would judge it now.
pub fn explain(state: &ClusterState, task: &TaskRecord) -> Vec<NodeVerdict> {
    let load = Load::of(state);
    let constraints = state
        .services
        .get(&task.service)
        .map(|service| service.spec.constraints.clone())
        .unwrap_or_default();
    state
        .nodes
        .values()
        .filter(|node| task.node_id.is_none_or(|fixed| fixed == node.node_id))
        .map(|node| {
            let mut failures = placement_failures(node, &constraints, task.spec.driver);
            failures.extend(resource_failures(
                node,
                load.reserved(node.node_id),
                task.spec.reservations,
            ));
            NodeVerdict {
                node_id: node.node_id,
                hostname: node.hostname.clone(),
                failures,
            }
        })
        .collect()
}

fn group_summary(
    state: &ClusterState,
    service: &ServiceRecord,
    needs: Reservations,
    driver: Driver,
    load: &Load<'_>,
) -> String {
    let verdicts: Vec<(&NodeRecord, Vec<Failure>)> = state
        .nodes
        .values()
        .map(|node| {
            let mut failures = placement_failures(node, &service.spec.constraints, driver);
            failures.extend(resource_failures(node, load.reserved(node.node_id), needs));
            (node, failures)
        })
        .collect();
    summary(&verdicts)
}

/// Which filters the nodes fail, counted: `no node takes it (of 3): memory on 2 (needs 64 GiB
/// memory, 7.5 GiB unreserved of 8 GiB), availability on 1 (the node is draining)`.
fn summary(verdicts: &[(&NodeRecord, Vec<Failure>)]) -> String {
    if verdicts.is_empty() {
        return "no node in the cluster".to_string();
    }
    let mut by_filter: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for (_, failures) in verdicts {
        let mut seen = std::collections::BTreeSet::new();
        for failure in failures {
            if seen.insert(failure.filter) {
                let entry = by_filter
                    .entry(failure.filter)
                    .or_insert((0, failure.detail.as_str()));
                entry.0 += 1;
            }
        }
    }
    if by_filter.is_empty() {
        return "every node is full for now; it is placed as soon as one has room".to_string();
    }
    let parts: Vec<String> = by_filter
        .into_iter()
        .map(|(filter, (count, example))| format!("{filter} on {count} ({example})"))
        .collect();
    format!(
        "no node takes it (of {}): {}",
        verdicts.len(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests;
