//! The board: what the nemesis, the clients and the worker sampler share while a run goes on.
//!
//! The nemesis is the only one that changes the cluster, so it is the one that knows which
//! managers clients should not bother with (killed, stopped, left the cluster: their sockets
//! refuse at once, and spreading load over them would only measure that) and which workers are
//! under a fault. Everything else reads. Paused and cut-off managers stay on the clients' list on
//! purpose: requests to a stale leader are where linearizability bugs live.
//!
//! Times are nanoseconds on the history's clock ([`HistoryRecorder::now_ns`]), so faults, worker
//! samples and operations can be lined up afterwards.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use symphony_ctl::proto::Role;

use super::history::HistoryRecorder;
use super::workers::{WorkerReport, WorkerViolation, WorkerWatch};
use crate::lab::NodeRecord;

/// One node as the run's tasks need it.
#[derive(Debug, Clone)]
pub struct BoardNode {
    pub name: String,
    pub role: Role,
    pub socket: PathBuf,
    pub node_id: Option<u64>,
}

#[derive(Debug)]
struct State {
    /// Per node (same order as `nodes`): whether clients may send to it.
    serving: Vec<bool>,
    workers: WorkerWatch,
    /// The leader (node id) the last answered sample named, and how many times that changed.
    leader: Option<u64>,
    leader_changes: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Board {
    clock: HistoryRecorder,
    nodes: Vec<BoardNode>,
    state: Mutex<State>,
}

impl Board {
    /// A board for the lab's nodes, every one serving and healthy.
    pub fn new(clock: HistoryRecorder, records: &[NodeRecord]) -> Board {
        let nodes: Vec<BoardNode> = records
            .iter()
            .map(|record| BoardNode {
                name: record.name.clone(),
                role: record.role,
                socket: record.socket_path(),
                node_id: record.node_id,
            })
            .collect();
        let workers = WorkerWatch::new(
            nodes
                .iter()
                .filter(|node| node.role == Role::Worker)
                .map(|node| node.name.clone()),
        );
        Board {
            clock,
            state: Mutex::new(State {
                serving: vec![true; nodes.len()],
                workers,
                leader: None,
                leader_changes: 0,
            }),
            nodes,
        }
    }

    /// Now, on the history's clock.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    pub fn nodes(&self) -> &[BoardNode] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|node| node.name == name)
    }

    /// The managers clients may send to now: `(index, socket)`.
    pub fn serving_managers(&self) -> Vec<(usize, PathBuf)> {
        let state = self.lock();
        self.nodes
            .iter()
            .enumerate()
            .filter(|(index, node)| {
                node.role == Role::Manager && state.serving.get(*index).copied().unwrap_or(false)
            })
            .map(|(index, node)| (index, node.socket.clone()))
            .collect()
    }

    /// Marks node `name` as one clients may (or may not) send to.
    pub fn set_serving(&self, name: &str, serving: bool) {
        if let Some(index) = self.index_of(name)
            && let Some(slot) = self.lock().serving.get_mut(index)
        {
            *slot = serving;
        }
    }

    /// A fault on `name` begins (ignored unless it is a worker).
    pub fn fault_begins(&self, name: &str, fault: &str) {
        let now = self.now_ns();
        self.lock().workers.fault_begins(name, fault, now);
    }

    /// The fault on `name` ended.
    pub fn fault_ends(&self, name: &str) {
        let now = self.now_ns();
        self.lock().workers.fault_ends(name, now);
    }

    /// Whether `name` is a worker the check watches.
    pub fn is_worker(&self, name: &str) -> bool {
        self.lock().workers.watches(name)
    }

    pub fn worker_down_seen(&self, name: &str) -> Option<u64> {
        self.lock().workers.down_seen(name)
    }

    pub fn worker_ready_seen(&self, name: &str) -> bool {
        self.lock().workers.ready_seen(name)
    }

    /// How many times the leader named by the samples changed so far.
    pub fn leader_changes(&self) -> u64 {
        self.lock().leader_changes
    }

    /// Feeds one `node ls` sample (by node id) to the worker check; `None`: no answer.
    /// `leader` is the node the sample names as the leader.
    pub fn observe(
        &self,
        listing: Option<&[(u64, String)]>,
        leader: Option<u64>,
        invoke_ns: u64,
        complete_ns: u64,
    ) {
        let mut state = self.lock();
        state.workers.sampled(listing.is_some());
        if leader.is_some() && leader != state.leader {
            if state.leader.is_some() {
                state.leader_changes += 1;
            }
            state.leader = leader;
        }
        for (node_id, status) in listing.unwrap_or_default() {
            if let Some(node) = self
                .nodes
                .iter()
                .find(|node| node.node_id == Some(*node_id))
            {
                state
                    .workers
                    .observe(&node.name, status, invoke_ns, complete_ns);
            }
        }
    }

    pub fn worker_violation(&self, violation: WorkerViolation) {
        self.lock().workers.violation(violation);
    }

    pub fn worker_inconclusive(&self, note: String) {
        self.lock().workers.inconclusive(note);
    }

    pub fn worker_report(&self) -> WorkerReport {
        self.lock().workers.report()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section is a single update, so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
