use std::collections::BTreeMap;

use symphony_consensus::{
    Availability, Constraint, NewTask, NodeCommand, Reservations, ServiceMode, TaskState,
};

use super::*;
use crate::manager::testing::{
    MANAGER, apply, cluster, create_service, create_tasks, place, report, set_availability, spec,
    tasks_result,
};

/// The time the tests decide at: after every helper's `at_ms`.
const NOW: u64 = 10;

fn new_tasks(state: &ClusterState, service: &str, slots: u32) -> Vec<NewTask> {
    let record = &state.services[service];
    (0..slots)
        .map(|slot| NewTask {
            service: service.into(),
            slot: Some(slot),
            node_id: None,
            template_version: record.template_version,
            spec: record.spec.task.clone(),
            attempt: 0,
        })
        .collect()
}

/// Applies the schedule, as the scheduler's loop would.
fn commit(state: &mut ClusterState, schedule: &Schedule) {
    tasks_result(
        state,
        symphony_consensus::TaskCommand::Schedule {
            placements: schedule.placements.clone(),
            pending: schedule.pending.clone(),
            at_ms: 9,
        },
    );
}

#[test]
fn replicas_spread_over_the_nodes_one_service_at_a_time() {
    let mut state = cluster(3);
    create_service(
        &mut state,
        "web",
        spec(ServiceMode::Replicated { replicas: 8 }),
    );
    let tasks = new_tasks(&state, "web", 8);
    create_tasks(&mut state, tasks);
    let schedule = decide(&state, NOW, usize::MAX);
    assert_eq!(schedule.placements.len(), 8);
    let mut per_node: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, node) in &schedule.placements {
        *per_node.entry(*node).or_default() += 1;
    }
    // Four nodes (the manager takes tasks too), eight tasks: two each.
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), [2, 2, 2, 2]);
    commit(&mut state, &schedule);
    assert!(
        decide(&state, NOW, usize::MAX).is_empty(),
        "nothing left to do"
    );

    // A second service goes first to the nodes with the fewest tasks overall.
    apply(
        &mut state,
        symphony_consensus::Command::Node(Box::new(NodeCommand::Remove { node_id: 12 })),
    );
    create_service(
        &mut state,
        "api",
        spec(ServiceMode::Replicated { replicas: 1 }),
    );
    let tasks = new_tasks(&state, "api", 1);
    create_tasks(&mut state, tasks);
    let schedule = decide(&state, NOW, usize::MAX);
    assert_eq!(schedule.placements.len(), 1);
}

#[test]
fn constraints_and_reservations_are_respected_and_explained() {
    let mut state = cluster(2);
    apply(
        &mut state,
        symphony_consensus::Command::Node(Box::new(NodeCommand::Update {
            node_id: 11,
            availability: None,
            label_add: BTreeMap::from([("zone".to_string(), "b".to_string())]),
            label_rm: Vec::new(),
        })),
    );
    let mut zoned = spec(ServiceMode::Replicated { replicas: 2 });
    zoned.constraints = vec![Constraint::parse("node.labels.zone==b").unwrap()];
    create_service(&mut state, "zoned", zoned);
    let mut big = spec(ServiceMode::Replicated { replicas: 1 });
    big.task.reservations = Reservations {
        cpus_milli: 0,
        memory_bytes: 64 << 30,
    };
    create_service(&mut state, "big", big);
    let tasks = new_tasks(&state, "zoned", 2);
    create_tasks(&mut state, tasks);
    let tasks = new_tasks(&state, "big", 1);
    let big_id = create_tasks(&mut state, tasks)[0];

    let schedule = decide(&state, NOW, usize::MAX);
    assert!(schedule.placements.iter().all(|(_, node)| *node == 11));
    assert_eq!(schedule.placements.len(), 2);
    let (id, reason) = &schedule.pending[0];
    assert_eq!(*id, big_id);
    assert_eq!(
        reason,
        "no node takes it (of 3): memory on 3 (needs 64 GiB memory, 8 GiB unreserved of 8 GiB)"
    );
    commit(&mut state, &schedule);
    assert_eq!(state.tasks[&big_id].state, TaskState::Pending);
    // The same reason is not proposed again.
    assert!(decide(&state, NOW, usize::MAX).is_empty());

    // Explain: every node, every filter it fails.
    let verdicts = explain(&state, &state.tasks[&big_id]);
    assert_eq!(verdicts.len(), 3);
    assert!(verdicts.iter().all(|verdict| verdict.failures.len() == 1));
    assert!(
        verdicts
            .iter()
            .all(|verdict| verdict.failures[0].filter == "memory")
    );
}

#[test]
fn drained_and_paused_nodes_take_no_new_tasks() {
    let mut state = cluster(2);
    set_availability(&mut state, MANAGER, Availability::Drain);
    set_availability(&mut state, 10, Availability::Pause);
    create_service(
        &mut state,
        "web",
        spec(ServiceMode::Replicated { replicas: 3 }),
    );
    let tasks = new_tasks(&state, "web", 3);
    create_tasks(&mut state, tasks);
    let schedule = decide(&state, NOW, usize::MAX);
    assert_eq!(schedule.placements.len(), 3);
    assert!(schedule.placements.iter().all(|(_, node)| *node == 11));

    set_availability(&mut state, 11, Availability::Drain);
    let tasks = new_tasks(&state, "web", 1);
    let id = create_tasks(&mut state, tasks)[0];
    let schedule = decide(&state, NOW, usize::MAX);
    let reason = schedule
        .pending
        .iter()
        .find(|(task, _)| *task == id)
        .map(|(_, reason)| reason.as_str())
        .unwrap();
    assert!(reason.contains("availability on 3"), "{reason}");
    assert!(reason.contains("draining"), "{reason}");
}

#[test]
fn a_limit_bounds_one_decision_and_reservations_fill_nodes() {
    let mut state = cluster(1);
    let mut heavy = spec(ServiceMode::Replicated { replicas: 5 });
    heavy.task.reservations = Reservations {
        cpus_milli: 1500,
        memory_bytes: 0,
    };
    create_service(&mut state, "heavy", heavy);
    let tasks = new_tasks(&state, "heavy", 5);
    create_tasks(&mut state, tasks);
    assert_eq!(decide(&state, NOW, 1).placements.len(), 1);
    // Two nodes of 4 CPUs take two tasks of 1.5 CPUs each; the fifth waits.
    let schedule = decide(&state, NOW, usize::MAX);
    assert_eq!(schedule.placements.len(), 4);
    assert_eq!(schedule.pending.len(), 1);
    assert!(
        schedule.pending[0].1.contains("cpu on 2"),
        "{}",
        schedule.pending[0].1
    );
    place(&mut state, schedule.placements.clone());
    // A task placed and running keeps its reservation.
    let explained = explain(&state, &state.tasks[&5]);
    assert!(
        explained
            .iter()
            .all(|verdict| verdict.failures[0].filter == "cpu")
    );
}

#[test]
fn a_task_fixed_to_a_node_goes_there_or_says_why_not() {
    let mut state = cluster(1);
    create_service(&mut state, "probe", spec(ServiceMode::Global));
    let record = state.services["probe"].clone();
    let fixed = |node| NewTask {
        service: "probe".into(),
        slot: None,
        node_id: Some(node),
        template_version: 1,
        spec: record.spec.task.clone(),
        attempt: 0,
    };
    create_tasks(&mut state, vec![fixed(10), fixed(MANAGER)]);
    set_availability(&mut state, MANAGER, Availability::Pause);
    let schedule = decide(&state, NOW, usize::MAX);
    assert_eq!(schedule.placements, [(1, 10)]);
    assert_eq!(schedule.pending.len(), 1);
    assert!(schedule.pending[0].1.contains("paused"));
}

/// A web service of one replica, placed, whose task `outcome` ended on its node `times` times
/// (each ending followed by a replacement, placed on the same node as the first); then one more
/// replacement waiting. Returns the node the tasks ran on.
fn ended_on_one_node(state: &mut ClusterState, outcome: TaskState, times: u32) -> u64 {
    create_service(state, "web", spec(ServiceMode::Replicated { replicas: 1 }));
    let mut node = None;
    for attempt in 0..=times {
        let mut tasks = new_tasks(state, "web", 1);
        tasks[0].attempt = attempt;
        let id = create_tasks(state, tasks)[0];
        if attempt == times {
            return node.unwrap();
        }
        let target = *node.get_or_insert_with(|| decide(state, NOW, usize::MAX).placements[0].1);
        place(state, vec![(id, target)]);
        report(state, id, outcome, Some(1));
    }
    unreachable!()
}

#[test]
fn a_replacement_avoids_the_node_that_rejected_its_predecessor() {
    let mut state = cluster(3);
    let rejecting = ended_on_one_node(&mut state, TaskState::Rejected, 1);
    // Every node is empty again, and the rejecting node would win the tie on its id alone: it
    // is passed over, within the window.
    let schedule = decide(&state, NOW, usize::MAX);
    assert_eq!(schedule.placements.len(), 1);
    assert_ne!(schedule.placements[0].1, rejecting, "{schedule:?}");

    // After the window, it ranks as any other node again: the spread's choice over empty
    // nodes, as for the first task.
    let later = decide(&state, 7 + FAILURE_WINDOW_MS + 1, usize::MAX);
    assert_eq!(later.placements[0].1, rejecting, "{later:?}");
}

#[test]
fn a_node_that_rejected_a_task_still_takes_it_when_no_other_can() {
    let mut state = cluster(1);
    let rejecting = ended_on_one_node(&mut state, TaskState::Rejected, 1);
    // Two nodes (the manager takes tasks too): drain the other, and the rejecting one is the
    // only node left.
    let others: Vec<u64> = state
        .nodes
        .keys()
        .copied()
        .filter(|id| *id != rejecting)
        .collect();
    assert_eq!(others.len(), 1);
    set_availability(&mut state, others[0], Availability::Drain);
    let schedule = decide(&state, NOW, usize::MAX);
    assert_eq!(schedule.placements.len(), 1);
    assert_eq!(schedule.placements[0].1, rejecting);
}

#[test]
fn failures_count_against_a_node_from_the_third_in_the_window() {
    let mut twice = cluster(3);
    let node = ended_on_one_node(&mut twice, TaskState::Failed, FAILURES_TO_AVOID - 1);
    // Two failures: a crash is the task's as often as the node's; the spread decides, and
    // picks that node again (every node is empty, as for the first task).
    let schedule = decide(&twice, NOW, usize::MAX);
    assert_eq!(schedule.placements[0].1, node, "{schedule:?}");

    let mut thrice = cluster(3);
    let node_thrice = ended_on_one_node(&mut thrice, TaskState::Failed, FAILURES_TO_AVOID);
    assert_eq!(node, node_thrice);
    let schedule = decide(&thrice, NOW, usize::MAX);
    assert_eq!(schedule.placements.len(), 1);
    assert_ne!(schedule.placements[0].1, node_thrice, "{schedule:?}");
    // Another service's tasks are not affected by web's failures.
    let avoid = Avoid::of(&thrice, NOW);
    assert!(avoid.avoids("web", node_thrice));
    assert!(!avoid.avoids("api", node_thrice));
}
