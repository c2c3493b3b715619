//! `events`: the cluster's events as this manager's replica applies them, streamed.
//!
//! Any manager serves it from its replica's event log ([`symphony_consensus::events`]): first
//! what is kept after `--since` (a revision compaction dropped is refused, naming the oldest
//! one to resume from), then each revision as it is applied, filtered here. Revisions are log
//! indexes, the same on every manager, so a client that loses this manager resumes on another
//! from the last revision it saw, with no gap and no repeat. The stream reads the shared log as
//! it goes and holds no queue of its own, so a slow client costs no memory: one that falls
//! behind by more than the log keeps is told so and where to resume.

use std::time::Duration;

use symphony_consensus::events::{Event, EventKind, EventsCompacted};
use symphony_consensus::{ClusterState, NodeRole, UpdateKind, UpdateState};
use symphony_ctl::proto::{CtlError, EVENT_KINDS, ErrorCode, EventFilter, EventView, Response};
use tokio::sync::mpsc;

use crate::context::Context;
use crate::errors::not_initialised;

type Items = mpsc::Receiver<Result<Response, CtlError>>;

/// Events read from the log at once (whole revisions: a bigger one comes whole).
const BATCH: usize = 1_000;
/// How often a quiet stream checks that its Raft node was not started again meanwhile.
const RECHECK: Duration = Duration::from_secs(1);

pub fn stream(ctx: &Context, since: Option<u64>, filter: EventFilter) -> Result<Items, CtlError> {
    if let Some(kind) = filter
        .kinds
        .iter()
        .find(|kind| !EVENT_KINDS.contains(&kind.as_str()))
    {
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            format!(
                "{kind:?} is not an event type; the types are {}",
                EVENT_KINDS.join(", ")
            ),
        ));
    }
    let consensus = ctx.node.consensus().ok_or_else(not_initialised)?;
    let log = consensus.events();
    let mut after = since.unwrap_or_else(|| log.applied());
    // Refused at once, not after the first frame.
    log.after(after, 0).map_err(compacted)?;
    let (out, items) = mpsc::channel(4);
    let node = ctx.node.clone();
    tokio::spawn(async move {
        let mut applied = log.subscribe();
        loop {
            let events = match log.after(after, BATCH) {
                Ok(events) => events,
                Err(error) => {
                    let _ = out.send(Err(compacted(error))).await;
                    return;
                }
            };
            let Some(last) = events.last() else {
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    () = out.closed() => return,
                    () = tokio::time::sleep(RECHECK) => {
                        if !node.consensus().is_some_and(|now| now.events().same(&log)) {
                            let _ = out.send(Err(restarted(after))).await;
                            return;
                        }
                    }
                }
                continue;
            };
            after = last.revision;
            let views: Vec<EventView> = consensus.read_stale(|state| {
                events
                    .iter()
                    .filter(|event| passes(&filter, event))
                    .map(|event| view(state, event))
                    .collect()
            });
            if !views.is_empty() && out.send(Ok(Response::Events(views))).await.is_err() {
                return;
            }
        }
    });
    Ok(items)
}

fn compacted(error: EventsCompacted) -> CtlError {
    CtlError::compacted("events", error.requested, error.oldest)
}

fn restarted(after: u64) -> CtlError {
    CtlError::new(
        ErrorCode::Unavailable,
        format!(
            "this manager's Raft node started again, and its events with it; resume with --since {after}"
        ),
    )
}

/// Whether `event` gets through `filter`.
fn passes(filter: &EventFilter, event: &Event) -> bool {
    let kind = event.kind.kind();
    if !filter.kinds.is_empty() && !filter.kinds.iter().any(|wanted| wanted == kind) {
        return false;
    }
    if let Some(name) = &filter.service {
        let of_service = match &event.kind {
            EventKind::Service { name: service, .. }
            | EventKind::ServiceRemoved { name: service }
            | EventKind::Task { service, .. } => service == name,
            _ => false,
        };
        if !of_service {
            return false;
        }
    }
    if let Some(wanted) = filter.node_id {
        let on_node = match &event.kind {
            EventKind::Leader { node_id, .. } | EventKind::Task { node_id, .. } => {
                *node_id == Some(wanted)
            }
            EventKind::Node { node_id, .. } | EventKind::NodeRemoved { node_id } => {
                *node_id == wanted
            }
            _ => false,
        };
        if !on_node {
            return false;
        }
    }
    true
}

fn update_words(kind: UpdateKind, state: UpdateState) -> &'static str {
    match (kind, state) {
        (UpdateKind::Update, UpdateState::Updating) => "updating",
        (UpdateKind::Update, UpdateState::Paused) => "update paused",
        (UpdateKind::Update, UpdateState::Completed) => "update completed",
        (UpdateKind::Rollback, UpdateState::Updating) => "rolling back",
        (UpdateKind::Rollback, UpdateState::Paused) => "rollback paused",
        (UpdateKind::Rollback, UpdateState::Completed) => "rolled back",
        (UpdateKind::Rebalance, UpdateState::Updating) => "rebalancing",
        (UpdateKind::Rebalance, UpdateState::Paused) => "rebalance paused",
        (UpdateKind::Rebalance, UpdateState::Completed) => "rebalanced",
    }
}

/// The event as `events` shows it.
fn view(state: &ClusterState, event: &Event) -> EventView {
    let mut view = EventView {
        revision: event.revision,
        at_ms: event.at_ms,
        kind: event.kind.kind().to_string(),
        action: String::new(),
        node_id: None,
        service: None,
        task_id: None,
        slot: None,
        text: String::new(),
    };
    let host = |node_id: u64| {
        state
            .nodes
            .get(&node_id)
            .map_or_else(|| node_id.to_string(), |node| node.hostname.clone())
    };
    match &event.kind {
        EventKind::Leader {
            term,
            raft_node_id,
            node_id,
        } => {
            view.action = "elected".into();
            view.node_id = *node_id;
            let who = match node_id {
                Some(id) => format!("node {id} ({})", host(*id)),
                None => format!("raft node {raft_node_id}"),
            };
            view.text = format!("{who} leads, term {term}");
        }
        EventKind::Node {
            node_id,
            hostname,
            role,
            status,
            availability,
        } => {
            view.action = status.as_str().into();
            view.node_id = Some(*node_id);
            let role = match role {
                NodeRole::Manager => "manager",
                NodeRole::Worker => "worker",
            };
            view.text = format!(
                "node {node_id} ({hostname}, {role}): {}, {}",
                status.as_str(),
                availability.as_str()
            );
        }
        EventKind::NodeRemoved { node_id } => {
            view.action = "removed".into();
            view.node_id = Some(*node_id);
            view.text = format!("node {node_id} removed");
        }
        EventKind::Service {
            name,
            version,
            template_version,
            update,
            message,
        } => {
            view.action = if *version == 1 { "created" } else { "updated" }.into();
            view.service = Some(name.clone());
            let mut text = format!(
                "service {name} {}: version {version}, template {template_version}",
                view.action
            );
            if let Some((kind, state)) = update {
                text.push_str(&format!("; {}", update_words(*kind, *state)));
                if let Some(message) = message {
                    text.push_str(&format!(" ({message})"));
                }
            }
            view.text = text;
        }
        EventKind::ServiceRemoved { name } => {
            view.action = "removed".into();
            view.service = Some(name.clone());
            view.text = format!("service {name} removed");
        }
        EventKind::Task {
            task_id,
            service,
            slot,
            node_id,
            state: task_state,
            desired,
            exit_code,
            error,
            health,
        } => {
            view.action = task_state.as_str().into();
            view.service = Some(service.clone());
            view.task_id = Some(*task_id);
            view.slot = *slot;
            view.node_id = *node_id;
            let place = match slot {
                Some(slot) => format!("{service}.{slot}"),
                None => service.clone(),
            };
            let mut text = format!("task {task_id} ({place})");
            if let Some(node) = node_id {
                text.push_str(&format!(" on {}", host(*node)));
            }
            text.push_str(&format!(": {}", task_state.as_str()));
            if desired.as_str() != "running" {
                text.push_str(&format!(", desired {}", desired.as_str()));
            }
            if let Some(health) = health {
                text.push_str(&format!(", {}", health.as_str()));
            }
            if let Some(code) = exit_code {
                text.push_str(&format!(", exit code {code}"));
            }
            if let Some(error) = error {
                text.push_str(&format!(": {error}"));
            }
            view.text = text;
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use symphony_consensus::{DesiredState, TaskState};

    fn task(service: &str, node: u64) -> Event {
        Event {
            revision: 7,
            at_ms: 0,
            kind: EventKind::Task {
                task_id: 3,
                service: service.into(),
                slot: Some(0),
                node_id: Some(node),
                state: TaskState::Failed,
                desired: DesiredState::Shutdown,
                exit_code: Some(2),
                error: Some("boom".into()),
                health: None,
            },
        }
    }

    #[test]
    fn filters_pick_by_type_service_and_node() {
        let leader = Event {
            revision: 1,
            at_ms: 0,
            kind: EventKind::Leader {
                term: 2,
                raft_node_id: 9,
                node_id: Some(4),
            },
        };
        let all = EventFilter::default();
        assert!(passes(&all, &leader) && passes(&all, &task("web", 4)));
        let tasks = EventFilter {
            kinds: vec!["task".into()],
            ..EventFilter::default()
        };
        assert!(!passes(&tasks, &leader) && passes(&tasks, &task("web", 4)));
        let web = EventFilter {
            service: Some("web".into()),
            ..EventFilter::default()
        };
        assert!(passes(&web, &task("web", 4)));
        assert!(!passes(&web, &task("db", 4)) && !passes(&web, &leader));
        let node = EventFilter {
            node_id: Some(4),
            ..EventFilter::default()
        };
        assert!(passes(&node, &leader) && passes(&node, &task("db", 4)));
        assert!(!passes(&node, &task("db", 5)));
    }

    #[test]
    fn a_task_event_says_what_happened_in_one_line() {
        let shown = view(&ClusterState::default(), &task("web", 4));
        assert_eq!(shown.action, "failed");
        assert_eq!(
            shown.text,
            "task 3 (web.0) on 4: failed, desired shutdown, exit code 2: boom"
        );
        assert_eq!(
            (shown.task_id, shown.slot, shown.node_id),
            (Some(3), Some(0), Some(4))
        );
    }
}
