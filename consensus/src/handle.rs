//! [`Consensus`]: the small handle the agent uses — start, bootstrap, propose, read, metrics.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use std::collections::BTreeSet;

use openraft::error::{ClientWriteError, InitializeError, LinearizableReadError, RaftError};
use openraft::{ChangeMembers, Instant as _};
use openraft::{Config, RaftMetrics, ReadPolicy, SnapshotPolicy};
use symphony_wire::Transport;
use tokio_util::sync::CancellationToken;

use crate::network::{self, LocalIdentity, NetworkFactory};
use crate::state::{ClusterState, Command, CommandResult};
use crate::store::{self, SharedState, StoreOptions};
use crate::types::{ManagerNode, Raft, TypeConfig};

/// How a consensus node is set up.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// This node's Raft id (from `key.json`).
    pub raft_node_id: u64,
    /// Where the redb file and the snapshot live.
    pub data_dir: PathBuf,
    /// A snapshot is taken, and the log purged behind it, every this many entries.
    pub snapshot_interval: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// How Raft connections to peers are wrapped.
    pub transport: Transport,
    /// Events kept in memory for readers (see [`crate::events`]).
    pub events_kept: usize,
    /// Where the store records how long each commit (with its fsync) takes; shared, so the
    /// caller keeps one across the Raft node's restarts.
    pub commit_timings: store::CommitTimings,
}

impl ConsensusConfig {
    pub fn new(raft_node_id: u64, data_dir: PathBuf) -> ConsensusConfig {
        ConsensusConfig {
            raft_node_id,
            data_dir,
            snapshot_interval: 10_000,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            transport: Transport::plain(),
            events_kept: crate::events::DEFAULT_CAPACITY,
            commit_timings: store::CommitTimings::default(),
        }
    }

    fn raft_config(&self) -> Result<Config, ConsensusError> {
        let config = Config {
            cluster_name: "symphony".to_string(),
            heartbeat_interval: millis(self.heartbeat_interval),
            election_timeout_min: millis(self.election_timeout_min),
            election_timeout_max: millis(self.election_timeout_max),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_interval.max(1)),
            max_in_snapshot_log_to_keep: (self.snapshot_interval / 10).min(1_000),
            // Replicate an entry as soon as it is handed to the log, so the leader's fsync and
            // the followers' run in parallel instead of one after the other.
            broadcast_submitted_on_append: Some(true),
            // A restarted leader stands for election like any other node, never resumes its
            // term. Entries are sent before the leader's own fsync, so the followers can commit
            // entries its log never kept (a crash, a failed write); resumed in the same term,
            // it would propose at those indexes again, giving one log id to two entries, and
            // the replicas would part for ever (a stale read and diverging KV revisions in
            // CI's chaos run). An election in a new term makes the followers' longer log win.
            enable_leader_restore: Some(false),
            ..Config::default()
        };
        config
            .validate()
            .map_err(|error| ConsensusError::Config(error.to_string()))
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Why a consensus operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsensusError {
    /// This node is not the leader; the write or read belongs on `leader`.
    #[error("this manager is not the leader{}", leader_hint(.leader_id, .leader))]
    NotLeader {
        leader_id: Option<u64>,
        leader: Option<ManagerNode>,
    },
    /// A quorum could not be reached in time.
    #[error("no quorum of managers answered: {0}")]
    NoQuorum(String),
    #[error("the cluster is already initialised")]
    AlreadyInitialised,
    /// Another membership change is in progress, or this one conflicts with the membership.
    #[error("the membership cannot change right now ({0}); retry in a moment")]
    MembershipBusy(String),
    #[error("invalid consensus configuration: {0}")]
    Config(String),
    #[error("cannot open the Raft store: {0}")]
    Store(String),
    /// The disk is full: the write could not be made durable and was not acknowledged.
    #[error("the Raft store's disk is full ({0}); nothing more is written until there is room")]
    NoSpace(String),
    /// The Raft node stopped (storage failure or shutdown); the agent's log says why.
    #[error("the Raft node has stopped: {0}")]
    Stopped(String),
    #[error("{0}")]
    Other(String),
}

fn leader_hint(leader_id: &Option<u64>, leader: &Option<ManagerNode>) -> String {
    match (leader_id, leader) {
        (Some(id), Some(node)) => format!("; the leader is {id} at {}", node.remote_addr),
        (Some(id), None) => format!("; the leader is {id}"),
        _ => "; no leader is known right now".to_string(),
    }
}

/// A membership change that a quorum cannot commit (too many managers down) would wait for
/// ever; it is reported instead.
const MEMBERSHIP_CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

fn uncommitted_change() -> ConsensusError {
    ConsensusError::NoQuorum(format!(
        "the membership change was not committed within {MEMBERSHIP_CHANGE_TIMEOUT:?}; it may still take effect if enough managers come back"
    ))
}

/// Maps openraft's write errors (client writes and membership changes alike).
fn write_error(error: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> ConsensusError {
    match error {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            ConsensusError::NotLeader {
                leader_id: forward.leader_id,
                leader: forward.leader_node,
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(error)) => {
            ConsensusError::MembershipBusy(error.to_string())
        }
        // The leader lost track of the entry (a new leader truncated it, or it was purged
        // before its outcome was known): it may or may not be applied, so this is not a
        // refusal a client could safely retry blindly.
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(discarded)) => {
            ConsensusError::NoQuorum(format!(
                "leadership changed while the write was in flight; it may or may not have been applied ({discarded})"
            ))
        }
        RaftError::APIError(error) => ConsensusError::Other(error.to_string()),
        RaftError::Fatal(fatal) => ConsensusError::Stopped(fatal.to_string()),
    }
}

/// The Raft membership and leader as one node sees them.
#[derive(Debug, Clone, Default)]
pub struct MembershipView {
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
    pub nodes: BTreeMap<u64, ManagerNode>,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
}

/// How one member is doing, as the leader sees it.
#[derive(Debug, Clone, Default)]
pub struct MemberProgress {
    pub matched_index: Option<u64>,
    /// How long ago it last acknowledged a heartbeat or append.
    pub last_ack: Option<Duration>,
}

/// Whether a node leads, as it changes.
pub struct Leadership {
    server: openraft::alias::WatchReceiverOf<
        TypeConfig,
        openraft::metrics::RaftServerMetrics<TypeConfig>,
    >,
    me: u64,
}

impl Leadership {
    /// Whether the node leads now.
    pub fn leads(&self) -> bool {
        let server = self.server.borrow_watched();
        server.state == openraft::ServerState::Leader && server.current_leader == Some(self.me)
    }

    /// Waits for the next change; `false` once the Raft node has stopped.
    pub async fn changed(&mut self) -> bool {
        self.server.changed().await.is_ok()
    }
}

/// Raft's metrics as they change, for whoever counts what happens between two values (the
/// agent's leader changes and snapshots); openraft publishes the values, not the events.
pub struct MetricsWatch {
    metrics: openraft::alias::WatchReceiverOf<TypeConfig, RaftMetrics<TypeConfig>>,
}

impl MetricsWatch {
    /// Reads the latest value without copying it.
    pub fn read<T>(&self, read: impl FnOnce(&RaftMetrics<TypeConfig>) -> T) -> T {
        read(&self.metrics.borrow_watched())
    }

    /// Waits for the next change; `false` once the Raft node has stopped.
    pub async fn changed(&mut self) -> bool {
        self.metrics.changed().await.is_ok()
    }
}

/// The agent's handle on its Raft node.
#[derive(Clone)]
pub struct Consensus {
    raft: Raft,
    state: SharedState,
    raft_node_id: u64,
    /// Ends every connection this node serves when it shuts down.
    shutdown: CancellationToken,
    /// What this node tells peers that ask who it is.
    identity: LocalIdentity,
    /// Where the store lives.
    data_dir: PathBuf,
    /// Tells this Raft node from another started later in the same process (after a leave or
    /// a recovery), even under the same Raft id.
    instance: u64,
    /// Checks incoming requests (shared by every connection).
    guard: Arc<network::guard::Guard>,
    /// Why the store stopped writing, if it did.
    health: store::StoreHealth,
}

/// Numbers Raft nodes in the order this process started them.
static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Consensus {
    /// Opens the store in `config.data_dir` and starts the Raft node. A node whose store holds
    /// a cluster resumes it, as a follower: a leader before the restart is elected again or not
    /// (see `enable_leader_restore` in `raft_config`). Incoming Raft connections are accepted by
    /// whoever owns the Raft port and handed to [`Consensus::serve_connection`].
    pub async fn start(
        config: ConsensusConfig,
        identity: LocalIdentity,
    ) -> Result<Consensus, ConsensusError> {
        let raft_config = Arc::new(config.raft_config()?);
        let health = store::StoreHealth::default();
        let (log_store, state_machine) = store::open_with_health(
            &StoreOptions {
                dir: config.data_dir.clone(),
            },
            health.clone(),
            config.commit_timings.clone(),
        )
        .map_err(|error| ConsensusError::Store(error.to_string()))?;
        let state = state_machine.shared_state();
        state.events().set_capacity(config.events_kept);
        let network = NetworkFactory::new(config.raft_node_id, config.transport.clone());
        let raft = Raft::new(
            config.raft_node_id,
            raft_config,
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|error| ConsensusError::Stopped(error.to_string()))?;
        Ok(Consensus {
            raft,
            state,
            raft_node_id: config.raft_node_id,
            shutdown: CancellationToken::new(),
            identity,
            instance: INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            guard: Arc::default(),
            health,
            data_dir: config.data_dir.clone(),
        })
    }

    /// Serves one incoming Raft connection (past its hello) until the peer hangs up or this
    /// node shuts down.
    pub async fn serve_connection(&self, connection: symphony_wire::Connection) {
        let peer = connection.peer.addr;
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            result = network::session::serve_connection(connection, &self.raft, self.raft_node_id, &self.identity, &self.guard) => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "raft connection closed");
                }
            }
        }
    }

    /// Whether `other` is a handle on the same Raft node as this one.
    pub fn same_node(&self, other: &Consensus) -> bool {
        self.instance == other.instance
    }

    pub fn raft_node_id(&self) -> u64 {
        self.raft_node_id
    }

    /// The underlying openraft handle, for membership operations and metrics.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Whether this node's store already belongs to a Raft group.
    pub async fn is_initialised(&self) -> Result<bool, ConsensusError> {
        self.raft
            .is_initialized()
            .await
            .map_err(|error| ConsensusError::Stopped(error.to_string()))
    }

    /// Bootstraps a new group whose voters are `members`.
    pub async fn initialise(
        &self,
        members: BTreeMap<u64, ManagerNode>,
    ) -> Result<(), ConsensusError> {
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                Err(ConsensusError::AlreadyInitialised)
            }
            Err(RaftError::APIError(error)) => Err(ConsensusError::Other(error.to_string())),
            Err(RaftError::Fatal(fatal)) => Err(ConsensusError::Stopped(fatal.to_string())),
        }
    }

    /// Waits until this node is the leader, or `timeout` passes.
    pub async fn wait_for_leadership(&self, timeout: Duration) -> Result<(), ConsensusError> {
        let id = self.raft_node_id;
        self.raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader == Some(id), "this node is the leader")
            .await
            .map(drop)
            .map_err(|error| ConsensusError::Other(error.to_string()))
    }

    /// Replicates `command` and returns what applying it produced. Only the leader accepts.
    pub async fn propose(&self, command: Command) -> Result<CommandResult, ConsensusError> {
        self.raft
            .client_write(command)
            .await
            .map(|response| response.data)
            .map_err(|error| self.storage_aware(write_error(error)))
    }

    /// A stopped Raft node whose store failed says why.
    fn storage_aware(&self, error: ConsensusError) -> ConsensusError {
        match (error, self.health.fault()) {
            (ConsensusError::Stopped(_), Some(fault)) if fault.no_space => {
                ConsensusError::NoSpace(fault.message)
            }
            (ConsensusError::Stopped(_), Some(fault)) => {
                ConsensusError::Stopped(format!("its store failed: {}", fault.message))
            }
            (error, _) => error,
        }
    }

    /// Why this node's store stopped writing, if it did (the Raft node has stopped then).
    pub fn store_fault(&self) -> Option<store::StoreFault> {
        self.health.fault()
    }

    /// Where this node's store lives.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Whether the Raft node has stopped (its store failed, or it was shut down).
    pub fn has_stopped(&self) -> bool {
        self.raft.metrics().borrow_watched().running_state.is_err()
    }

    /// Reads the applied state after confirming leadership with a quorum (read index), so the
    /// read sees every write acknowledged before it began.
    pub async fn read_linearizable<T>(
        &self,
        read: impl FnOnce(&ClusterState) -> T,
    ) -> Result<T, ConsensusError> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(_) => Ok(read(&self.state.read())),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(forward))) => {
                Err(ConsensusError::NotLeader {
                    leader_id: forward.leader_id,
                    leader: forward.leader_node,
                })
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(error))) => {
                Err(ConsensusError::NoQuorum(error.to_string()))
            }
            Err(RaftError::Fatal(fatal)) => Err(ConsensusError::Stopped(fatal.to_string())),
        }
    }

    /// Waits for changes to `tables` of this node's replica (by name, e.g.
    /// `state::tasks::TABLE`).
    pub fn watch_tables(&self, tables: &[&str]) -> crate::store::TableWatch {
        self.state.watch(tables)
    }

    /// Waits for changes to what `node_id` is assigned in this node's replica: a new value
    /// after every apply that changed the tasks the node acts on, and none for the rest of
    /// the tasks table (see [`crate::state::tasks::TaskTable::node_changes`]).
    pub fn watch_assignments(&self, node_id: u64) -> tokio::sync::watch::Receiver<u64> {
        self.state.watch_assignments(node_id)
    }

    /// The size of the last snapshot this replica made (to send to a follower) or installed,
    /// in bytes; 0 before the first.
    pub fn snapshot_bytes(&self) -> u64 {
        self.state.snapshot_bytes()
    }

    /// This replica's recent events.
    pub fn events(&self) -> crate::events::EventLog {
        self.state.events().clone()
    }

    /// Reads this node's replica as applied so far; may lag the leader.
    pub fn read_stale<T>(&self, read: impl FnOnce(&ClusterState) -> T) -> T {
        read(&self.state.read())
    }

    /// Watches whether this node leads its group. Unlike the full metrics, this changes only
    /// with the vote, the server state, the leader or the membership, not with every write.
    pub fn leadership(&self) -> Leadership {
        Leadership {
            server: self.raft.server_metrics(),
            me: self.raft_node_id,
        }
    }

    /// Whether this node is in touch with a quorum: a leader a quorum acknowledged within a
    /// second, or a follower that knows a leader (a follower that stops hearing one starts an
    /// election within its election timeout, and then knows none).
    pub fn in_touch_with_quorum(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        match metrics.state {
            // The only voter is its own quorum: nothing acks it, and nothing needs to (its
            // `last_quorum_acked` moves only with writes, so an idle one would look cut off).
            openraft::ServerState::Leader => {
                let mut voters = metrics.membership_config.membership().voter_ids();
                let alone = voters.next() == Some(metrics.id) && voters.next().is_none();
                alone
                    || metrics
                        .last_quorum_acked
                        .as_ref()
                        .is_some_and(|acked| acked.elapsed() < Duration::from_secs(1))
            }
            openraft::ServerState::Follower | openraft::ServerState::Learner => {
                metrics.current_leader.is_some()
            }
            openraft::ServerState::Candidate | openraft::ServerState::Shutdown => false,
        }
    }

    /// Watches this node's Raft metrics as they change.
    pub fn watch_metrics(&self) -> MetricsWatch {
        MetricsWatch {
            metrics: self.raft.metrics(),
        }
    }

    /// The latest Raft metrics of this node.
    pub fn metrics(&self) -> RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// The Raft membership as this node knows it.
    pub fn membership(&self) -> MembershipView {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        MembershipView {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes: membership
                .nodes()
                .map(|(id, node)| (*id, node.clone()))
                .collect(),
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index,
        }
    }

    /// The leader this node knows of, and its record: what a request that needs the leader
    /// asks on every call, without a copy of the whole membership.
    pub fn leader(&self) -> Option<(u64, Option<ManagerNode>)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let leader = metrics.current_leader?;
        let node = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned();
        Some((leader, node))
    }

    /// On the leader: each member's replication progress and when it last answered.
    pub fn progress(&self) -> BTreeMap<u64, MemberProgress> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let mut progress = BTreeMap::new();
        if let Some(replication) = &metrics.replication {
            for (id, matched) in replication {
                progress.insert(
                    *id,
                    MemberProgress {
                        matched_index: matched.as_ref().map(|log_id| log_id.index()),
                        last_ack: None,
                    },
                );
            }
        }
        if let Some(heartbeat) = &metrics.heartbeat {
            for (id, acked) in heartbeat {
                let entry = progress.entry(*id).or_default();
                entry.last_ack = acked.as_ref().map(|instant| instant.elapsed());
            }
        }
        progress
    }

    /// Adds a manager as a learner: it receives the log but does not vote yet.
    pub async fn add_learner(
        &self,
        raft_node_id: u64,
        node: ManagerNode,
    ) -> Result<(), ConsensusError> {
        self.raft
            .add_learner(raft_node_id, node, false)
            .await
            .map(drop)
            .map_err(write_error)
    }

    /// Makes learners voters.
    pub async fn promote(&self, raft_node_ids: BTreeSet<u64>) -> Result<(), ConsensusError> {
        self.change_membership(ChangeMembers::AddVoterIds(raft_node_ids), true)
            .await
    }

    /// Makes voters learners (they keep receiving the log).
    pub async fn demote(&self, raft_node_ids: BTreeSet<u64>) -> Result<(), ConsensusError> {
        self.change_membership(ChangeMembers::RemoveVoters(raft_node_ids), true)
            .await
    }

    /// Removes members entirely, voters and learners alike. A voter is removed in one change
    /// (not demoted to learner first), so the promoter can never promote it back meanwhile.
    pub async fn remove(&self, raft_node_ids: BTreeSet<u64>) -> Result<(), ConsensusError> {
        let view = self.membership();
        let voters: BTreeSet<u64> = raft_node_ids.intersection(&view.voters).copied().collect();
        if !voters.is_empty() {
            self.change_membership(ChangeMembers::RemoveVoters(voters), false)
                .await?;
        }
        let learners: BTreeSet<u64> = raft_node_ids
            .intersection(&view.learners)
            .copied()
            .collect();
        if learners.is_empty() {
            return Ok(());
        }
        self.change_membership(ChangeMembers::RemoveNodes(learners), false)
            .await
    }

    async fn change_membership(
        &self,
        change: ChangeMembers<u64, ManagerNode>,
        retain: bool,
    ) -> Result<(), ConsensusError> {
        crate::failpoint::check("membership.change")
            .map_err(|error| ConsensusError::Other(error.to_string()))?;
        let change = self.raft.change_membership(change, retain);
        match tokio::time::timeout(MEMBERSHIP_CHANGE_TIMEOUT, change).await {
            Ok(result) => result.map(drop).map_err(write_error),
            Err(_) => Err(uncommitted_change()),
        }
    }

    /// Asks the leader (this node) to hand leadership to `to`.
    pub async fn transfer_leadership(&self, to: u64) -> Result<(), ConsensusError> {
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|fatal| ConsensusError::Stopped(fatal.to_string()))
    }

    /// A consistent snapshot of the applied state, serialised now.
    pub async fn current_snapshot(&self) -> Result<Option<crate::types::Snapshot>, ConsensusError> {
        self.raft
            .get_snapshot()
            .await
            .map_err(|error| ConsensusError::Stopped(error.to_string()))
    }

    /// Ends the connections this node serves and shuts the Raft node down; the store is
    /// flushed on the way.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft shutdown did not finish cleanly");
        }
    }
}
