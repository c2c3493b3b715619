use std::collections::BTreeMap;
use std::time::Duration;

use symphony_consensus::{
    Availability, ClusterState, Constraint, DesiredState, NodeStatus, OnIsolation,
    RestartCondition, ServiceCommand, ServiceMode, TaskCommand, TaskState,
};

use super::*;
use crate::manager::testing::{
    MANAGER, apply, cluster, create_service, create_tasks, place, report, set_availability,
    set_status, spec, tasks_result,
};

const SETTINGS: Settings = Settings {
    node_loss_grace: Duration::from_secs(10),
    isolation_lease: Duration::from_secs(20),
    keep_ended: 2,
    max_creates: 1000,
};

/// Applies a decision as the orchestrator's loop would, and returns the created ids.
fn commit(state: &mut ClusterState, decision: &Decision) -> Vec<u64> {
    let created = tasks_result(
        state,
        TaskCommand::Create {
            tasks: decision.create.clone(),
            at_ms: 10,
        },
    )
    .changed;
    tasks_result(
        state,
        TaskCommand::SetDesired {
            changes: decision
                .shutdown
                .iter()
                .map(|id| (*id, DesiredState::Shutdown))
                .collect(),
        },
    );
    tasks_result(
        state,
        TaskCommand::Delete {
            ids: decision.delete.clone(),
        },
    );
    created
}

fn quiet() -> Observations {
    Observations::default()
}

/// Runs `decide` and commits it; returns the created ids.
fn step(state: &mut ClusterState, observed: &Observations) -> Vec<u64> {
    let decision = decide(state, observed, &SETTINGS);
    commit(state, &decision)
}

/// Places every unplaced task on `node` and has it report `running`.
fn run_all_on(state: &mut ClusterState, ids: &[u64], node: u64) {
    place(state, ids.iter().map(|id| (*id, node)).collect());
    for id in ids {
        report(state, *id, TaskState::Running, None);
    }
}

fn live_slots(state: &ClusterState, service: &str) -> Vec<u32> {
    let mut slots: Vec<u32> = state
        .tasks
        .of_service(service)
        .filter(|task| task.desired == DesiredState::Running)
        .filter_map(|task| task.slot)
        .collect();
    slots.sort_unstable();
    slots
}

#[test]
fn a_replicated_service_reaches_its_count_and_scales_both_ways() {
    let mut state = cluster(2);
    create_service(
        &mut state,
        "web",
        spec(ServiceMode::Replicated { replicas: 3 }),
    );
    let created = step(&mut state, &quiet());
    assert_eq!(created.len(), 3);
    assert_eq!(live_slots(&state, "web"), [0, 1, 2]);
    assert!(
        decide(&state, &quiet(), &SETTINGS).is_empty(),
        "at its count"
    );

    apply(
        &mut state,
        symphony_consensus::Command::Service(ServiceCommand::Scale {
            name: "web".into(),
            replicas: 5,
            at_ms: 20,
        }),
    );
    step(&mut state, &quiet());
    assert_eq!(live_slots(&state, "web"), [0, 1, 2, 3, 4]);

    apply(
        &mut state,
        symphony_consensus::Command::Service(ServiceCommand::Scale {
            name: "web".into(),
            replicas: 1,
            at_ms: 30,
        }),
    );
    let decision = decide(&state, &quiet(), &SETTINGS);
    assert!(decision.create.is_empty());
    assert_eq!(decision.shutdown.len(), 4, "the highest slots go");
    commit(&mut state, &decision);
    assert_eq!(live_slots(&state, "web"), [0]);
}

#[test]
fn a_task_that_ends_is_restarted_as_its_policy_says() {
    for (condition, exit_code, restarted) in [
        (RestartCondition::OnFailure, Some(1), true),
        (RestartCondition::OnFailure, Some(0), false),
        (RestartCondition::None, Some(1), false),
        (RestartCondition::Any, Some(0), true),
    ] {
        let mut state = cluster(1);
        let mut service = spec(ServiceMode::Replicated { replicas: 1 });
        service.restart.condition = condition;
        service.restart.delay_ms = 1000;
        create_service(&mut state, "job", service);
        let first = step(&mut state, &quiet());
        run_all_on(&mut state, &first, 10);
        let ended = if exit_code == Some(0) {
            TaskState::Complete
        } else {
            TaskState::Failed
        };
        report(&mut state, first[0], ended, exit_code);
        // Not before the delay.
        let mut observed = quiet();
        observed
            .ended_for
            .insert(first[0], Duration::from_millis(500));
        assert!(decide(&state, &observed, &SETTINGS).create.is_empty());
        observed
            .ended_for
            .insert(first[0], Duration::from_millis(1000));
        let decision = decide(&state, &observed, &SETTINGS);
        assert_eq!(
            decision.create.len(),
            usize::from(restarted),
            "{condition:?} after exit {exit_code:?}"
        );
        if restarted {
            assert_eq!(decision.create[0].slot, Some(0));
            assert_eq!(decision.create[0].attempt, 1);
            assert_eq!(decision.shutdown, first);
        }
    }
}

#[test]
fn restarts_stop_at_the_maximum() {
    let mut state = cluster(1);
    let mut service = spec(ServiceMode::Replicated { replicas: 1 });
    service.restart.condition = RestartCondition::OnFailure;
    service.restart.max_attempts = Some(2);
    create_service(&mut state, "flaky", service);
    let mut current = step(&mut state, &quiet());
    for attempt in 0..=2 {
        run_all_on(&mut state, &current, 10);
        report(&mut state, current[0], TaskState::Failed, Some(3));
        let mut observed = quiet();
        observed
            .ended_for
            .insert(current[0], Duration::from_secs(1));
        current = step(&mut state, &observed);
        if attempt < 2 {
            assert_eq!(current.len(), 1, "restart {}", attempt + 1);
        } else {
            assert!(current.is_empty(), "no third restart");
        }
    }
}

#[test]
fn a_down_node_s_tasks_move_after_the_grace_and_isolated_ones_after_the_lease() {
    let mut state = cluster(2);
    let mut stop = spec(ServiceMode::Replicated { replicas: 1 });
    stop.task.on_isolation = OnIsolation::Stop;
    create_service(
        &mut state,
        "keep",
        spec(ServiceMode::Replicated { replicas: 1 }),
    );
    create_service(&mut state, "stop", stop);
    let ids = step(&mut state, &quiet());
    run_all_on(&mut state, &ids, 10);
    set_status(&mut state, 10, NodeStatus::Down);
    let mut observed = quiet();
    observed.down_for.insert(10, Duration::from_secs(9));
    assert!(
        decide(&state, &observed, &SETTINGS).is_empty(),
        "within the grace"
    );
    observed.down_for.insert(10, Duration::from_secs(10));
    let decision = decide(&state, &observed, &SETTINGS);
    assert_eq!(decision.create.len(), 1);
    assert_eq!(decision.create[0].service, "keep");
    commit(&mut state, &decision);
    observed
        .down_for
        .insert(10, SETTINGS.isolation_lease + ISOLATION_MARGIN);
    let decision = decide(&state, &observed, &SETTINGS);
    assert_eq!(decision.create.len(), 1);
    assert_eq!(decision.create[0].service, "stop");
    // A new leader that has not seen the node down for long replaces nothing.
    let mut state = cluster(1);
    create_service(
        &mut state,
        "keep",
        spec(ServiceMode::Replicated { replicas: 1 }),
    );
    let ids = step(&mut state, &quiet());
    run_all_on(&mut state, &ids, 10);
    set_status(&mut state, 10, NodeStatus::Down);
    assert!(decide(&state, &quiet(), &SETTINGS).is_empty());
}

#[test]
fn draining_starts_the_replacement_first_and_stops_the_old_task_once_it_runs() {
    let mut state = cluster(2);
    create_service(
        &mut state,
        "web",
        spec(ServiceMode::Replicated { replicas: 1 }),
    );
    let old = step(&mut state, &quiet());
    run_all_on(&mut state, &old, 10);
    set_availability(&mut state, 10, Availability::Drain);
    let decision = decide(&state, &quiet(), &SETTINGS);
    assert_eq!(decision.create.len(), 1);
    assert!(
        decision.shutdown.is_empty(),
        "the old task runs until its replacement does"
    );
    let new = commit(&mut state, &decision);
    assert!(
        decide(&state, &quiet(), &SETTINGS).is_empty(),
        "one replacement only"
    );
    place(&mut state, vec![(new[0], 11)]);
    report(&mut state, new[0], TaskState::Starting, None);
    assert!(decide(&state, &quiet(), &SETTINGS).is_empty());
    report(&mut state, new[0], TaskState::Running, None);
    let decision = decide(&state, &quiet(), &SETTINGS);
    assert_eq!(decision.shutdown, old);
}

#[test]
fn a_global_service_runs_once_on_every_eligible_node() {
    let mut state = cluster(3);
    let mut probe = spec(ServiceMode::Global);
    probe.constraints = vec![Constraint::parse("node.role==worker").unwrap()];
    create_service(&mut state, "probe", probe);
    let decision = decide(&state, &quiet(), &SETTINGS);
    let mut nodes: Vec<u64> = decision.create.iter().filter_map(|t| t.node_id).collect();
    nodes.sort_unstable();
    assert_eq!(nodes, [10, 11, 12], "not on the manager");
    commit(&mut state, &decision);
    assert!(decide(&state, &quiet(), &SETTINGS).is_empty());
    crate::manager::testing::add_worker(&mut state, 13);
    set_availability(&mut state, 10, Availability::Drain);
    let decision = decide(&state, &quiet(), &SETTINGS);
    assert_eq!(decision.create.len(), 1);
    assert_eq!(decision.create[0].node_id, Some(13));
    assert_eq!(decision.shutdown.len(), 1, "the drained node's task stops");
    let _ = MANAGER;
}

#[test]
fn ended_tasks_are_kept_a_while_then_forgotten_and_a_removed_service_s_too() {
    let mut state = cluster(1);
    let mut service = spec(ServiceMode::Replicated { replicas: 1 });
    service.restart.condition = RestartCondition::Any;
    create_service(&mut state, "job", service);
    let mut current = step(&mut state, &quiet());
    for _ in 0..4 {
        run_all_on(&mut state, &current, 10);
        report(&mut state, current[0], TaskState::Complete, Some(0));
        let mut observed = quiet();
        observed
            .ended_for
            .insert(current[0], Duration::from_secs(1));
        current = step(&mut state, &observed);
        step(&mut state, &quiet());
    }
    let ended = state
        .tasks
        .of_service("job")
        .filter(|task| task.state.is_terminal())
        .count();
    assert_eq!(ended, SETTINGS.keep_ended);

    run_all_on(&mut state, &current, 10);
    apply(
        &mut state,
        symphony_consensus::Command::Service(ServiceCommand::Remove { name: "job".into() }),
    );
    step(&mut state, &quiet());
    // The current task was running: it stays until its worker says it stopped.
    assert_eq!(state.tasks.of_service("job").count(), 1);
    report(&mut state, current[0], TaskState::Shutdown, None);
    step(&mut state, &quiet());
    assert_eq!(state.tasks.of_service("job").count(), 0);
    let _ = create_tasks;
}

// ---- Rolling updates -------------------------------------------------------------------

/// Applies the decision's service commands too.
fn commit_all(state: &mut ClusterState, decision: &Decision) -> Vec<u64> {
    let created = commit(state, decision);
    for command in &decision.services {
        apply(state, symphony_consensus::Command::Service(command.clone()));
    }
    created
}

/// Every ready task counted as ready for `for_ms`.
fn ready_for(state: &ClusterState, for_ms: u64) -> Observations {
    let mut observed = quiet();
    observed.now_ms = 100;
    for task in state.tasks.values() {
        if super::super::rollout::is_ready(task) {
            observed
                .ready_for
                .insert(task.id, Duration::from_millis(for_ms));
        }
    }
    observed
}

fn update_env(state: &mut ClusterState, name: &str, value: &str) {
    let mut patch = symphony_consensus::ServicePatch::default();
    patch.env_set.insert("V".into(), value.into());
    apply(
        state,
        symphony_consensus::Command::Service(ServiceCommand::Update {
            name: name.into(),
            patch,
            at_ms: 1,
        }),
    );
}

fn running(state: &ClusterState, service: &str) -> Vec<(u32, u64)> {
    let mut slots: Vec<(u32, u64)> = state
        .tasks
        .of_service(service)
        .filter(|task| task.state == TaskState::Running && task.desired == DesiredState::Running)
        .map(|task| (task.slot.unwrap(), task.template_version))
        .collect();
    slots.sort_unstable();
    slots
}

/// Has every task the workers were asked to stop report that it stopped, and every new
/// task run on node 10.
fn workers_act(state: &mut ClusterState) {
    let stopping: Vec<u64> = state
        .tasks
        .values()
        .filter(|task| task.desired == DesiredState::Shutdown && task.state == TaskState::Running)
        .map(|task| task.id)
        .collect();
    for id in stopping {
        report(state, id, TaskState::Shutdown, None);
    }
    let new: Vec<u64> = state
        .tasks
        .values()
        .filter(|task| task.state == TaskState::New && task.desired == DesiredState::Running)
        .map(|task| task.id)
        .collect();
    run_all_on(state, &new, 10);
}

fn update_state(state: &ClusterState, service: &str) -> Option<symphony_consensus::UpdateStatus> {
    state.services[service].update.clone()
}

#[test]
fn a_stop_first_update_replaces_one_slot_at_a_time_after_its_monitor() {
    let mut state = cluster(1);
    let mut web = spec(ServiceMode::Replicated { replicas: 3 });
    web.update.monitor_ms = 1_000;
    create_service(&mut state, "web", web);
    let first = step(&mut state, &quiet());
    run_all_on(&mut state, &first, 10);
    update_env(&mut state, "web", "2");

    let mut completed = false;
    for round in 0..40 {
        // Half the rounds the new tasks have not been up for the monitor period yet.
        let observed = ready_for(&state, if round % 2 == 0 { 500 } else { 1_000 });
        let decision = decide(&state, &observed, &SETTINGS);
        let stopping: Vec<u64> = decision.shutdown.clone();
        assert!(stopping.len() <= 1, "one slot at a time: {decision:?}");
        if round % 2 == 0 {
            assert!(
                decision
                    .shutdown
                    .iter()
                    .all(|id| state.tasks[id].template_version == 2
                        || state.tasks.of_service("web").all(
                            |t| t.template_version == 1 || !super::super::rollout::is_ready(t)
                        )),
                "nothing moves while a new task is monitored"
            );
        }
        commit_all(&mut state, &decision);
        // Never more than parallelism slots without a running task.
        assert!(
            running(&state, "web").len() >= 2,
            "{:?}",
            running(&state, "web")
        );
        workers_act(&mut state);
        assert!(running(&state, "web").len() >= 2);
        if update_state(&state, "web").unwrap().state == symphony_consensus::UpdateState::Completed
        {
            completed = true;
            break;
        }
    }
    assert!(completed, "the update completed");
    assert_eq!(running(&state, "web"), [(0, 2), (1, 2), (2, 2)]);
}

#[test]
fn a_stop_first_slot_gets_its_new_task_only_once_the_old_one_stopped() {
    let mut state = cluster(1);
    create_service(
        &mut state,
        "web",
        spec(ServiceMode::Replicated { replicas: 1 }),
    );
    let first = step(&mut state, &quiet());
    run_all_on(&mut state, &first, 10);
    update_env(&mut state, "web", "2");
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    assert_eq!(decision.shutdown, first);
    assert!(decision.create.is_empty());
    commit_all(&mut state, &decision);
    // Still stopping: no new task yet.
    assert!(
        decide(&state, &ready_for(&state, 0), &SETTINGS)
            .create
            .is_empty()
    );
    report(&mut state, first[0], TaskState::Shutdown, None);
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    assert_eq!(decision.create.len(), 1);
    assert_eq!(decision.create[0].template_version, 2);
    assert_eq!(
        decision.create[0].attempt, 0,
        "a new template starts afresh"
    );
}

#[test]
fn a_start_first_update_keeps_the_old_task_until_the_new_one_is_healthy() {
    let mut state = cluster(1);
    let mut web = spec(ServiceMode::Replicated { replicas: 2 });
    web.update.order = symphony_consensus::UpdateOrder::StartFirst;
    web.update.parallelism = 2;
    web.update.monitor_ms = 0;
    create_service(&mut state, "web", web);
    let first = step(&mut state, &quiet());
    run_all_on(&mut state, &first, 10);
    let patch = symphony_consensus::ServicePatch {
        health: Some(Some(symphony_consensus::HealthCheck {
            command: vec!["true".into()],
            interval_ms: 1000,
            timeout_ms: 1000,
            retries: 1,
            start_period_ms: 0,
        })),
        ..Default::default()
    };
    apply(
        &mut state,
        symphony_consensus::Command::Service(ServiceCommand::Update {
            name: "web".into(),
            patch,
            at_ms: 1,
        }),
    );
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    assert_eq!(decision.create.len(), 2, "both slots at once");
    assert!(decision.shutdown.is_empty(), "the old tasks keep serving");
    let new = commit_all(&mut state, &decision);
    run_all_on(&mut state, &new, 10);
    // Running, but no health verdict yet: the old ones stay.
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    assert!(decision.shutdown.is_empty(), "{decision:?}");
    assert_eq!(running(&state, "web").len(), 4);
    for id in &new {
        report_health(&mut state, *id, symphony_consensus::Health::Healthy);
    }
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    let mut stopped = decision.shutdown.clone();
    stopped.sort_unstable();
    assert_eq!(stopped, first);
    assert_eq!(
        decision.services,
        [ServiceCommand::SetUpdateState {
            name: "web".into(),
            template_version: 2,
            state: symphony_consensus::UpdateState::Completed,
            message: None,
            at_ms: 100,
        }]
    );
}

fn report_health(state: &mut ClusterState, task_id: u64, health: symphony_consensus::Health) {
    let node_id = state.tasks[&task_id].node_id.unwrap();
    tasks_result(
        state,
        TaskCommand::Report {
            node_id,
            reports: vec![symphony_consensus::TaskReport {
                task_id,
                state: TaskState::Running,
                exit_code: None,
                error: None,
                health: Some(health),
            }],
            at_ms: 7,
        },
    );
}

/// Runs a 3-replica update with `action` until its first new task fails.
fn failing_update(action: symphony_consensus::FailureAction) -> (ClusterState, Decision) {
    let mut state = cluster(1);
    let mut web = spec(ServiceMode::Replicated { replicas: 3 });
    web.update.failure_action = action;
    web.update.monitor_ms = 0;
    create_service(&mut state, "web", web);
    let first = step(&mut state, &quiet());
    run_all_on(&mut state, &first, 10);
    update_env(&mut state, "web", "bad");
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    commit_all(&mut state, &decision);
    workers_act(&mut state);
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    let new = commit_all(&mut state, &decision);
    assert_eq!(new.len(), 1);
    run_all_on(&mut state, &new, 10);
    report(&mut state, new[0], TaskState::Failed, Some(3));
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    (state, decision)
}

#[test]
fn a_failing_update_pauses_and_resumes_on_request() {
    let (mut state, decision) = failing_update(symphony_consensus::FailureAction::Pause);
    let [
        ServiceCommand::SetUpdateState {
            state: paused,
            message,
            ..
        },
    ] = &decision.services[..]
    else {
        panic!("{decision:?}");
    };
    assert_eq!(*paused, symphony_consensus::UpdateState::Paused);
    let message = message.clone().unwrap();
    assert!(message.contains("exited with code 3"), "{message}");
    assert!(message.contains("1 of 1 updated tasks failed"), "{message}");
    commit_all(&mut state, &decision);
    // Paused: the restart policy still looks after the failed slot, but no other slot moves.
    for _ in 0..3 {
        let mut observed = ready_for(&state, 10_000);
        for task in state.tasks.values() {
            if task.state.is_terminal() {
                observed.ended_for.insert(task.id, Duration::from_secs(10));
            }
        }
        let decision = decide(&state, &observed, &SETTINGS);
        assert!(
            decision
                .shutdown
                .iter()
                .all(|id| state.tasks[id].template_version == 2),
            "no old task stops while paused: {decision:?}"
        );
        commit_all(&mut state, &decision);
        workers_act(&mut state);
    }
    assert_eq!(
        running(&state, "web")
            .iter()
            .filter(|(_, v)| *v == 1)
            .count(),
        2
    );
    // `service update` with nothing new resumes it; failures before do not count again.
    apply(
        &mut state,
        symphony_consensus::Command::Service(ServiceCommand::Update {
            name: "web".into(),
            patch: symphony_consensus::ServicePatch::default(),
            at_ms: 50,
        }),
    );
    let decision = decide(&state, &ready_for(&state, 10_000), &SETTINGS);
    assert!(decision.services.is_empty(), "{decision:?}");
    assert_eq!(
        decision.shutdown.len(),
        1,
        "the next slot moves: {decision:?}"
    );
}

#[test]
fn a_failing_update_rolls_back_and_leaves_slots_that_were_never_updated() {
    let (mut state, decision) = failing_update(symphony_consensus::FailureAction::Rollback);
    let [ServiceCommand::Rollback { reason, .. }] = &decision.services[..] else {
        panic!("{decision:?}");
    };
    assert!(
        reason
            .as_deref()
            .unwrap()
            .starts_with("update failed: task")
    );
    commit_all(&mut state, &decision);
    let update = update_state(&state, "web").unwrap();
    assert_eq!(update.kind, symphony_consensus::UpdateKind::Rollback);
    assert_eq!(state.services["web"].template_version, 3);
    assert!(!state.services["web"].spec.task.env.contains_key("V"));
    // Only the failed slot gets a task of the old spec; the two never updated stay.
    let mut all_created = Vec::new();
    for _ in 0..5 {
        let mut observed = ready_for(&state, 10_000);
        for task in state.tasks.values() {
            if task.state.is_terminal() {
                observed.ended_for.insert(task.id, Duration::from_secs(10));
            }
        }
        let decision = decide(&state, &observed, &SETTINGS);
        all_created.extend(commit_all(&mut state, &decision));
        workers_act(&mut state);
    }
    assert_eq!(all_created.len(), 1, "{all_created:?}");
    assert_eq!(
        update_state(&state, "web").unwrap().state,
        symphony_consensus::UpdateState::Completed
    );
    let versions: Vec<u64> = running(&state, "web").iter().map(|(_, v)| *v).collect();
    assert_eq!(
        versions.iter().filter(|v| **v == 1).count(),
        2,
        "{versions:?}"
    );
    assert_eq!(versions.len(), 3);
}

#[test]
fn scaling_during_no_update_replaces_nothing_and_a_continue_update_ignores_failures() {
    let (_, decision) = failing_update(symphony_consensus::FailureAction::Continue);
    assert!(decision.services.is_empty(), "{decision:?}");
    let mut state = cluster(1);
    create_service(
        &mut state,
        "web",
        spec(ServiceMode::Replicated { replicas: 2 }),
    );
    let first = step(&mut state, &quiet());
    run_all_on(&mut state, &first, 10);
    apply(
        &mut state,
        symphony_consensus::Command::Service(ServiceCommand::Scale {
            name: "web".into(),
            replicas: 3,
            at_ms: 2,
        }),
    );
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    assert_eq!(decision.create.len(), 1);
    assert!(decision.shutdown.is_empty());
    assert!(state.services["web"].update.is_none());
}

#[test]
fn a_global_service_updates_node_by_node() {
    let mut state = cluster(3);
    let mut agent = spec(ServiceMode::Global);
    agent.update.monitor_ms = 0;
    create_service(&mut state, "agent", agent);
    let created = step(&mut state, &quiet());
    assert_eq!(created.len(), 4, "the manager and three workers");
    for id in &created {
        report(&mut state, *id, TaskState::Running, None);
    }
    update_env(&mut state, "agent", "2");
    let mut rounds = 0;
    while update_state(&state, "agent").unwrap().state != symphony_consensus::UpdateState::Completed
    {
        rounds += 1;
        assert!(rounds < 30);
        let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
        assert!(decision.shutdown.len() <= 1, "{decision:?}");
        for new in commit_all(&mut state, &decision) {
            report(&mut state, new, TaskState::Running, None);
        }
        let stopping: Vec<u64> = state
            .tasks
            .values()
            .filter(|t| t.desired == DesiredState::Shutdown && t.state == TaskState::Running)
            .map(|t| t.id)
            .collect();
        for id in stopping {
            report(&mut state, id, TaskState::Shutdown, None);
        }
    }
    let live: Vec<&symphony_consensus::TaskRecord> = state
        .tasks
        .of_service("agent")
        .filter(|t| t.desired == DesiredState::Running)
        .collect();
    assert_eq!(live.len(), 4);
    assert!(
        live.iter()
            .all(|t| t.template_version == 2 && t.state == TaskState::Running)
    );
}

// ---- Rebalancing ------------------------------------------------------------------------

/// Runs the orchestrator, the scheduler and the workers until `web`'s rebalance completes (or
/// 40 rounds); at no point may fewer than `count` of its tasks run. Returns where they run.
fn rebalance_rounds(state: &mut ClusterState, count: usize) -> BTreeMap<u64, usize> {
    for _ in 0..40 {
        let decision = decide(state, &ready_for(state, 0), &SETTINGS);
        commit_all(state, &decision);
        let schedule = crate::manager::scheduler::decide::decide(state, 1000);
        let placed: Vec<u64> = schedule.placements.iter().map(|(task, _)| *task).collect();
        place(state, schedule.placements);
        for id in placed {
            report(state, id, TaskState::Running, None);
        }
        let serving = state
            .tasks
            .of_service("web")
            .filter(|task| task.state == TaskState::Running)
            .count();
        assert!(serving >= count, "only {serving} of {count} tasks ran");
        let stopping: Vec<u64> = state
            .tasks
            .values()
            .filter(|task| {
                task.desired == DesiredState::Shutdown && task.state == TaskState::Running
            })
            .map(|task| task.id)
            .collect();
        for id in stopping {
            report(state, id, TaskState::Shutdown, None);
        }
        if update_state(state, "web").is_some_and(|update| {
            update.kind == symphony_consensus::UpdateKind::Rebalance
                && update.state == symphony_consensus::UpdateState::Completed
        }) {
            break;
        }
    }
    let mut on: BTreeMap<u64, usize> = BTreeMap::new();
    for task in state.tasks.of_service("web") {
        if task.desired == DesiredState::Running && task.state == TaskState::Running {
            *on.entry(task.node_id.unwrap()).or_default() += 1;
        }
    }
    on
}

fn workers_only(replicas: u32) -> symphony_consensus::ServiceSpec {
    let mut web = spec(ServiceMode::Replicated { replicas });
    web.constraints = vec![Constraint::parse("node.role==worker").unwrap()];
    web.update.monitor_ms = 0;
    web
}

#[test]
fn a_rebalance_spreads_the_tasks_onto_a_new_node_start_first() {
    let mut state = cluster(1);
    create_service(&mut state, "web", workers_only(4));
    let first = step(&mut state, &quiet());
    run_all_on(&mut state, &first, 10);
    crate::manager::testing::add_worker(&mut state, 11);
    // A manual service does nothing by itself.
    assert!(decide(&state, &ready_for(&state, 0), &SETTINGS).is_empty());
    apply(
        &mut state,
        symphony_consensus::Command::Service(ServiceCommand::Rebalance {
            name: "web".into(),
            at_ms: 50,
        }),
    );
    let on = rebalance_rounds(&mut state, 4);
    assert_eq!(on, BTreeMap::from([(10, 2), (11, 2)]));
    let update = update_state(&state, "web").unwrap();
    assert_eq!(update.state, symphony_consensus::UpdateState::Completed);
    assert_eq!(
        state.services["web"].template_version, 1,
        "the same template"
    );
    // Balanced: nothing more moves.
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    assert!(decision.create.is_empty(), "{decision:?}");
}

#[test]
fn an_auto_rebalance_starts_by_itself_once_every_task_runs_and_not_again() {
    let mut state = cluster(1);
    let mut web = workers_only(6);
    web.rebalance = symphony_consensus::RebalanceMode::Auto;
    create_service(&mut state, "web", web);
    let first = step(&mut state, &quiet());
    // Not while tasks wait to run.
    crate::manager::testing::add_worker(&mut state, 11);
    crate::manager::testing::add_worker(&mut state, 12);
    assert!(
        decide(&state, &ready_for(&state, 0), &SETTINGS)
            .services
            .is_empty()
    );
    run_all_on(&mut state, &first, 10);
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    assert!(
        matches!(
            decision.services.as_slice(),
            [ServiceCommand::Rebalance { name, .. }] if name == "web"
        ),
        "{decision:?}"
    );
    let on = rebalance_rounds(&mut state, 6);
    assert_eq!(on, BTreeMap::from([(10, 2), (11, 2), (12, 2)]));
    let decision = decide(&state, &ready_for(&state, 0), &SETTINGS);
    assert!(
        decision.is_empty(),
        "balanced, so no new rebalance: {decision:?}"
    );
}
