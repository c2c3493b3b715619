//! Who this node is and what it runs: fresh, manager or worker.
//!
//! One task, the [`supervisor`], owns the node's identity, its Raft node, its Raft port and
//! `worker.json`, and is the only one that changes them: every change of role — `init`, a
//! join, a leave, a forced recovery, a fresh node's first Raft connection — is a
//! [`RoleCommand`] it carries out one at a time. Everyone else holds a [`NodeHandle`]: a
//! watch of the [`NodeState`] the supervisor publishes after each change (cheap to read, never
//! locked) and the channel to ask for changes.
//!
//! - [`supervisor`]: the task, and the [`supervisor::Owner`] whose methods keep the invariants
//!   (a worker runs no Raft node and serves no Raft port; a manager serves its port);
//! - [`raft_port`]: the Raft listener, which starts a fresh node's Raft node on its first
//!   connection;
//! - [`init`]: `init`, `init --peers`, `init --join-addr` and a manager's `join --token`;
//! - [`leave`]: a manager's `leave`, and `recover --force-new-cluster`.
//!
//! A worker's join and leave are in [`crate::worker`].

pub mod enrol;
pub mod follow;
pub mod init;
pub mod leave;
pub mod raft_port;
pub mod supervisor;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use symphony_consensus::network::LocalIdentity;
use symphony_consensus::{ClusterInfo, ClusterState, Consensus, ConsensusConfig};
use symphony_ctl::proto::{CtlError, DoneInfo, InitInfo, JoinInfo};
use symphony_wire::{Limits, LocalHello, ProtocolId, ServerConfig, Transport};
use tokio::sync::{mpsc, oneshot, watch};

use crate::gossip::GossipSettings;
use crate::identity::Identity;
use crate::worker::state::WorkerState;

/// Addresses this node tells others to use.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub raft_addr: String,
    pub remote_addr: String,
    pub gossip_addr: String,
    pub hostname: String,
}

/// The node's settings from the command line, beyond its addresses.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub config_dir: PathBuf,
    pub gossip: GossipSettings,
    /// Labels reported at join.
    pub labels: BTreeMap<String, String>,
    /// The Docker engine's version, when one answered at start-up (reported at join).
    pub docker: Option<String>,
    /// How long gossip must say a node is down before the leader records it.
    pub liveness_grace: Duration,
    /// Node-loss grace, isolation lease and the like.
    pub orchestrator: crate::manager::orchestrator::decide::Settings,
    /// How long a worker cut off from every manager keeps running `--on-isolation stop` tasks.
    pub isolation_lease: Duration,
}

/// What it takes to start a Raft node (again, after `leave` or a forced recovery).
#[derive(Debug, Clone)]
pub struct ConsensusSetup {
    /// The consensus configuration; its Raft id is replaced by the identity's current one.
    pub config: ConsensusConfig,
    /// Where the Raft port listens.
    pub raft_listen_addr: SocketAddr,
    pub local: LocalIdentity,
}

/// What the node was started with; never changes while it runs.
#[derive(Debug)]
pub struct NodeConfig {
    pub advertised: Advertised,
    pub settings: NodeSettings,
    pub setup: ConsensusSetup,
    /// The most connections each listener holds at once (from the open-files limit).
    pub connection_cap: usize,
    /// How the Raft port's connections are wrapped (live: follows the node's certificate).
    pub raft_transport: Transport,
    /// How the node-to-node API's connections are wrapped (live too).
    pub remote_transport: Transport,
}

/// The node as its supervisor last published it.
#[derive(Clone)]
pub struct NodeState {
    pub identity: Identity,
    /// The Raft node, once this node needs one: managers from the start, a fresh node at
    /// `init`, a manager join or its first incoming Raft connection, and never a worker
    /// (building one costs tens of MB of openraft's statistics tables).
    pub consensus: Option<Consensus>,
    /// Set while this node is a worker: its `worker.json`.
    pub worker: Option<WorkerState>,
    /// Bumped by every change of membership, so watchers wake even when the handles above did
    /// not change (a manager join completes once the cluster state has reached this node).
    pub generation: u64,
}

impl NodeState {
    /// Reads this node's replica as applied so far; a node without a Raft node holds none, so
    /// it reads the empty state.
    pub fn read_stale<T>(&self, read: impl FnOnce(&ClusterState) -> T) -> T {
        match &self.consensus {
            Some(consensus) => consensus.read_stale(read),
            None => read(&ClusterState::default()),
        }
    }

    /// The cluster this node's replica holds, if any.
    pub fn cluster(&self) -> Option<ClusterInfo> {
        self.read_stale(|state| state.cluster.clone())
    }

    /// Whether this node's Raft node leads its group.
    pub fn is_leader(&self) -> bool {
        self.consensus.as_ref().is_some_and(|consensus| {
            consensus.leader().map(|(leader, _)| leader) == Some(consensus.raft_node_id())
        })
    }
}

/// A change of role, carried out by the supervisor.
pub enum RoleCommand {
    Init {
        peers: Vec<String>,
        join_addr: Option<String>,
        cert_expiry: Option<std::time::Duration>,
        reply: oneshot::Sender<Result<InitInfo, CtlError>>,
    },
    Join {
        token: String,
        addr: String,
        reply: oneshot::Sender<Result<JoinInfo, CtlError>>,
    },
    Leave {
        reply: oneshot::Sender<Result<DoneInfo, CtlError>>,
    },
    Recover {
        reply: oneshot::Sender<Result<DoneInfo, CtlError>>,
    },
    /// A fresh node's first Raft connection arrived: start its Raft node.
    StartRaft {
        reply: oneshot::Sender<Result<Consensus, CtlError>>,
    },
    /// A worker's session learned the managers anew: remember them in `worker.json`.
    RememberManagers {
        managers: Vec<crate::worker::state::ManagerContact>,
    },
}

/// Reads the node's state and asks its supervisor for changes; cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    state: watch::Receiver<NodeState>,
    commands: mpsc::Sender<RoleCommand>,
    config: Arc<NodeConfig>,
}

impl NodeHandle {
    pub(crate) fn new(
        state: watch::Receiver<NodeState>,
        commands: mpsc::Sender<RoleCommand>,
        config: Arc<NodeConfig>,
    ) -> NodeHandle {
        NodeHandle {
            state,
            commands,
            config,
        }
    }

    /// The node as last published.
    pub fn state(&self) -> NodeState {
        self.state.borrow().clone()
    }

    pub fn consensus(&self) -> Option<Consensus> {
        self.state.borrow().consensus.clone()
    }

    pub fn worker(&self) -> Option<WorkerState> {
        self.state.borrow().worker.clone()
    }

    pub fn is_worker(&self) -> bool {
        self.state.borrow().worker.is_some()
    }

    pub fn identity(&self) -> Identity {
        self.state.borrow().identity.clone()
    }

    pub fn node_id(&self) -> u64 {
        self.state.borrow().identity.node_id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// A listener's configuration for `protocol`: its hello names this node by `id` (the node
    /// id, or the Raft id on the Raft port), read afresh for each connection.
    pub fn server_config(
        &self,
        protocol: ProtocolId,
        transport: Transport,
        limits: Limits,
        id: fn(&Identity) -> u64,
    ) -> ServerConfig {
        let node = self.clone();
        ServerConfig {
            protocol,
            transport,
            limits,
            local: Arc::new(move || LocalHello {
                node_id: id(&node.identity()),
                agent_version: crate::VERSION.to_string(),
            }),
        }
    }

    /// Resolves when the supervisor publishes a change (or is gone).
    pub async fn changed(&mut self) {
        if self.state.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once this node runs a Raft node, at once if it does. The leader's loops wait
    /// on it, so that a worker (which never runs one) does not wake for them.
    pub async fn raft_started(&mut self) {
        if self
            .state
            .wait_for(|state| state.consensus.is_some())
            .await
            .is_err()
        {
            std::future::pending::<()>().await;
        }
    }

    pub async fn init(
        &self,
        peers: Vec<String>,
        join_addr: Option<String>,
        cert_expiry: Option<std::time::Duration>,
    ) -> Result<InitInfo, CtlError> {
        self.ask(|reply| RoleCommand::Init {
            peers,
            join_addr,
            cert_expiry,
            reply,
        })
        .await
    }

    pub async fn join(&self, token: String, addr: String) -> Result<JoinInfo, CtlError> {
        self.ask(|reply| RoleCommand::Join { token, addr, reply })
            .await
    }

    pub async fn leave(&self) -> Result<DoneInfo, CtlError> {
        self.ask(|reply| RoleCommand::Leave { reply }).await
    }

    pub async fn recover(&self) -> Result<DoneInfo, CtlError> {
        self.ask(|reply| RoleCommand::Recover { reply }).await
    }

    /// The Raft node, started if none runs (for an incoming Raft connection).
    pub async fn start_raft(&self) -> Result<Consensus, CtlError> {
        if let Some(consensus) = self.consensus() {
            return Ok(consensus);
        }
        self.ask(|reply| RoleCommand::StartRaft { reply }).await
    }

    /// Has the supervisor remember the managers a worker's session learned.
    pub fn remember_managers(&self, managers: Vec<crate::worker::state::ManagerContact>) {
        let _ = self
            .commands
            .try_send(RoleCommand::RememberManagers { managers });
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, CtlError>>) -> RoleCommand,
    ) -> Result<T, CtlError> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(command(reply)).await.is_err() {
            return Err(stopping());
        }
        answer.await.unwrap_or_else(|_| Err(stopping()))
    }
}

fn stopping() -> CtlError {
    CtlError::new(
        symphony_ctl::proto::ErrorCode::Unavailable,
        "the agent is stopping",
    )
}
