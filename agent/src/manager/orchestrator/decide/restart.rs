//! The restart policy: when a slot's task that ended is replaced, and how many times it was.

use std::time::Duration;

use symphony_consensus::{RestartCondition, ServiceRecord, TaskRecord, TaskState};

use super::Planner;

impl Planner<'_> {
    /// Replaces a current task that ended, if the restart policy says so and its delay has
    /// passed.
    pub(super) fn restart(
        &mut self,
        service: &ServiceRecord,
        current: &TaskRecord,
        slot: Option<u32>,
        node: Option<u64>,
    ) {
        let policy = service.spec.restart;
        let wanted = match current.state {
            // Stopped by its worker (cut off from every manager): not the task's doing.
            TaskState::Shutdown => true,
            TaskState::Complete => policy.condition == RestartCondition::Any,
            _ => policy.condition != RestartCondition::None,
        };
        if !wanted {
            return;
        }
        if let Some(max) = policy.max_attempts
            && self.restarts(service, current, slot, node) >= max
        {
            return;
        }
        let ended_for = self
            .observed
            .ended_for
            .get(&current.id)
            .copied()
            .unwrap_or_default();
        if ended_for < Duration::from_millis(policy.delay_ms) {
            return;
        }
        let attempt = if current.state == TaskState::Shutdown {
            current.attempt
        } else {
            current.attempt + 1
        };
        if self.create(service, slot, node, attempt) {
            self.decision.shutdown.push(current.id);
        }
    }

    /// How many times the slot was restarted: all told, or within the policy's window.
    pub(super) fn restarts(
        &self,
        service: &ServiceRecord,
        current: &TaskRecord,
        slot: Option<u32>,
        node: Option<u64>,
    ) -> u32 {
        let Some(window) = service.spec.restart.window_ms else {
            return current.attempt;
        };
        let since = self.observed.now_ms.saturating_sub(window);
        let mut attempts: Vec<u32> = self
            .state
            .tasks
            .of_service(&service.name)
            .filter(|task| task.slot == slot && (slot.is_some() || task.node_id == node))
            .filter(|task| task.attempt > 0 && task.created_at_ms >= since)
            .map(|task| task.attempt)
            .collect();
        attempts.dedup();
        u32::try_from(attempts.len()).unwrap_or(u32::MAX)
    }
}
