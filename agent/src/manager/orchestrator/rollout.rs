//! Rolling updates and rollbacks: which slots of a service move to its new template now, and
//! whether the update is done or failing. Pure, like the rest of the decision, and
//! level-triggered: everything it needs is in the service record (the update's state is
//! cluster state, so a new leader resumes where the old one stood), the slots' tasks and how
//! long this leader has seen each task ready.
//!
//! The rules, with `parallelism` p (0: every slot at once):
//! - a slot is *busy* while its newest task is of the new template and has not yet been ready
//!   (running, and healthy when the task has a health check) for `monitor` and then `delay`,
//!   and while it has no task at all (a stop-first slot between its old task stopping and its
//!   new one starting);
//! - while fewer than p slots are busy, the next *outdated* slots are replaced (those whose
//!   task is not running first, then by slot): stop-first stops the old task and the slot's
//!   new task is created once it has stopped; start-first creates the new task at once and
//!   the old one stops when the new one is ready;
//! - so with stop-first at most p slots are without a running task, and with start-first none;
//! - a task of the new template that fails (or is rejected) after the update started or was
//!   last resumed counts against it; more failures than `max_failure_ratio` of the slots
//!   updated so far trigger the failure action: pause, roll back (an update; a failing
//!   rollback pauses) or continue;
//! - when every slot's task is of the new template and has been ready for `monitor` (or
//!   ended, which the restart policy looks after), the update is completed.
//!
//! A rollback runs the same way with the rollback settings; slots whose task already runs
//! the spec rolled back to (they were never updated) are left as they are. A rebalance runs
//! the same way too, with the update settings but always start-first, and its outdated slots
//! are those [`balance`](super::balance) says move: the new task (same template) is placed by
//! the scheduler on the node with the fewest of the service's tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use symphony_consensus::{
    FailureAction, Health, ServiceCommand, ServiceRecord, TaskRecord, TaskState, UpdateConfig,
    UpdateKind, UpdateOrder, UpdateState,
};

/// Whether `task` serves: running, and healthy if it has a health check.
pub fn is_ready(task: &TaskRecord) -> bool {
    task.state == TaskState::Running
        && (task.spec.health.is_none() || task.health == Some(Health::Healthy))
}

/// One slot of a service (a replicated service's slot, a global service's node), as the
/// rollout sees it.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    /// The newest task the orchestrator wants running there, if any.
    pub current: Option<&'a TaskRecord>,
    /// Whether `current` stays where it is (not lost, gone or draining: those are being
    /// replaced anyway).
    pub settled: bool,
}

/// What the rollout decided.
#[derive(Debug, Default)]
pub struct Rollout {
    /// The slots (indices into the slots given) whose current task is replaced now.
    pub replace: Vec<usize>,
    /// How they are replaced.
    pub order: Option<UpdateOrder>,
    /// A change of the update's state: completed, paused, or a rollback started.
    pub command: Option<ServiceCommand>,
    /// When the next slot's monitor period or delay ends: the decision is worth making again
    /// then, though nothing in the state changes.
    pub recheck_in: Option<Duration>,
}

/// Plans the next step of `service`'s update, if one is under way.
///
/// `tasks` are all the service's tasks (for its failures), `movers` the slots a rebalance
/// moves, `ready_for` how long this leader has seen tasks ready, `now_ms` the proposer's clock
/// for the commands.
pub fn plan(
    service: &ServiceRecord,
    slots: &[Slot<'_>],
    tasks: &[&TaskRecord],
    movers: &BTreeSet<usize>,
    ready_for: &BTreeMap<u64, Duration>,
    now_ms: u64,
) -> Rollout {
    let mut rollout = Rollout::default();
    let Some(update) = service.update.as_ref().filter(|update| {
        update.template_version == service.template_version && update.state == UpdateState::Updating
    }) else {
        return rollout;
    };
    let target = service.template_version;
    let config: UpdateConfig = match update.kind {
        UpdateKind::Update => service.spec.update,
        UpdateKind::Rollback => service.spec.rollback_config(),
        // Start-first: a rebalance never takes the service below its count.
        UpdateKind::Rebalance => UpdateConfig {
            order: UpdateOrder::StartFirst,
            ..service.spec.update
        },
    };
    // A rollback keeps tasks that run what it goes back to, where they may run.
    let same_placement = service
        .previous
        .as_ref()
        .is_some_and(|previous| previous.constraints == service.spec.constraints);
    let up_to_date = |index: usize, task: &TaskRecord| match update.kind {
        UpdateKind::Rebalance => !movers.contains(&index),
        UpdateKind::Update | UpdateKind::Rollback => {
            task.template_version == target
                || (update.kind == UpdateKind::Rollback
                    && same_placement
                    && task.spec == service.spec.task)
        }
    };

    // Failures of the new template since the update started or was resumed.
    let new_tasks: Vec<&TaskRecord> = tasks
        .iter()
        .copied()
        .filter(|task| task.template_version == target)
        .collect();
    let failed: Vec<&TaskRecord> = new_tasks
        .iter()
        .copied()
        .filter(|task| matches!(task.state, TaskState::Failed | TaskState::Rejected))
        .filter(|task| task.since_ms() >= update.changed_at_ms)
        .collect();
    let mut updated: Vec<(Option<u32>, Option<u64>)> = new_tasks
        .iter()
        .map(|task| (task.slot, task.node_id.filter(|_| task.slot.is_none())))
        .collect();
    updated.sort_unstable();
    updated.dedup();
    if config.failure_action != FailureAction::Continue
        && too_many(failed.len(), updated.len(), config.max_failure_permille)
    {
        let why = failure_message(&failed, updated.len());
        rollout.command = Some(
            if update.kind == UpdateKind::Update
                && config.failure_action == FailureAction::Rollback
                && service.previous.is_some()
            {
                ServiceCommand::Rollback {
                    name: service.name.clone(),
                    reason: Some(format!("update failed: {why}")),
                    at_ms: now_ms,
                }
            } else {
                ServiceCommand::SetUpdateState {
                    name: service.name.clone(),
                    template_version: target,
                    state: UpdateState::Paused,
                    message: Some(why),
                    at_ms: now_ms,
                }
            },
        );
        return rollout;
    }

    let monitor = Duration::from_millis(config.monitor_ms);
    let rested = monitor + Duration::from_millis(config.delay_ms);
    let mut busy = 0usize;
    let mut done = true;
    let mut outdated: Vec<(bool, usize)> = Vec::new();
    for (index, slot) in slots.iter().enumerate() {
        match slot.current {
            None => {
                busy += 1;
                done = false;
            }
            Some(task) if !up_to_date(index, task) => {
                done = false;
                if slot.settled {
                    outdated.push((task.state == TaskState::Running, index));
                } else {
                    // Being replaced (its node is lost, gone or draining): by a new task.
                    busy += 1;
                }
            }
            Some(task) if task.state.is_terminal() => {
                // Ended: the restart policy replaces it; its failure was counted above.
            }
            Some(task) => {
                let Some(ready) = ready_for.get(&task.id).copied() else {
                    done = false;
                    busy += 1;
                    continue;
                };
                let wait = if ready < monitor {
                    done = false;
                    monitor - ready
                } else {
                    rested.saturating_sub(ready)
                };
                if !wait.is_zero() {
                    busy += 1;
                    rollout.recheck_in = Some(rollout.recheck_in.map_or(wait, |at| at.min(wait)));
                }
            }
        }
    }
    if done {
        rollout.command = Some(ServiceCommand::SetUpdateState {
            name: service.name.clone(),
            template_version: target,
            state: UpdateState::Completed,
            message: None,
            at_ms: now_ms,
        });
        return rollout;
    }
    let parallelism = match config.parallelism {
        0 => usize::MAX,
        p => usize::try_from(p).unwrap_or(usize::MAX),
    };
    outdated.sort_unstable();
    rollout.replace = outdated
        .into_iter()
        .take(parallelism.saturating_sub(busy))
        .map(|(_, index)| index)
        .collect();
    rollout.order = Some(config.order);
    rollout
}

/// Whether `failed` of `updated` slots is over the tolerated ratio (per thousand).
fn too_many(failed: usize, updated: usize, max_permille: u32) -> bool {
    let failed = u64::try_from(failed).unwrap_or(u64::MAX);
    let updated = u64::try_from(updated.max(1)).unwrap_or(u64::MAX);
    failed > 0 && failed.saturating_mul(1000) > updated.saturating_mul(u64::from(max_permille))
}

/// Says which tasks failed, and how: the newest first.
fn failure_message(failed: &[&TaskRecord], updated: usize) -> String {
    let Some(newest) = failed.iter().max_by_key(|task| (task.since_ms(), task.id)) else {
        return String::new();
    };
    let what = match (&newest.error, newest.exit_code) {
        (Some(error), _) => error.clone(),
        (None, Some(code)) => format!("exited with code {code}"),
        (None, None) => newest.state.as_str().to_string(),
    };
    let place = match newest.slot {
        Some(slot) => format!("slot {slot}"),
        None => format!("node {}", newest.node_id.unwrap_or_default()),
    };
    format!(
        "task {} ({place}) {}: {what}; {} of {updated} updated tasks failed",
        newest.id,
        newest.state.as_str(),
        failed.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_ratio_is_strict_and_zero_means_any() {
        assert!(!too_many(0, 4, 0));
        assert!(too_many(1, 4, 0));
        assert!(
            !too_many(1, 4, 250),
            "one in four is at the ratio, not over it"
        );
        assert!(too_many(2, 4, 250));
        assert!(!too_many(3, 4, 1000));
        assert!(too_many(1, 0, 500), "no slot updated yet counts as one");
    }
}
