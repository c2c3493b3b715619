//! The interface between the lab (which forms clusters and keeps the state file) and the thing
//! that actually runs nodes and cuts links between them.
//!
//! A backend is deliberately small and synchronous: start one node detached, send it the
//! classic job-control faults (SIGKILL, SIGSTOP, SIGCONT), say whether it runs, install or
//! remove a partition, tear everything down. Everything cluster-shaped — waiting for a node to
//! answer, `init`, joins, leaders — happens over the node's control socket in the lab itself,
//! so it is the same for every backend. The `local` backend runs agents as processes on
//! loopback addresses; the `docker` backend runs one container per node with the node's dir
//! bind-mounted from the state dir (so the control socket is reachable the same way) and cuts
//! links on the containers' bridge.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::LabError;
use super::local::NodeCgroup;
use super::partition::Cut;
use super::state::{LabState, NodeRecord};

/// Which backend runs a testnet's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Agents as processes of this machine, each on its own loopback address.
    Local,
    /// One container per node, on a private bridge network of the testnet's own.
    Docker,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Docker => "docker",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a backend finds a node it started again, from another process: recorded in the state
/// file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NodeHandle {
    /// A process: its pid and its start time (in clock ticks since boot, from
    /// `/proc/PID/stat`), so that a recycled pid is never mistaken for the node.
    Process {
        pid: u32,
        start_ticks: u64,
        /// The node's own cgroup, when it has one (what partitions match on).
        cgroup: Option<NodeCgroup>,
    },
    /// A container, by id.
    Container { id: String },
}

impl NodeHandle {
    pub fn pid(&self) -> Option<u32> {
        match self {
            NodeHandle::Process { pid, .. } => Some(*pid),
            NodeHandle::Container { .. } => None,
        }
    }

    pub fn container(&self) -> Option<&str> {
        match self {
            NodeHandle::Process { .. } => None,
            NodeHandle::Container { id } => Some(id),
        }
    }
}

impl fmt::Display for NodeHandle {
    /// `pid 4242` or `container 0123456789ab`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeHandle::Process { pid, .. } => write!(f, "pid {pid}"),
            NodeHandle::Container { id } => write!(f, "container {id}"),
        }
    }
}

/// What the backend sees of a node right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessState {
    Running,
    /// Stopped by SIGSTOP (or frozen): alive, but answers nothing.
    Paused,
    /// Not running: killed, crashed, or never started.
    Gone,
}

/// Runs the nodes of one testnet. Every method may be called from a process other than the one
/// that started the nodes: all a backend needs is in the [`LabState`] and its records.
pub trait Backend: fmt::Debug + Send + Sync {
    fn kind(&self) -> BackendKind;

    /// Gets a new testnet ready before its first node starts: a backend whose nodes do not
    /// live on the planned loopback addresses (containers) creates their network here and
    /// gives each node its address. The lab saves the state right after.
    fn prepare(&self, _lab: &mut LabState) -> Result<(), LabError> {
        Ok(())
    }

    /// Gives a node added after `prepare` (see [`crate::lab::Lab::add_nodes`]) its place, as
    /// `prepare` did for the first ones; `index` is where it goes in `lab.nodes`.
    fn place(
        &self,
        _lab: &LabState,
        _index: usize,
        _node: &mut NodeRecord,
    ) -> Result<(), LabError> {
        Ok(())
    }

    /// Starts `node` on its config dir. Does not wait for the node to answer. A detached
    /// testnet's node outlives the calling process and a Ctrl-C in its terminal (see
    /// [`crate::lab::Lifetime`]).
    fn start(&self, lab: &LabState, node: &NodeRecord) -> Result<NodeHandle, LabError>;

    /// Whether the node runs, is paused, or is gone.
    fn probe(&self, node: &NodeRecord) -> ProcessState;

    /// SIGKILL: the node dies at once, without flushing or leaving. Returns when it is gone.
    fn kill(&self, node: &NodeRecord) -> Result<(), LabError>;

    /// SIGTERM: the agent leaves gracefully and exits. Does not wait for it.
    fn terminate(&self, node: &NodeRecord) -> Result<(), LabError>;

    /// SIGSTOP: the node stops answering anything, as a hung machine would.
    fn pause(&self, node: &NodeRecord) -> Result<(), LabError>;

    /// SIGCONT: a paused node carries on.
    fn resume(&self, node: &NodeRecord) -> Result<(), LabError>;

    /// Kill (if it runs) then start again on the same config dir: the same node, restarted.
    fn restart(&self, lab: &LabState, node: &NodeRecord) -> Result<NodeHandle, LabError> {
        if self.probe(node) != ProcessState::Gone {
            self.kill(node)?;
        }
        self.start(lab, node)
    }

    /// Drops all traffic of each cut, replacing any earlier partition (one call is one
    /// topology).
    fn partition(&self, lab: &LabState, cuts: &[Cut]) -> Result<(), LabError>;

    /// Removes every cut.
    fn heal(&self, lab: &LabState) -> Result<(), LabError>;

    /// Kills every node, heals, and removes whatever the backend created outside the state dir
    /// (cgroups, containers, firewall tables). The lab removes the state dir afterwards.
    fn down(&self, lab: &LabState) -> Result<(), LabError>;
}
