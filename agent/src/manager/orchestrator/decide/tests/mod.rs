//! The orchestrator's decisions, tested without I/O: a service's life (`lifecycle`), rolling
//! updates (`updates`) and rebalancing (`rebalance`), over the helpers here.

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

// Helpers of the rolling updates (and the rebalances, which are updates too).

/// Applies the decision's service commands too.
fn commit_all(state: &mut ClusterState, decision: &Decision) -> Vec<u64> {
    let created = commit(state, decision);
    for command in &decision.services {
        apply(
            state,
            symphony_consensus::Command::Service(Box::new(command.clone())),
        );
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
        symphony_consensus::Command::Service(Box::new(ServiceCommand::Update {
            name: name.into(),
            patch,
            at_ms: 1,
        })),
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

mod lifecycle;
mod rebalance;
mod updates;
