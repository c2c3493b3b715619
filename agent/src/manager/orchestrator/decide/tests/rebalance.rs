//! Rebalancing: spreading a service's tasks onto a new node, on request and by itself.

use super::*;

/// Runs the orchestrator, the scheduler and the workers until `web`'s rebalance completes (or
/// 40 rounds); at no point may fewer than `count` of its tasks run. Returns where they run.
fn rebalance_rounds(state: &mut ClusterState, count: usize) -> BTreeMap<u64, usize> {
    for _ in 0..40 {
        let decision = decide(state, &ready_for(state, 0), &SETTINGS);
        commit_all(state, &decision);
        let schedule = crate::manager::scheduler::decide::decide(state, 0, 1000);
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
        symphony_consensus::Command::Service(Box::new(ServiceCommand::Rebalance {
            name: "web".into(),
            at_ms: 50,
        })),
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
