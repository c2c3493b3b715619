//! Placements: tasks the scheduler put on a node, counted from the events this manager's
//! replica applies (a task's event in state `assigned`), so that every manager counts the same
//! placements and a leader change loses none, while the scheduler keeps its narrow handles.

use std::collections::BTreeSet;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use symphony_consensus::TaskState;
use symphony_consensus::events::{Event, EventKind};
use tokio_util::sync::CancellationToken;

use crate::node::NodeHandle;

/// Events read at once.
const BATCH: usize = 1_000;

/// The placement counter; cheap to clone. Only [`watch`] bumps it.
#[derive(Clone, Debug, Default)]
pub struct Placements {
    total: Counter,
}

impl Placements {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "placements",
            "Tasks placed on a node (moved to assigned), as this manager's replica applied them",
            self.total.clone(),
        );
    }
}

/// How many of `events` place a task not yet counted; `assigned` holds the tasks counted and
/// still assigned (a task's record may change again while it is assigned: counted once).
fn placed(events: &[Event], assigned: &mut BTreeSet<u64>) -> u64 {
    let mut placed = 0;
    for event in events {
        let EventKind::Task { task_id, state, .. } = &event.kind else {
            continue;
        };
        if *state == TaskState::Assigned {
            if assigned.insert(*task_id) {
                placed += 1;
            }
        } else {
            assigned.remove(task_id);
        }
    }
    placed
}

/// Counts placements until `shutdown`, following whichever Raft node the supervisor runs; a
/// reader that falls behind the event log skips to now (the count is a rate, not a ledger).
pub async fn watch(mut node: NodeHandle, counter: Placements, shutdown: CancellationToken) {
    loop {
        let Some(consensus) = node.consensus() else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = node.changed() => continue,
            }
        };
        let log = consensus.events();
        let mut applied = log.subscribe();
        let mut after = log.applied();
        let mut assigned = BTreeSet::new();
        loop {
            match log.after(after, BATCH) {
                Ok(events) if !events.is_empty() => {
                    after = events.last().map_or(after, |event| event.revision);
                    counter.total.inc_by(placed(&events, &mut assigned));
                    continue;
                }
                Ok(_) => {}
                Err(compacted) => {
                    after = compacted.oldest;
                    continue;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = applied.changed() => if changed.is_err() { break },
                _ = node.changed() => {
                    if !node.consensus().is_some_and(|now| now.same_node(&consensus)) {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use symphony_consensus::DesiredState;

    fn task(task_id: u64, state: TaskState) -> Event {
        Event {
            revision: 1,
            at_ms: 0,
            kind: EventKind::Task {
                task_id,
                service: "web".into(),
                slot: Some(0),
                node_id: Some(1),
                state,
                desired: DesiredState::Running,
                exit_code: None,
                error: None,
                health: None,
            },
        }
    }

    #[test]
    fn a_task_is_placed_once_however_often_its_record_changes() {
        let mut assigned = BTreeSet::new();
        let events = [
            task(1, TaskState::Pending),
            task(1, TaskState::Assigned),
            task(2, TaskState::Assigned),
            // Touched again while assigned (its desired state changed): not a new placement.
            task(1, TaskState::Assigned),
        ];
        assert_eq!(placed(&events, &mut assigned), 2);
        assert_eq!(
            placed(
                &[task(1, TaskState::Running), task(2, TaskState::Shutdown)],
                &mut assigned
            ),
            0
        );
        assert!(assigned.is_empty());
    }
}
