//! Rolling updates: stop-first and start-first, failures, rollbacks, global services.

use super::*;

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
        symphony_consensus::Command::Service(Box::new(ServiceCommand::Update {
            name: "web".into(),
            patch,
            at_ms: 1,
        })),
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
        symphony_consensus::Command::Service(Box::new(ServiceCommand::Update {
            name: "web".into(),
            patch: symphony_consensus::ServicePatch::default(),
            at_ms: 50,
        })),
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
        symphony_consensus::Command::Service(Box::new(ServiceCommand::Scale {
            name: "web".into(),
            replicas: 3,
            at_ms: 2,
        })),
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
