//! A service's life: its count, restarts, lost nodes, drains, global services, reaping.

use super::*;

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
        symphony_consensus::Command::Service(Box::new(ServiceCommand::Scale {
            name: "web".into(),
            replicas: 5,
            at_ms: 20,
        })),
    );
    step(&mut state, &quiet());
    assert_eq!(live_slots(&state, "web"), [0, 1, 2, 3, 4]);

    apply(
        &mut state,
        symphony_consensus::Command::Service(Box::new(ServiceCommand::Scale {
            name: "web".into(),
            replicas: 1,
            at_ms: 30,
        })),
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
        symphony_consensus::Command::Service(Box::new(ServiceCommand::Remove {
            name: "job".into(),
        })),
    );
    step(&mut state, &quiet());
    // The current task was running: it stays until its worker says it stopped.
    assert_eq!(state.tasks.of_service("job").count(), 1);
    report(&mut state, current[0], TaskState::Shutdown, None);
    step(&mut state, &quiet());
    assert_eq!(state.tasks.of_service("job").count(), 0);
    let _ = create_tasks;
}
