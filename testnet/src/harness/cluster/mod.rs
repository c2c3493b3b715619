//! [`Cluster`]: the cluster the end-to-end tests and the benchmarks drive — managers (and, for a
//! fleet, workers) formed the way an operator would, through their control sockets, with the
//! waits, faults and writes those tests and benchmarks need.
//!
//! **One cluster model.** A `Cluster` is a thin layer over a [`Lab`], the same model `testnet
//! up` and `testnet chaos` run on: the lab plans the nodes, runs them on its backend (local
//! processes or docker containers), restarts and kills them and keeps their records; the
//! cluster only adds what tests and benchmarks ask of a testnet and an operator does not —
//! which nodes it made members, writes that retry through any member and are remembered
//! ([`Acknowledged`]), and waits on the members' agreement. So every benchmark runs on either
//! backend (`testnet bench kv --backend docker`), and a fault means the same in a test, a
//! benchmark and a chaos run. The other way round (benchmarks driving a bare `Lab`) would have
//! put these waits and bookkeeping into each benchmark, or into the lab, whose commands do not
//! need them.
//!
//! What differs from `testnet up` is how the lab is made: in a temp dir (or a given one), on
//! the local backend every node on 127.0.0.1 on OS-given ports ([`Addressing::OsPorts`]: tests
//! run in parallel and a fleet can have hundreds of nodes), the nodes in this process's group
//! ([`Lifetime::Owned`]), not formed: the caller forms them (see [`form`]). Dropping the
//! cluster stops every node (and on a panic prints the end of each node's log).
//!
//! Nodes are numbered from 0 in the order they were started, as in the lab's state; node 0 is
//! `manager-1`. The cluster remembers which nodes it made members (by bootstrap or join) and
//! which of those it stopped; [`Cluster::leader`], [`Cluster::put_any`] and the other waits
//! only ask members that run. After a test removes a node (`node rm`, `leave`, a recovery that
//! drops the others) it tells the cluster with [`Cluster::set_member`].
//!
//! - [`form`]: static and dynamic bootstrap, joins;
//! - [`wait`]: the leader the members agree on, membership, catch-up, replication;
//! - [`write`]: writes through any member or one, and the check that none was lost.

mod form;
mod wait;
mod write;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use symphony_ctl::Client;
use symphony_ctl::proto::{Role, StatusInfo};
use tempfile::TempDir;

use super::{Acknowledged, AgentOptions, HarnessError, log};
use crate::lab::{
    Addressing, BackendKind, Lab, LabError, Lifetime, NodeRecord, ProcessState, Subnet, UpOptions,
};

pub use form::expected_voters;

/// How many lines of each node's log a panicking test shows.
const LOG_TAIL_LINES: usize = 40;

/// How a cluster's nodes are started and how long its waits may take.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Which backend runs the nodes.
    pub backend: BackendKind,
    /// The options of every node. `work_dir`, if given, is the lab's dir (kept afterwards, the
    /// nodes under `nodes/<name>`); otherwise a temp dir removed on drop. `ready_timeout` is
    /// how long a node may take to answer after a start.
    pub agent: AgentOptions,
    /// How long an election, a membership change or a catch-up may take.
    pub timeout: Duration,
    /// How long [`Cluster::put_any`] keeps retrying a write.
    pub write_timeout: Duration,
    /// How long one control call may take before it is abandoned and retried.
    pub attempt_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            backend: BackendKind::Local,
            agent: AgentOptions::default(),
            // Generous: debug builds, several agents and parallel tests on two cores.
            timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl ClusterOptions {
    /// Default options with these extra agent flags, e.g. `["--snapshot-interval", "50"]`.
    pub fn with_agent_args(args: &[&str]) -> ClusterOptions {
        let mut options = ClusterOptions::default();
        options.agent.extra_args = args.iter().map(|arg| (*arg).to_string()).collect();
        options
    }
}

/// What the cluster knows of a node beyond the lab's record.
#[derive(Debug, Clone, Copy, Default)]
struct Membership {
    /// Made a member by bootstrap or join, and not removed since (as far as the test said).
    member: bool,
    /// Not stopped through the cluster.
    running: bool,
    /// Where the current run's output starts in the node's log.
    run_log_offset: u64,
}

/// Where the lab lives: a temp dir that goes with the cluster, or a dir that stays.
#[derive(Debug)]
enum LabDir {
    Temp(TempDir),
    Given(PathBuf),
}

/// Nodes of one testnet, formed by the test or benchmark. Dropping it stops them all.
#[derive(Debug)]
pub struct Cluster {
    lab: Lab,
    nodes: Vec<Membership>,
    options: ClusterOptions,
    acknowledged: Acknowledged,
    /// Where the next [`Cluster::put_any`] starts, so that writes spread over the members.
    next_target: AtomicUsize,
    /// Declared last: dropped after the nodes are stopped.
    dir: LabDir,
}

impl Cluster {
    /// Starts `count` uninitialised managers with default options.
    pub async fn start(count: usize) -> Result<Cluster, HarnessError> {
        Cluster::start_with(count, ClusterOptions::default()).await
    }

    /// Starts `count` uninitialised managers (all at once) and waits until each answers.
    pub async fn start_with(
        count: usize,
        options: ClusterOptions,
    ) -> Result<Cluster, HarnessError> {
        let dir = match &options.agent.work_dir {
            Some(dir) => LabDir::Given(dir.clone()),
            None => LabDir::Temp(
                tempfile::Builder::new()
                    .prefix("symphony-testnet-")
                    .tempdir()
                    .map_err(HarnessError::io("cannot create a temp dir for a cluster"))?,
            ),
        };
        let lab_dir = match &dir {
            LabDir::Temp(temp) => temp.path().to_path_buf(),
            LabDir::Given(dir) => dir.clone(),
        };
        let up = UpOptions {
            dir: lab_dir.clone(),
            managers: count,
            workers: 0,
            backend: options.backend,
            agent_bin: options.agent.bin.clone(),
            // The docker backend puts its nodes on its own network whatever this says.
            subnet: Subnet::DEFAULT,
            addressing: Addressing::OsPorts,
            lifetime: Lifetime::Owned,
            log_level: options.agent.log_level.clone(),
            agent_args: options.agent.extra_args.clone(),
            start_timeout: options.agent.ready_timeout,
            form_timeout: options.timeout,
            disk_mb: None,
        };
        let lab = match Lab::create(up, &mut |_: &str| {}).await {
            Ok(lab) => lab,
            // Another testnet's dir: not ours to stop.
            Err(error @ LabError::AlreadyUp { .. }) => return Err(error.into()),
            Err(error) => {
                // `testnet up` leaves the nodes that started for inspection; an owned
                // cluster that failed to start takes them down (their logs are in the error).
                if let Ok(lab) = Lab::open(&lab_dir) {
                    let _ = lab.halt();
                    if let LabDir::Given(_) = &dir {
                        let _ = std::fs::remove_file(lab.state().path());
                    }
                }
                return Err(error.into());
            }
        };
        let nodes = vec![
            Membership {
                running: true,
                ..Membership::default()
            };
            lab.state().nodes.len()
        ];
        Ok(Cluster {
            lab,
            nodes,
            options,
            acknowledged: Acknowledged::new(),
            next_target: AtomicUsize::new(0),
            dir,
        })
    }

    /// Starts `count` more nodes of `role`, uninitialised, without waiting for them (see
    /// [`Cluster::wait_answers`]). Returns their indexes.
    pub fn spawn_nodes(
        &mut self,
        role: Role,
        count: usize,
    ) -> Result<std::ops::Range<usize>, HarnessError> {
        let added = self.lab.add_nodes(role, count);
        // The ones that did start run, even if a later one failed.
        while self.nodes.len() < self.lab.state().nodes.len() {
            let index = self.nodes.len();
            let started = self.lab.state().nodes[index].handle.is_some();
            self.nodes.push(Membership {
                running: started,
                ..Membership::default()
            });
        }
        Ok(added?)
    }

    /// Waits until the started node `index` answers on its control socket (failing early,
    /// with its log, if it exits); returns its status.
    pub async fn wait_answers(&mut self, index: usize) -> Result<StatusInfo, HarnessError> {
        self.record(index)?;
        Ok(self.lab.wait_answers(index).await?)
    }

    /// Starts one more uninitialised manager, waits until it answers, and returns its index.
    pub async fn add_node(&mut self) -> Result<usize, HarnessError> {
        let index = self.spawn_nodes(Role::Manager, 1)?.start;
        self.wait_answers(index).await?;
        Ok(index)
    }

    /// How many nodes were started (members or not, running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// The lab underneath, for what only it can do (status, partitions on a subnet).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The lab's record of node `index`: addresses, dirs, log, how it runs.
    pub fn record(&self, index: usize) -> Result<&NodeRecord, HarnessError> {
        self.lab
            .state()
            .nodes
            .get(index)
            .ok_or(HarnessError::NoSuchNode {
                index,
                count: self.nodes.len(),
            })
    }

    fn membership_mut(&mut self, index: usize) -> Result<&mut Membership, HarnessError> {
        let count = self.nodes.len();
        self.nodes
            .get_mut(index)
            .ok_or(HarnessError::NoSuchNode { index, count })
    }

    /// `manager-1` for node 0, and so on.
    pub fn name(&self, index: usize) -> String {
        self.record(index)
            .map_or_else(|_| format!("node {index}"), |node| node.name.clone())
    }

    /// The node id (`key.json`'s `node_id`) of node `index`: what `node ls` shows and what
    /// `node promote/demote/rm` take.
    pub fn node_id(&self, index: usize) -> Result<u64, HarnessError> {
        let node = self.record(index)?;
        node.node_id.ok_or_else(|| not_answered(node))
    }

    /// The Raft node id of node `index`: what `status` shows as leader, voters and learners.
    pub fn raft_id(&self, index: usize) -> Result<u64, HarnessError> {
        let node = self.record(index)?;
        node.raft_node_id.ok_or_else(|| not_answered(node))
    }

    pub fn index_of_raft_id(&self, raft_id: u64) -> Option<usize> {
        self.lab
            .state()
            .nodes
            .iter()
            .position(|node| node.raft_node_id == Some(raft_id))
    }

    pub fn index_of_node_id(&self, node_id: u64) -> Option<usize> {
        self.lab
            .state()
            .nodes
            .iter()
            .position(|node| node.node_id == Some(node_id))
    }

    pub fn raft_addr(&self, index: usize) -> Result<SocketAddr, HarnessError> {
        Ok(self.record(index)?.raft_addr)
    }

    pub fn remote_addr(&self, index: usize) -> Result<SocketAddr, HarnessError> {
        Ok(self.record(index)?.remote_addr)
    }

    pub fn socket_path(&self, index: usize) -> Result<PathBuf, HarnessError> {
        Ok(self.record(index)?.socket_path())
    }

    /// The process id of node `index`, on the local backend.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.record(index).ok().and_then(NodeRecord::pid)
    }

    /// What the backend sees of node `index` right now.
    pub fn process_state(&self, index: usize) -> ProcessState {
        match self.record(index) {
            Ok(node) => self.lab.probe(node),
            Err(_) => ProcessState::Gone,
        }
    }

    pub fn is_member(&self, index: usize) -> bool {
        self.nodes.get(index).is_some_and(|node| node.member)
    }

    pub fn is_running(&self, index: usize) -> bool {
        self.nodes.get(index).is_some_and(|node| node.running)
    }

    /// Tells the cluster that node `index` is (or, after `node rm`, `leave` or a recovery that
    /// dropped it, is no longer) a member of the cluster.
    pub fn set_member(&mut self, index: usize, member: bool) -> Result<(), HarnessError> {
        self.membership_mut(index)?.member = member;
        Ok(())
    }

    /// The members the cluster has not stopped, in index order.
    pub fn live_members(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|index| self.is_member(*index) && self.is_running(*index))
            .collect()
    }

    /// A new control connection to node `index`.
    pub async fn client(&self, index: usize) -> Result<Client, HarnessError> {
        Ok(Client::connect(self.socket_path(index)?).await?)
    }

    /// Node `index`'s `status`, in one call.
    pub async fn status(&self, index: usize) -> Result<StatusInfo, HarnessError> {
        let client = self.client(index).await?;
        Ok(client.status().await?)
    }

    /// Every acknowledged write made through the cluster (and whatever a caller recorded).
    pub fn acknowledged(&self) -> &Acknowledged {
        &self.acknowledged
    }

    // ----- logs -------------------------------------------------------------------------------

    /// What node `index` wrote in its current (or last) run, without earlier runs.
    pub fn run_log(&self, index: usize) -> String {
        let from = self.nodes.get(index).map_or(0, |node| node.run_log_offset);
        match self.record(index) {
            Ok(node) => log::read_from(&node.log_path, from),
            Err(error) => error.to_string(),
        }
    }

    /// The last lines of node `index`'s current run, for error messages.
    pub fn log_tail(&self, index: usize) -> String {
        log::tail(&self.run_log(index), LOG_TAIL_LINES)
    }

    // ----- faults -----------------------------------------------------------------------------

    /// SIGKILL to node `index`.
    pub fn kill9(&mut self, index: usize) -> Result<(), HarnessError> {
        let name = self.record(index)?.name.clone();
        self.membership_mut(index)?.running = false;
        self.lab.kill(&name)?;
        Ok(())
    }

    /// SIGTERM to node `index`, waiting up to `timeout` for it to stop; one that does not is
    /// killed, and that is an error.
    pub async fn terminate(&mut self, index: usize, timeout: Duration) -> Result<(), HarnessError> {
        let name = self.record(index)?.name.clone();
        self.membership_mut(index)?.running = false;
        Ok(self.lab.terminate(&name, timeout).await?)
    }

    /// Sets the extra environment node `index` gets from its next (re)start on.
    pub fn set_env(
        &mut self,
        index: usize,
        env: std::collections::BTreeMap<String, String>,
    ) -> Result<(), HarnessError> {
        let name = self.record(index)?.name.clone();
        Ok(self.lab.set_env(&name, env)?)
    }

    /// Sets the failpoints of node `index` (see [`Lab::set_failpoints`]).
    pub fn set_failpoints(&self, index: usize, spec: &str) -> Result<(), HarnessError> {
        let name = self.record(index)?.name.clone();
        Ok(self.lab.set_failpoints(&name, spec)?)
    }

    /// Starts the stopped node `index` again on its dir and addresses; waits until it answers.
    pub async fn restart(&mut self, index: usize) -> Result<StatusInfo, HarnessError> {
        let node = self.record(index)?;
        let (name, offset) = (node.name.clone(), log::len(&node.log_path));
        self.membership_mut(index)?.run_log_offset = offset;
        let status = self.lab.restart(&name).await?;
        self.membership_mut(index)?.running = true;
        Ok(status)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The dir may go with us: show a failing test what the agents said.
        if std::thread::panicking() {
            for index in 0..self.nodes.len() {
                eprintln!(
                    "--- log of {} ---\n{}\n--- end of its log ---",
                    self.name(index),
                    self.log_tail(index)
                );
            }
        }
        if let Err(error) = self.lab.halt() {
            eprintln!("warning: cannot stop every node of the cluster: {error}");
        }
        // A kept dir keeps its nodes' dirs and logs, not the claim of a running testnet.
        if let LabDir::Given(_) = &self.dir {
            let _ = std::fs::remove_file(self.lab.state().path());
        }
    }
}

fn not_answered(node: &NodeRecord) -> HarnessError {
    HarnessError::NotAnswered {
        node: node.name.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Whether any process of this machine runs with `word` in its command line.
    fn runs_with(word: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(word))
        })
    }

    #[tokio::test]
    async fn a_cluster_that_does_not_come_up_leaves_no_node_running() {
        // An "agent" that starts and never answers on a control socket.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("mute-agent");
        let marker = "4242.4242";
        std::fs::write(&fake, format!("#!/bin/sh\nexec sleep {marker}\n")).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut options = ClusterOptions::default();
        options.agent.bin = Some(fake);
        options.agent.ready_timeout = Duration::from_millis(300);
        let error = Cluster::start_with(2, options).await.unwrap_err();
        assert!(error.to_string().contains("manager-1"), "{error}");
        assert!(!runs_with(marker), "a node was left running");
    }
}
