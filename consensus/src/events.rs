//! Cluster events: what the log changed in the nodes, services and tasks tables, and who
//! leads, as this replica applied it — for `symphony-ctl events`.
//!
//! Every event carries the *revision* it happened at: the index of the log entry that made it
//! (a leader change is the blank entry a new leader appends first). Revisions are the same on
//! every replica, so a watcher that moves to another manager resumes from the last revision it
//! saw. One entry may make many events (a batch of task reports); they share the revision and
//! are delivered together, so resuming after a revision never splits one.
//!
//! The log of events is in memory and bounded: the newest [`DEFAULT_CAPACITY`] events are kept.
//! A reader that asks for what was dropped — too far behind, from before this replica started,
//! or across a snapshot install (which replaces the state without its entries) — gets
//! [`EventsCompacted`] with the oldest revision it can resume from, never a silent gap. Readers
//! pull from the shared log, so a slow one costs no memory.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::state::{
    Availability, ClusterState, DesiredState, Health, NodeRole, NodeStatus, TaskState, UpdateKind,
    UpdateState,
};

/// Events kept per replica.
pub const DEFAULT_CAPACITY: usize = 50_000;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The log index that made it.
    pub revision: u64,
    /// When this replica applied it (its wall clock).
    pub at_ms: u64,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// A new term's leader; `node_id` when the nodes table knows its Raft id.
    Leader {
        term: u64,
        raft_node_id: u64,
        node_id: Option<u64>,
    },
    /// A node joined or changed: its record as it is now.
    Node {
        node_id: u64,
        hostname: String,
        role: NodeRole,
        status: NodeStatus,
        availability: Availability,
    },
    NodeRemoved {
        node_id: u64,
    },
    /// A service was created or changed (spec, count, its update's state).
    Service {
        name: String,
        version: u64,
        template_version: u64,
        update: Option<(UpdateKind, UpdateState)>,
        message: Option<String>,
    },
    ServiceRemoved {
        name: String,
    },
    /// A task was created or moved on.
    Task {
        task_id: u64,
        service: String,
        slot: Option<u32>,
        node_id: Option<u64>,
        state: TaskState,
        desired: DesiredState,
        exit_code: Option<i32>,
        error: Option<String>,
        health: Option<Health>,
    },
}

impl EventKind {
    /// `leader`, `node`, `service` or `task`.
    pub fn kind(&self) -> &'static str {
        match self {
            EventKind::Leader { .. } => "leader",
            EventKind::Node { .. } | EventKind::NodeRemoved { .. } => "node",
            EventKind::Service { .. } | EventKind::ServiceRemoved { .. } => "service",
            EventKind::Task { .. } => "task",
        }
    }
}

/// The events wanted are no longer kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "events after revision {requested} are no longer all kept on this manager; the oldest revision to resume from is {oldest}"
)]
pub struct EventsCompacted {
    pub requested: u64,
    /// Every event after this revision is kept.
    pub oldest: u64,
}

/// This replica's recent events, shared by the state machine (the one writer) and readers.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Mutex<Inner>>,
    /// The last revision applied, bumped after its events are in.
    applied: watch::Sender<u64>,
}

struct Inner {
    events: VecDeque<Event>,
    /// Every event after this revision is in `events`.
    complete_after: u64,
    capacity: usize,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog::with_capacity(DEFAULT_CAPACITY)
    }
}

impl EventLog {
    pub fn with_capacity(capacity: usize) -> EventLog {
        EventLog {
            inner: Arc::new(Mutex::new(Inner {
                events: VecDeque::new(),
                complete_after: 0,
                capacity: capacity.max(1),
            })),
            applied: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps at most `capacity` events from now on.
    pub fn set_capacity(&self, capacity: usize) {
        self.lock().capacity = capacity.max(1);
    }

    /// Whether `other` is this very log (not one of a Raft node started again since).
    pub fn same(&self, other: &EventLog) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The last revision applied on this replica.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Changes whenever a revision is applied.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// What came before `revision` is not known here (a start from the store, a snapshot
    /// installed): readers from earlier are told so.
    pub(crate) fn start_at(&self, revision: u64) {
        let mut inner = self.lock();
        inner.events.clear();
        inner.complete_after = revision;
        drop(inner);
        self.applied.send_replace(revision);
    }

    /// Adds the events of `revision` (in order) and marks it applied.
    pub(crate) fn record(&self, revision: u64, events: Vec<Event>) {
        if !events.is_empty() {
            let mut inner = self.lock();
            inner.events.extend(events);
            while inner.events.len() > inner.capacity {
                let Some(dropped) = inner.events.pop_front() else {
                    break;
                };
                // A revision partly dropped is dropped whole.
                while inner
                    .events
                    .front()
                    .is_some_and(|next| next.revision == dropped.revision)
                {
                    inner.events.pop_front();
                }
                inner.complete_after = inner.complete_after.max(dropped.revision);
            }
        }
        self.applied.send_if_modified(|applied| {
            let moved = revision > *applied;
            *applied = (*applied).max(revision);
            moved
        });
    }

    /// The events after `since`, at most about `max` (whole revisions: a revision with more
    /// events than `max` comes whole).
    pub fn after(&self, since: u64, max: usize) -> Result<Vec<Event>, EventsCompacted> {
        let inner = self.lock();
        if since < inner.complete_after {
            return Err(EventsCompacted {
                requested: since,
                oldest: inner.complete_after,
            });
        }
        let start = inner
            .events
            .partition_point(|event| event.revision <= since);
        let mut out: Vec<Event> = Vec::new();
        for event in inner.events.range(start..) {
            if out.len() >= max
                && out
                    .last()
                    .is_some_and(|last| last.revision != event.revision)
            {
                break;
            }
            out.push(event.clone());
        }
        Ok(out)
    }
}

/// The events of one applied entry, from the rows it touched: each touched row of the nodes,
/// services and tasks tables as it is after the entry.
pub(crate) fn of_changes(
    state: &ClusterState,
    changes: &crate::state::Changes,
    revision: u64,
    at_ms: u64,
) -> Vec<Event> {
    use crate::state::table::key_u64;
    use crate::state::{nodes, services, tasks};
    let mut events = Vec::new();
    let mut push = |kind| {
        events.push(Event {
            revision,
            at_ms,
            kind,
        });
    };
    for key in changes.of(nodes::TABLE) {
        let Ok(node_id) = key_u64(key) else { continue };
        push(match state.nodes.get(&node_id) {
            Some(node) => EventKind::Node {
                node_id,
                hostname: node.hostname.clone(),
                role: node.role,
                status: node.status,
                availability: node.availability,
            },
            None => EventKind::NodeRemoved { node_id },
        });
    }
    for key in changes.of(services::TABLE) {
        let name = String::from_utf8_lossy(key).into_owned();
        push(match state.services.get(&name) {
            Some(service) => EventKind::Service {
                version: service.version,
                template_version: service.template_version,
                update: service
                    .update
                    .as_ref()
                    .map(|update| (update.kind, update.state)),
                message: service
                    .update
                    .as_ref()
                    .and_then(|update| update.message.clone()),
                name,
            },
            None => EventKind::ServiceRemoved { name },
        });
    }
    for key in changes.of(tasks::TABLE) {
        let Ok(task_id) = key_u64(key) else { continue };
        // A forgotten (reaped) task is no news.
        if let Some(task) = state.tasks.get(&task_id) {
            push(EventKind::Task {
                task_id,
                service: task.service.clone(),
                slot: task.slot,
                node_id: task.node_id,
                state: task.state,
                desired: task.desired,
                exit_code: task.exit_code,
                error: task.error.clone(),
                health: task.health,
            });
        }
    }
    events
}

/// The event of a new term's first (blank) entry.
pub(crate) fn leader(
    state: &ClusterState,
    revision: u64,
    at_ms: u64,
    term: u64,
    raft_node_id: u64,
) -> Event {
    let node_id = state
        .nodes
        .values()
        .find(|node| node.raft_node_id == Some(raft_node_id))
        .map(|node| node.node_id);
    Event {
        revision,
        at_ms,
        kind: EventKind::Leader {
            term,
            raft_node_id,
            node_id,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: u64) -> Event {
        Event {
            revision,
            at_ms: 0,
            kind: EventKind::NodeRemoved { node_id: revision },
        }
    }

    fn revisions(events: &[Event]) -> Vec<u64> {
        events.iter().map(|event| event.revision).collect()
    }

    #[test]
    fn readers_resume_after_a_revision_and_get_whole_revisions() {
        let log = EventLog::with_capacity(100);
        log.start_at(10);
        log.record(11, vec![event(11)]);
        log.record(12, vec![]);
        log.record(13, vec![event(13), event(13), event(13)]);
        log.record(14, vec![event(14)]);
        assert_eq!(log.applied(), 14);
        assert_eq!(
            revisions(&log.after(10, 100).unwrap()),
            [11, 13, 13, 13, 14]
        );
        assert_eq!(revisions(&log.after(11, 100).unwrap()), [13, 13, 13, 14]);
        assert_eq!(revisions(&log.after(12, 1).unwrap()), [13, 13, 13], "whole");
        assert!(log.after(14, 100).unwrap().is_empty());
        assert_eq!(
            log.after(9, 100),
            Err(EventsCompacted {
                requested: 9,
                oldest: 10
            }),
            "from before this replica started"
        );
    }

    #[test]
    fn a_full_log_drops_its_oldest_revisions_whole_and_says_so() {
        let log = EventLog::with_capacity(3);
        log.record(1, vec![event(1), event(1)]);
        log.record(2, vec![event(2), event(2)]);
        // 4 events > 3: revision 1 goes, both its events.
        assert_eq!(revisions(&log.after(1, 100).unwrap()), [2, 2]);
        assert_eq!(log.after(0, 100).unwrap_err().oldest, 1);
        log.record(3, vec![event(3), event(3)]);
        assert_eq!(revisions(&log.after(2, 100).unwrap()), [3, 3]);
        assert_eq!(log.after(1, 100).unwrap_err().oldest, 2);
        // A snapshot install: nothing before it is known.
        log.start_at(50);
        assert_eq!(log.after(3, 100).unwrap_err().oldest, 50);
        assert!(log.after(50, 100).unwrap().is_empty());
    }
}
