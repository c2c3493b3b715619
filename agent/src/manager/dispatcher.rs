//! The dispatcher: the managers' side of running tasks on nodes.
//!
//! Any manager serves a node's assignments from its own replica: the whole set of tasks placed
//! on the node first, then what changes, numbered, and a heartbeat when nothing does (which
//! also tells the node whether the cluster thinks it is ready). A manager vouches for the node
//! (`node_ready`) only while its own Raft node is in touch with a quorum: a replica cut off
//! from the cluster, or one whose Raft node has stopped, is stale, and its word must not keep a
//! worker's isolation lease alive. A stream ends when the Raft node it reads has stopped (a
//! failed store; the supervisor starts a new one from the file): the node then asks a manager
//! whose replica moves. A manager's own executor reads the same stream without the network. What the node reports about its tasks goes to the
//! leader, which records a node's batch as one Raft entry; the log itself checks that a node
//! reports only on its own tasks and only forward.

use std::collections::BTreeMap;
use std::time::Duration;

use symphony_consensus::state::{cluster, nodes};
use symphony_consensus::{
    ClusterState, Command, Consensus, DesiredState, NodeStatus, TaskCommand, TaskReport, TaskState,
};
use symphony_ctl::proto::CtlError;
use tokio::sync::mpsc;

use super::propose::propose;
use crate::remote::proto::{Assignment, AssignmentUpdate};

/// How often a quiet assignments stream says it is still there, at most.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// ... and at least: a shorter one would only cost.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// How often a stream looks whether the Raft node it reads has stopped.
const STOPPED_CHECK: Duration = Duration::from_millis(250);
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

/// How often a quiet stream beats for nodes whose isolation lease is `lease`: several times
/// within the lease, so that one late beat does not make a node think itself cut off.
pub fn heartbeat_every(lease: Duration) -> Duration {
    (lease / 4).clamp(MIN_HEARTBEAT, HEARTBEAT)
}

/// How often a stream beats for a node that asked for `asked` (its own lease's
/// [`heartbeat_every`]; nodes may run with other leases than this manager), or by this
/// manager's `lease` for a node that did not say.
pub fn heartbeat_for(asked: Option<Duration>, lease: Duration) -> Duration {
    asked.map_or_else(
        || heartbeat_every(lease),
        |asked| asked.clamp(MIN_HEARTBEAT, HEARTBEAT),
    )
}

/// Whether an update vouches for the node: the replica counts it ready, and the replica is
/// current (its Raft node is in touch with a quorum).
fn vouches(node_ready: bool, in_touch: bool) -> bool {
    node_ready && in_touch
}

fn node_ready(state: &ClusterState, node_id: u64) -> bool {
    state
        .nodes
        .get(&node_id)
        .is_some_and(|node| node.status == NodeStatus::Ready)
}

/// Streams `node_id`'s assignments from `consensus`'s replica until the receiver is dropped or
/// the Raft node stops; a quiet stream beats every `heartbeat`.
pub fn assignments(
    consensus: Consensus,
    node_id: u64,
    heartbeat: Duration,
) -> mpsc::Receiver<AssignmentUpdate> {
    let (updates, receiver) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        // Woken by changes to this node's assignments and to the nodes table (whether it is
        // ready), not by every task of every other node.
        let mut assignment_changes = consensus.watch_assignments(node_id);
        let mut changes = consensus.watch_tables(&[nodes::TABLE]);
        let mut cluster_changes = consensus.watch_tables(&[cluster::TABLE]);
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
            node_ready: vouches(ready, consensus.in_touch_with_quorum()),
        };
        if updates.send(full).await.is_err() {
            return;
        }
        let mut trusted = trust(&consensus);
        if let Some(update) = trusted.clone()
            && updates.send(update).await.is_err()
        {
            return;
        }
        let mut seq = 0;
        let mut beat = tokio::time::interval(heartbeat);
        beat.reset();
        let mut stopped_check = tokio::time::interval(STOPPED_CHECK);
        stopped_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = updates.closed() => return,
                alive = changes.changed() => if !alive { return },
                changed = assignment_changes.changed() => if changed.is_err() { return },
                alive = cluster_changes.changed() => {
                    if !alive {
                        return;
                    }
                    let now = trust(&consensus);
                    if now.is_some() && now != trusted {
                        trusted = now;
                        if let Some(update) = trusted.clone()
                            && updates.send(update).await.is_err()
                        {
                            return;
                        }
                    }
                }
                _ = stopped_check.tick() => {
                    if consensus.has_stopped() {
                        tracing::debug!(node_id, "the Raft node stopped; ending the node's assignments stream");
                        return;
                    }
                    continue;
                }
                _ = beat.tick() => {
                    let node_ready = vouches(ready, consensus.in_touch_with_quorum());
                    if updates.send(AssignmentUpdate::Heartbeat { seq, node_ready }).await.is_err() {
                        return;
                    }
                    continue;
                }
            }
            if consensus.has_stopped() {
                return;
            }
            let now = consensus.read_stale(|state| {
                let removed = state
                    .cluster
                    .as_ref()
                    .is_some_and(|cluster| cluster.is_removed(node_id));
                let count = state.tasks.node_changes(node_id);
                let now_ready = node_ready(state, node_id);
                let current = (count != seen).then(|| assigned(state, node_id));
                (removed, count, now_ready, current)
            });
            let (removed, count, now_ready, current) = now;
            if removed {
                // `node rm`: the node's open session ends with its certificate's use.
                tracing::info!(
                    node_id,
                    "the node was removed; ending its assignments stream"
                );
                return;
            }
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
                node_ready: vouches(ready, consensus.in_touch_with_quorum()),
            };
            if updates.send(increment).await.is_err() {
                return;
            }
            beat.reset();
        }
    });
    receiver
}

/// What a worker's TLS takes from the cluster, as this replica holds it: the CA bundle the
/// cluster trusts and the removed nodes.
fn trust(consensus: &Consensus) -> Option<AssignmentUpdate> {
    consensus.read_stale(|state| {
        let cluster = state.cluster.as_ref()?;
        Some(AssignmentUpdate::Trust {
            bundle: cluster.trust_bundle()?.pem,
            removed: cluster.removed_nodes.clone(),
        })
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_stream_beats_several_times_within_the_isolation_lease() {
        // The chaos runs' lease, and the default.
        assert_eq!(
            heartbeat_every(Duration::from_secs(3)),
            Duration::from_millis(750)
        );
        assert_eq!(heartbeat_every(Duration::from_secs(10)), HEARTBEAT);
        assert_eq!(heartbeat_every(Duration::from_secs(3600)), HEARTBEAT);
        assert_eq!(heartbeat_every(Duration::ZERO), MIN_HEARTBEAT);
    }

    #[test]
    fn a_stream_beats_as_often_as_its_node_asks_within_bounds() {
        let lease = Duration::from_secs(10);
        assert_eq!(heartbeat_for(None, lease), HEARTBEAT);
        let asked = Duration::from_millis(750);
        assert_eq!(heartbeat_for(Some(asked), lease), asked);
        assert_eq!(
            heartbeat_for(Some(Duration::from_secs(60)), lease),
            HEARTBEAT
        );
        assert_eq!(heartbeat_for(Some(Duration::ZERO), lease), MIN_HEARTBEAT);
    }

    #[test]
    fn only_a_replica_in_touch_with_a_quorum_vouches_for_a_ready_node() {
        assert!(vouches(true, true));
        // Cut off, or its Raft node stopped: what it says of the node may be long stale.
        assert!(!vouches(true, false));
        assert!(!vouches(false, true));
        assert!(!vouches(false, false));
    }
}
