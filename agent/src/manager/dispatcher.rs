//! The dispatcher: the managers' side of running tasks on nodes.
//!
//! Any manager serves a node's assignments from its own replica: the whole set of tasks placed
//! on the node first, then what changes, numbered, and a heartbeat when nothing does (which
//! also tells the node whether the cluster thinks it is ready). A manager's own executor reads
//! the same stream without the network. What the node reports about its tasks goes to the
//! leader, which records a node's batch as one Raft entry; the log itself checks that a node
//! reports only on its own tasks and only forward.

use std::collections::BTreeMap;
use std::time::Duration;

use symphony_consensus::state::{nodes, tasks};
use symphony_consensus::{
    ClusterState, Command, Consensus, DesiredState, NodeStatus, TaskCommand, TaskReport, TaskState,
};
use symphony_ctl::proto::CtlError;
use tokio::sync::mpsc;

use super::propose::propose;
use crate::remote::proto::{Assignment, AssignmentUpdate};

/// How often a quiet assignments stream says it is still there.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Updates buffered for a slow node before the stream waits for it.
const BUFFER: usize = 64;

/// The tasks placed on `node_id` that the node must act on: every one it should run, and every
/// one it should stop that has not stopped yet.
fn assigned(state: &ClusterState, node_id: u64) -> BTreeMap<u64, Assignment> {
    state
        .tasks
        .on_node(node_id)
        .filter(|task| task.state >= TaskState::Assigned && !task.state.is_terminal())
        .map(|task| {
            (
                task.id,
                Assignment {
                    task_id: task.id,
                    service: task.service.clone(),
                    slot: task.slot,
                    spec: task.spec.clone(),
                    desired: task.desired,
                },
            )
        })
        .collect()
}

fn node_ready(state: &ClusterState, node_id: u64) -> bool {
    state
        .nodes
        .get(&node_id)
        .is_some_and(|node| node.status == NodeStatus::Ready)
}

/// Streams `node_id`'s assignments from `consensus`'s replica until the receiver is dropped.
pub fn assignments(consensus: Consensus, node_id: u64) -> mpsc::Receiver<AssignmentUpdate> {
    let (updates, receiver) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let mut changes = consensus.watch_tables(&[tasks::TABLE, nodes::TABLE]);
        let (mut sent, mut seen, mut ready) = consensus.read_stale(|state| {
            (
                assigned(state, node_id),
                state.tasks.node_changes(node_id),
                node_ready(state, node_id),
            )
        });
        let full = AssignmentUpdate::Full {
            seq: 0,
            tasks: sent.values().cloned().collect(),
            node_ready: ready,
        };
        if updates.send(full).await.is_err() {
            return;
        }
        let mut seq = 0;
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.reset();
        loop {
            tokio::select! {
                () = updates.closed() => return,
                alive = changes.changed() => if !alive { return },
                _ = heartbeat.tick() => {
                    if updates.send(AssignmentUpdate::Heartbeat { seq, node_ready: ready }).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
            let now = consensus.read_stale(|state| {
                let count = state.tasks.node_changes(node_id);
                let now_ready = node_ready(state, node_id);
                let current = (count != seen).then(|| assigned(state, node_id));
                (count, now_ready, current)
            });
            let (count, now_ready, current) = now;
            seen = count;
            let mut changed = Vec::new();
            let mut removed = Vec::new();
            if let Some(current) = current {
                for (id, assignment) in &current {
                    if sent.get(id) != Some(assignment) {
                        changed.push(assignment.clone());
                    }
                }
                removed = sent
                    .keys()
                    .filter(|id| !current.contains_key(id))
                    .copied()
                    .collect();
                sent = current;
            }
            if changed.is_empty() && removed.is_empty() && now_ready == ready {
                continue;
            }
            ready = now_ready;
            seq += 1;
            let increment = AssignmentUpdate::Increment {
                seq,
                changed,
                removed,
                node_ready: ready,
            };
            if updates.send(increment).await.is_err() {
                return;
            }
            heartbeat.reset();
        }
    });
    receiver
}

/// On the leader: records what `node_id` reports about its tasks.
pub async fn record_reports(
    consensus: &Consensus,
    node_id: u64,
    reports: Vec<TaskReport>,
) -> Result<(), CtlError> {
    if reports.is_empty() {
        return Ok(());
    }
    let command = Command::Task(TaskCommand::Report {
        node_id,
        reports,
        at_ms: crate::now_ms(),
    });
    propose(consensus, command).await.map(drop)
}

/// Whether an assignment asks for its task to run.
pub fn wants_running(assignment: &Assignment) -> bool {
    assignment.desired == DesiredState::Running
}
