//! [`Node`]: the running agent as the control socket and the other nodes see it.
//!
//! - this file: the node's parts, request dispatch, and forwarding to the leader;
//! - [`data`]: the KV store, tokens, `status` and `node ls`;
//! - [`membership`]: forming and changing the manager group — init, join, leave, promote,
//!   demote, remove, force-new-cluster recovery, snapshots;
//! - [`promoter`]: the leader's loop that promotes caught-up learners to voters;
//! - [`gossip`]: starting, stopping and reconnecting the node's gossip as its membership
//!   changes;
//! - [`liveness`]: the leader's loop that turns what gossip says into node status;
//! - [`worker`]: workers joining, their sessions and leave notices, on both sides.
//!
//! On a worker only `status`, `join` and `leave` are served; everything else belongs to a
//! manager and is refused with [`ErrorCode::NotManager`]: workers change cluster state only
//! through a manager that validates the request.
//!
//! A request that needs the leader (writes, linearizable reads, membership changes) is
//! answered here when this manager leads, and otherwise forwarded once to the leader over the
//! node-to-node API. The leader never forwards it again, so a stale view cannot make a loop.

mod data;
pub mod gossip;
pub mod liveness;
mod membership;
pub mod promoter;
mod worker;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use symphony_consensus::network::LocalIdentity;
use symphony_consensus::{
    ClusterInfo, ClusterState, Command, CommandResult, Consensus, ConsensusConfig,
};
use symphony_ctl::proto::{CtlError, ErrorCode, ReadConsistency, Request, Response};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::identity::Identity;
use crate::remote::RemotePool;
use crate::remote::proto::{RemoteReply, RemoteRequest};
use crate::worker::state::WorkerState;

pub use data::consensus_error;
pub use gossip::GossipSettings;
pub use worker::SessionView;

/// How long a request waits for a leader to be elected before it gives up.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long a forwarded request may take on the leader.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// How long gossip must say a node is down before the leader records it.
    pub liveness_grace: Duration,
}

/// What it takes to start the consensus layer again (after `leave` or a forced recovery).
#[derive(Debug, Clone)]
pub struct ConsensusSetup {
    pub config: ConsensusConfig,
    pub raft_listen_addr: SocketAddr,
    pub local: LocalIdentity,
}

/// The agent's state shared by all control and remote connections.
pub struct Node {
    /// Who this node is; the Raft id changes when a manager leaves its cluster.
    identity: RwLock<Identity>,
    advertised: Advertised,
    /// This node itself, for the task that waits for the first Raft connection.
    me: Weak<Node>,
    /// The Raft node, once this node needs one: managers from the start, a fresh node at
    /// `init`, a manager `join` or the first incoming Raft connection, and never a worker.
    /// Building one costs tens of MB (openraft's runtime statistics tables), which a worker
    /// must not pay. Replaced as a whole when the node leaves its cluster or recovers as a new
    /// one.
    consensus: RwLock<Option<Consensus>>,
    /// Whether `consensus` is set, for the tasks that wait for a Raft node (see
    /// [`Node::raft_started`]).
    raft_started: tokio::sync::watch::Sender<bool>,
    /// Serialises starting the Raft node, so it starts once.
    consensus_start: Mutex<()>,
    /// A fresh node's Raft listener while no Raft node runs yet (see [`Node::wait_for_raft`]).
    pending_raft: std::sync::Mutex<Option<PendingRaft>>,
    setup: ConsensusSetup,
    remote: RemotePool,
    /// Serialises the operations that change what cluster this node is in.
    membership_lock: Mutex<()>,
    config_dir: PathBuf,
    gossip_settings: GossipSettings,
    labels: BTreeMap<String, String>,
    liveness_grace: Duration,
    /// The gossip driver, while the node is in a cluster (see [`gossip`]).
    gossip: Mutex<Option<gossip::Running>>,
    /// Set while this node is a worker: its `worker.json`.
    worker: RwLock<Option<WorkerState>>,
    /// A worker's session with a manager, as last heard.
    session: RwLock<Option<SessionView>>,
    /// Asks the session loop for a refresh now (after a join), rather than at its next tick.
    session_wanted: tokio::sync::Notify,
    /// When this worker last merged a manager's gossip view (see `Node::refresh_session`).
    gossip_view_merged: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// The Raft port of a fresh node, bound but served by no Raft node yet.
struct PendingRaft {
    listener: Arc<TcpListener>,
    /// Stops the task waiting for the first connection.
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    pub fn new(
        identity: Identity,
        advertised: Advertised,
        consensus: Option<Consensus>,
        setup: ConsensusSetup,
        settings: NodeSettings,
        worker: Option<WorkerState>,
    ) -> Arc<Node> {
        Arc::new_cyclic(|me| Node {
            me: me.clone(),
            remote: RemotePool::new(identity.node_id),
            identity: RwLock::new(identity),
            advertised,
            raft_started: tokio::sync::watch::Sender::new(consensus.is_some()),
            consensus: RwLock::new(consensus),
            consensus_start: Mutex::new(()),
            pending_raft: std::sync::Mutex::new(None),
            setup,
            membership_lock: Mutex::new(()),
            config_dir: settings.config_dir,
            gossip_settings: settings.gossip,
            labels: settings.labels,
            liveness_grace: settings.liveness_grace,
            gossip: Mutex::new(None),
            worker: RwLock::new(worker),
            session: RwLock::new(None),
            session_wanted: tokio::sync::Notify::new(),
            gossip_view_merged: std::sync::Mutex::new(None),
        })
    }

    /// This node's worker membership, if it is a worker.
    pub fn worker_state(&self) -> Option<WorkerState> {
        self.worker
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn is_worker(&self) -> bool {
        self.worker
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some()
    }

    pub fn identity(&self) -> Identity {
        self.identity
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn node_id(&self) -> u64 {
        self.identity().node_id
    }

    /// This node's id as a Raft member (new after each `leave`).
    fn raft_node_id(&self) -> u64 {
        self.identity().raft_node_id
    }

    /// The consensus configuration for this node's current Raft id.
    fn consensus_config(&self) -> ConsensusConfig {
        let mut config = self.setup.config.clone();
        config.raft_node_id = self.raft_node_id();
        config
    }

    /// The current consensus handle (a cheap clone), if a Raft node runs.
    pub fn consensus(&self) -> Option<Consensus> {
        self.consensus
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The consensus handle of a node in a cluster's Raft group.
    fn manager_consensus(&self) -> Result<Consensus, CtlError> {
        self.consensus().ok_or_else(data::not_initialised)
    }

    /// Reads this node's replica as applied so far; a node without a Raft node holds none, so
    /// it reads the empty state.
    fn read_stale<T>(&self, read: impl FnOnce(&ClusterState) -> T) -> T {
        match self.consensus() {
            Some(consensus) => consensus.read_stale(read),
            None => read(&ClusterState::default()),
        }
    }

    fn replace_consensus(&self, consensus: Consensus) {
        *self
            .consensus
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(consensus);
        self.raft_started.send_replace(true);
    }

    /// Resolves once this node runs a Raft node, at once if it does. The leader's periodic
    /// loops wait on it, so that a worker (which never runs one) does not wake for them.
    pub async fn raft_started(&self) {
        let mut started = self.raft_started.subscribe();
        // Err only if the sender is gone, which it is not while `self` lives.
        let _ = started.wait_for(|started| *started).await;
    }

    /// Waits on a fresh node's bound Raft port for the first connection (`init --peers` on
    /// another node identifies this one, then replicates to it), and only then starts the Raft
    /// node, handing it that connection.
    pub fn wait_for_raft(&self, listener: TcpListener) {
        let listener = Arc::new(listener);
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_first(
            self.me.clone(),
            listener.clone(),
            stop.clone(),
        ));
        let previous = self
            .pending_raft
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .replace(PendingRaft {
                listener,
                stop,
                task,
            });
        if let Some(previous) = previous {
            previous.stop.cancel();
        }
    }

    /// Takes the pending Raft listener, stopping the task that waits on it (without waiting
    /// for the task, which may itself be waiting to start the Raft node).
    fn take_pending_raft(&self) -> Option<PendingRaft> {
        let pending = self
            .pending_raft
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(pending) = &pending {
            pending.stop.cancel();
        }
        pending
    }

    /// Starts the Raft node if none runs, and makes sure it serves Raft RPCs (a manager must),
    /// on the pending listener if there is one; `first` is a connection accepted meanwhile.
    async fn start_consensus(&self, first: Option<TcpStream>) -> Result<Consensus, CtlError> {
        let _starting = self.consensus_start.lock().await;
        let consensus = match self.consensus() {
            Some(consensus) => consensus,
            None => {
                let setup = &self.setup;
                let consensus =
                    Consensus::start(self.consensus_config(), None, setup.local.clone())
                        .await
                        .map_err(consensus_error)?;
                self.replace_consensus(consensus.clone());
                consensus
            }
        };
        if consensus.is_serving().await {
            if let Some(socket) = first {
                consensus.serve_socket(socket).await;
            }
            return Ok(consensus);
        }
        let listener = match self.take_pending_raft() {
            Some(pending) => pending.listener,
            None => Arc::new(self.bind_raft().await?),
        };
        consensus.serve_shared(listener, first).await;
        Ok(consensus)
    }

    /// Binds the Raft port for a node that is to become a manager.
    async fn bind_raft(&self) -> Result<TcpListener, CtlError> {
        let addr = self.setup.raft_listen_addr;
        TcpListener::bind(addr).await.map_err(|error| {
            CtlError::new(
                ErrorCode::Unavailable,
                format!(
                    "a manager serves Raft RPCs, and {addr} is not free ({error}); stop what uses it, or restart this agent with another --listen-raft-addr"
                ),
            )
        })
    }

    /// Serves (or waits on) the Raft port again, for a worker that left: it may be named by
    /// `init --peers` or join as a manager next.
    async fn listen_for_raft(&self) -> Result<(), CtlError> {
        if self.consensus().is_some() {
            return self.start_consensus(None).await.map(drop);
        }
        let _starting = self.consensus_start.lock().await;
        let waiting = self
            .pending_raft
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some();
        if !waiting {
            self.wait_for_raft(self.bind_raft().await?);
        }
        Ok(())
    }

    /// Frees the Raft port: a worker serves no Raft RPCs, and a manager on this machine may
    /// need the port.
    async fn stop_raft(&self) {
        if let Some(pending) = self.take_pending_raft() {
            let _ = pending.task.await;
        }
        if let Some(consensus) = self.consensus() {
            consensus.stop_serving().await;
        }
    }

    /// Stops the Raft node, if one runs, and the wait for one.
    pub async fn shutdown_consensus(&self) {
        if let Some(pending) = self.take_pending_raft() {
            let _ = pending.task.await;
        }
        if let Some(consensus) = self.consensus() {
            consensus.shutdown().await;
        }
    }

    /// Answers one control request from this node's socket.
    pub async fn handle(&self, request: Request) -> Result<Response, CtlError> {
        self.dispatch(request, false).await
    }

    /// Answers one request from another node.
    pub async fn handle_remote(&self, request: RemoteRequest) -> Result<RemoteReply, CtlError> {
        if self.is_worker() {
            return self.handle_remote_as_worker(request).await;
        }
        match request {
            RemoteRequest::Forward { secret, request } => {
                self.check_manager_secret(&secret)?;
                self.dispatch(request, true)
                    .await
                    .map(RemoteReply::Forwarded)
            }
            RemoteRequest::Join(join) => {
                let may_forward = !join.forwarded;
                self.admit(join, may_forward).await.map(RemoteReply::Joined)
            }
            // The leaving manager sends this to the leader it knows: never passed on.
            RemoteRequest::Leaving { secret, node_id } => {
                self.check_manager_secret(&secret)?;
                self.remove_leaving(node_id, false)
                    .await
                    .map(|()| RemoteReply::Left)
            }
            RemoteRequest::Session {
                node_id,
                secret,
                members_seen,
            } => self
                .serve_session(node_id, &secret, members_seen)
                .await
                .map(RemoteReply::Session),
            RemoteRequest::WorkerLeaving {
                node_id,
                secret,
                forwarded,
            } => self
                .worker_leaving(node_id, secret, forwarded)
                .await
                .map(|()| RemoteReply::Left),
        }
    }

    /// This cluster's manager secret, which forwarded requests carry.
    fn manager_secret(&self) -> Result<String, CtlError> {
        Ok(self.require_cluster()?.manager_secret)
    }

    /// Refuses requests from anything that is not a manager of this cluster.
    fn check_manager_secret(&self, secret: &str) -> Result<(), CtlError> {
        let expected = self.manager_secret()?;
        if expected.is_empty() || !constant_time_eq(expected.as_bytes(), secret.as_bytes()) {
            return Err(CtlError::new(
                ErrorCode::InvalidToken,
                "only managers of this cluster may forward requests here",
            ));
        }
        Ok(())
    }

    async fn dispatch(&self, request: Request, forwarded: bool) -> Result<Response, CtlError> {
        if self.is_worker() {
            return self.dispatch_as_worker(request).await;
        }
        if needs_leader(&request) && !forwarded {
            self.require_cluster()?;
            if let Some(leader_addr) = self.leader_elsewhere().await? {
                return self.forward(&leader_addr, request).await;
            }
        }
        match request {
            Request::Status => Ok(Response::Status(Box::new(self.status().await))),
            Request::Init { peers, join_addr } => {
                self.init(peers, join_addr).await.map(Response::Init)
            }
            Request::Join { token, addr } => {
                self.join(Some(token), &addr).await.map(Response::Join)
            }
            Request::Leave => self.leave().await.map(Response::Done),
            Request::NodePromote { node_id } => self.promote(node_id).await.map(Response::Done),
            Request::NodeDemote { node_id } => self.demote(node_id).await.map(Response::Done),
            Request::NodeRemove { node_id, force } => {
                self.remove(node_id, force).await.map(Response::Done)
            }
            Request::RecoverForceNewCluster => {
                self.recover_force_new_cluster().await.map(Response::Done)
            }
            Request::SnapshotSave { path } => {
                self.snapshot_save(&path).await.map(Response::SnapshotSaved)
            }
            other => self.data_request(other).await,
        }
    }

    /// The leader's remote address when another manager leads; `None` when this one does.
    /// Waits a little for an election in progress.
    async fn leader_elsewhere(&self) -> Result<Option<String>, CtlError> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            // A node without a Raft node knows no leader.
            let view = self
                .consensus()
                .map(|consensus| consensus.membership())
                .unwrap_or_default();
            match view.leader {
                Some(leader) if leader == self.raft_node_id() => return Ok(None),
                Some(leader) => {
                    if let Some(node) = view.nodes.get(&leader) {
                        return Ok(Some(node.remote_addr.clone()));
                    }
                }
                None => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CtlError::new(
                    ErrorCode::NoLeader,
                    "no manager is leader right now (an election may be under way, or a quorum of managers is down); retry, or see `symphony-ctl status`",
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn forward(&self, leader_addr: &str, request: Request) -> Result<Response, CtlError> {
        match self
            .remote
            .call(
                leader_addr,
                RemoteRequest::Forward {
                    secret: self.manager_secret()?,
                    request,
                },
                FORWARD_TIMEOUT,
            )
            .await?
        {
            RemoteReply::Forwarded(response) => Ok(response),
            _ => Err(CtlError::new(
                ErrorCode::Internal,
                "the leader answered a forwarded request with something else",
            )),
        }
    }

    /// The cluster this node belongs to, or the error that says it belongs to none.
    fn require_cluster(&self) -> Result<ClusterInfo, CtlError> {
        self.read_stale(|state| state.cluster.clone())
            .ok_or_else(data::not_initialised)
    }

    async fn propose(&self, command: Command) -> Result<CommandResult, CtlError> {
        match self
            .manager_consensus()?
            .propose(command)
            .await
            .map_err(consensus_error)?
        {
            CommandResult::CompareFailed {
                key,
                expected,
                actual,
            } => Err(data::compare_failed(&key, expected, actual)),
            CommandResult::Rejected { reason } => Err(CtlError::new(ErrorCode::BadRequest, reason)),
            result => Ok(result),
        }
    }

    async fn read<T>(
        &self,
        consistency: ReadConsistency,
        read: impl FnOnce(&ClusterState) -> T,
    ) -> Result<T, CtlError> {
        let consensus = self.manager_consensus()?;
        match consistency {
            ReadConsistency::Linearizable => consensus
                .read_linearizable(read)
                .await
                .map_err(consensus_error),
            ReadConsistency::Stale => Ok(consensus.read_stale(read)),
        }
    }

    /// Starts the consensus layer afresh from what is on disk, replacing the running one.
    async fn restart_consensus(&self) -> Result<Consensus, CtlError> {
        let setup = &self.setup;
        let listener = bind_with_retry(setup.raft_listen_addr).await?;
        let consensus =
            Consensus::start(self.consensus_config(), Some(listener), setup.local.clone())
                .await
                .map_err(consensus_error)?;
        self.replace_consensus(consensus.clone());
        Ok(consensus)
    }
}

/// Accepts the first connection on a fresh node's Raft port and starts the Raft node with it.
/// Ends when the Raft node has started (it serves the port from then on) or when `stop` is
/// cancelled; a failed start is logged and the next connection tries again.
async fn accept_first(node: Weak<Node>, listener: Arc<TcpListener>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                let Some(node) = node.upgrade() else { return };
                tracing::info!(%peer, "first Raft connection; starting the Raft node");
                if let Err(error) = node.start_consensus(Some(socket)).await {
                    tracing::warn!(%error, "cannot start the Raft node for an incoming connection");
                }
            }
            Err(error) => {
                // Usually out of file descriptors; pause so the loop does not spin.
                tracing::warn!(%error, "accepting a raft connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Compares secrets in time independent of where they differ, so response times do not leak
/// how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `request` must be answered by the leader.
fn needs_leader(request: &Request) -> bool {
    match request {
        Request::KvPut { .. }
        | Request::KvDelete { .. }
        | Request::TokenRotate { .. }
        | Request::TokenShow { .. }
        | Request::NodePromote { .. }
        | Request::NodeDemote { .. }
        | Request::NodeRemove { .. }
        | Request::NodeUpdate { .. } => true,
        Request::KvGet { consistency, .. }
        | Request::KvList { consistency, .. }
        | Request::NodeList { consistency }
        | Request::NodeInspect { consistency, .. } => *consistency == ReadConsistency::Linearizable,
        Request::Status
        | Request::Init { .. }
        | Request::Join { .. }
        | Request::Leave
        | Request::RecoverForceNewCluster
        | Request::SnapshotSave { .. } => false,
    }
}

/// The old Raft listener closes when its task notices the shutdown; give it a moment.
async fn bind_with_retry(addr: SocketAddr) -> Result<tokio::net::TcpListener, CtlError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(CtlError::new(
                    ErrorCode::Internal,
                    format!("cannot listen for Raft RPCs on {addr} again: {error}"),
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn only_leader_work_is_forwarded() {
        assert!(needs_leader(&Request::KvPut {
            key: "k".into(),
            value: vec![],
            if_revision: None
        }));
        assert!(needs_leader(&Request::KvGet {
            key: "k".into(),
            consistency: ReadConsistency::Linearizable
        }));
        assert!(!needs_leader(&Request::KvGet {
            key: "k".into(),
            consistency: ReadConsistency::Stale
        }));
        assert!(!needs_leader(&Request::Status));
        assert!(!needs_leader(&Request::Leave));
    }
}
