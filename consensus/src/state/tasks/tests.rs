use super::*;
use crate::state::tests::{bootstrap, service_spec};
use crate::state::{
    ClusterState, Command, NodeCommand, NodeJoin, NodeRole, Resources, ServiceCommand,
};

fn state_with_service() -> ClusterState {
    let mut state = ClusterState::default();
    bootstrap(&mut state, "c", 1);
    let join = Command::Node(Box::new(NodeCommand::Join {
        node: NodeJoin {
            node_id: 7,
            raft_node_id: None,
            role: NodeRole::Worker,
            hostname: "w".into(),
            remote_addr: "127.0.0.1:1".into(),
            raft_addr: None,
            gossip_addr: None,
            resources: Resources::default(),
            agent_version: "0".into(),
            labels: BTreeMap::new(),
            node_secret: Some("s".into()),
            certificate: None,
        },
        at_ms: 1,
    }));
    state.apply(&join, &mut Changes::default());
    let create = Command::Service(Box::new(ServiceCommand::Create {
        name: "web".into(),
        spec: service_spec(2),
        at_ms: 1,
    }));
    assert_eq!(
        state.apply(&create, &mut Changes::default()),
        CommandResult::Done
    );
    state
}

fn task(command: TaskCommand, state: &mut ClusterState) -> TaskOutcome {
    match state.apply(&Command::Task(command), &mut Changes::default()) {
        CommandResult::Tasks(outcome) => outcome,
        other => panic!("{other:?}"),
    }
}

fn new_task(service: &str, slot: u32) -> NewTask {
    NewTask {
        service: service.into(),
        slot: Some(slot),
        node_id: None,
        template_version: 1,
        spec: service_spec(1).task,
        attempt: 0,
    }
}

fn report(state: TaskState) -> TaskReport {
    TaskReport {
        task_id: 1,
        state,
        exit_code: None,
        error: None,
        health: None,
    }
}

#[test]
fn a_task_moves_from_new_to_running_and_never_back() {
    let mut state = state_with_service();
    let created = task(
        TaskCommand::Create {
            tasks: vec![new_task("web", 0), new_task("gone", 1)],
            at_ms: 10,
        },
        &mut state,
    );
    assert_eq!((created.changed, created.ignored), (vec![1], 1));
    let placed = task(
        TaskCommand::Schedule {
            placements: vec![(1, 7)],
            pending: vec![],
            at_ms: 11,
        },
        &mut state,
    );
    assert_eq!(placed.changed, vec![1]);
    assert_eq!(state.tasks.on_node(7).count(), 1);
    let before = state.tasks.node_changes(7);
    assert_eq!(state.tasks.take_touched_nodes(), BTreeSet::from([7]));
    let reports = |reports| TaskCommand::Report {
        node_id: 7,
        reports,
        at_ms: 12,
    };
    task(
        reports(vec![
            report(TaskState::Accepted),
            report(TaskState::Running),
        ]),
        &mut state,
    );
    assert_eq!(state.tasks[&1].state, TaskState::Running);
    // Accepted and running change nothing the node is assigned: its streams need not look.
    assert_eq!(state.tasks.node_changes(7), before);
    assert!(state.tasks.take_touched_nodes().is_empty());
    // A late report of an earlier state, and one only the scheduler may make, are ignored.
    let stale = task(
        reports(vec![
            report(TaskState::Starting),
            report(TaskState::Assigned),
        ]),
        &mut state,
    );
    assert_eq!((stale.changed.len(), stale.ignored), (0, 2));
    assert_eq!(state.tasks[&1].state, TaskState::Running);
    let states: Vec<TaskState> = state.tasks[&1]
        .transitions
        .iter()
        .map(|transition| transition.state)
        .collect();
    assert_eq!(
        states,
        [
            TaskState::New,
            TaskState::Assigned,
            TaskState::Accepted,
            TaskState::Running
        ]
    );
    // Its end does: the node no longer acts on it.
    task(reports(vec![report(TaskState::Complete)]), &mut state);
    assert!(state.tasks.node_changes(7) > before);
    assert_eq!(state.tasks.take_touched_nodes(), BTreeSet::from([7]));
}

#[test]
fn only_the_node_a_task_is_placed_on_reports_it() {
    let mut state = state_with_service();
    task(
        TaskCommand::Create {
            tasks: vec![new_task("web", 0)],
            at_ms: 10,
        },
        &mut state,
    );
    let early = task(
        TaskCommand::Report {
            node_id: 7,
            reports: vec![report(TaskState::Running)],
            at_ms: 11,
        },
        &mut state,
    );
    assert_eq!(early.ignored, 1, "not placed yet");
    task(
        TaskCommand::Schedule {
            placements: vec![(1, 7)],
            pending: vec![],
            at_ms: 11,
        },
        &mut state,
    );
    let other = task(
        TaskCommand::Report {
            node_id: 8,
            reports: vec![report(TaskState::Running)],
            at_ms: 12,
        },
        &mut state,
    );
    assert_eq!(other.ignored, 1);
    assert_eq!(state.tasks[&1].state, TaskState::Assigned);
}

#[test]
fn pending_reasons_desired_states_and_deletion() {
    let mut state = state_with_service();
    task(
        TaskCommand::Create {
            tasks: vec![new_task("web", 0), new_task("web", 1)],
            at_ms: 10,
        },
        &mut state,
    );
    task(
        TaskCommand::Schedule {
            placements: vec![],
            pending: vec![(1, "no node has 64 GiB".into())],
            at_ms: 11,
        },
        &mut state,
    );
    assert_eq!(state.tasks[&1].state, TaskState::Pending);
    assert_eq!(
        state.tasks[&1].pending_reason.as_deref(),
        Some("no node has 64 GiB")
    );
    // The same reason again changes nothing.
    let again = task(
        TaskCommand::Schedule {
            placements: vec![],
            pending: vec![(1, "no node has 64 GiB".into())],
            at_ms: 12,
        },
        &mut state,
    );
    assert_eq!(again.ignored, 1);
    // A running task cannot be deleted; one that never started and is to stop can.
    let refused = task(TaskCommand::Delete { ids: vec![1] }, &mut state);
    assert_eq!(refused.ignored, 1);
    task(
        TaskCommand::SetDesired {
            changes: vec![(1, DesiredState::Shutdown)],
        },
        &mut state,
    );
    let back = task(
        TaskCommand::SetDesired {
            changes: vec![(1, DesiredState::Running)],
        },
        &mut state,
    );
    assert_eq!(back.ignored, 1, "desired states only move forward");
    task(TaskCommand::Delete { ids: vec![1] }, &mut state);
    assert!(!state.tasks.contains_key(&1));
    assert_eq!(state.tasks.of_service("web").count(), 1);
}

#[test]
fn removing_a_service_shuts_its_tasks_down() {
    let mut state = state_with_service();
    task(
        TaskCommand::Create {
            tasks: vec![new_task("web", 0)],
            at_ms: 10,
        },
        &mut state,
    );
    let remove = Command::Service(Box::new(ServiceCommand::Remove { name: "web".into() }));
    let mut changes = Changes::default();
    assert_eq!(state.apply(&remove, &mut changes), CommandResult::Done);
    assert_eq!(state.tasks[&1].desired, DesiredState::Shutdown);
    assert!(changes.contains(TABLE, &u64_key(1)));
}

#[test]
fn rows_and_snapshots_keep_tasks_and_rebuild_the_indexes() {
    let mut state = state_with_service();
    task(
        TaskCommand::Create {
            tasks: vec![new_task("web", 0), new_task("web", 1)],
            at_ms: 10,
        },
        &mut state,
    );
    task(
        TaskCommand::Schedule {
            placements: vec![(2, 7)],
            pending: vec![],
            at_ms: 11,
        },
        &mut state,
    );
    let mut copy = TaskTable::default();
    for key in state.tasks.row_keys() {
        let value = state.tasks.encode_row(&key).unwrap().unwrap();
        copy.load_row(&key, &value).unwrap();
    }
    assert_eq!(copy, state.tasks);
    assert_eq!(copy.on_node(7).map(|task| task.id).collect::<Vec<_>>(), [2]);
    let snapshot: TaskTable =
        crate::codec::decode(&crate::codec::encode(&state.tasks).unwrap()).unwrap();
    assert_eq!(snapshot.of_service("web").count(), 2);
    // Ids keep counting from where they were.
    let mut restored = state.clone();
    restored.tasks = snapshot;
    let created = task(
        TaskCommand::Create {
            tasks: vec![new_task("web", 2)],
            at_ms: 12,
        },
        &mut restored,
    );
    assert_eq!(created.changed, vec![3]);
}

#[test]
fn health_verdicts_arrive_in_the_same_state_and_stop_at_the_end() {
    let mut state = state_with_service();
    task(
        TaskCommand::Create {
            tasks: vec![new_task("web", 0)],
            at_ms: 10,
        },
        &mut state,
    );
    task(
        TaskCommand::Schedule {
            placements: vec![(1, 7)],
            pending: vec![],
            at_ms: 11,
        },
        &mut state,
    );
    let with = |state: TaskState, health: Option<Health>| TaskReport {
        health,
        ..report(state)
    };
    let reports = |reports| TaskCommand::Report {
        node_id: 7,
        reports,
        at_ms: 12,
    };
    task(
        reports(vec![with(TaskState::Running, Some(Health::Starting))]),
        &mut state,
    );
    assert_eq!(state.tasks[&1].health, Some(Health::Starting));
    let healthy = task(
        reports(vec![with(TaskState::Running, Some(Health::Healthy))]),
        &mut state,
    );
    assert_eq!(healthy.changed, vec![1]);
    assert_eq!(state.tasks[&1].health, Some(Health::Healthy));
    // The same verdict again changes nothing.
    let again = task(
        reports(vec![with(TaskState::Running, Some(Health::Healthy))]),
        &mut state,
    );
    assert!(again.changed.is_empty());
    task(
        reports(vec![with(TaskState::Failed, Some(Health::Unhealthy))]),
        &mut state,
    );
    assert_eq!(state.tasks[&1].state, TaskState::Failed);
    // Nothing moves an ended task's health.
    task(
        reports(vec![with(TaskState::Failed, Some(Health::Healthy))]),
        &mut state,
    );
    assert_eq!(state.tasks[&1].health, Some(Health::Unhealthy));
}
