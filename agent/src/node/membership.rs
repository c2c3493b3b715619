//! Forming and changing the manager group.
//!
//! Three ways in: `init` (a one-voter cluster), `init --peers` (this node and the named peers
//! are the first voters; the peers then register with `init --join-addr`, no token), and
//! `join --token` through any manager (the leader checks the token, adds the node as a Raft
//! learner, and the [`super::promoter`] makes it a voter once it has caught up). And the ways
//! to change it: promote, demote, remove (refused when it would lose quorum), leave, and
//! force-new-cluster recovery after a quorum loss.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use symphony_consensus::network::client::strip_scheme;
use symphony_consensus::network::{PeerIdentity, identify};
use symphony_consensus::store::{seed, snapshot};
use symphony_consensus::{
    Availability, ClusterInfo, Command, ManagerNode, NodeRecord, NodeRole, NodeStatus, Resources,
};
use symphony_ctl::proto::{CtlError, DoneInfo, ErrorCode, InitInfo, JoinInfo, Role, SnapshotInfo};

use super::{Node, consensus_error};
use crate::remote::proto::{JoinReply, JoinRequest, RemoteReply, RemoteRequest};
use crate::tokens;

/// How long a new cluster may take to elect its first leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a joining node waits for the cluster state to reach it.
const JOIN_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a join may take on the leader.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// A voter that has not acknowledged the leader for this long does not count towards quorum.
const ALIVE_WITHIN: Duration = Duration::from_secs(3);

impl Node {
    /// `init`, `init --peers` or `init --join-addr`.
    pub(super) async fn init(
        &self,
        peers: Vec<String>,
        join_addr: Option<String>,
    ) -> Result<InitInfo, CtlError> {
        if let Some(addr) = join_addr {
            let joined = self.join(None, &addr).await?;
            return Ok(InitInfo {
                cluster_id: joined.cluster_id,
                node_id: self.node_id(),
                raft_node_id: self.raft_node_id(),
            });
        }
        let _serialised = self.membership_lock.lock().await;
        if let Some(cluster) = self.read_stale(|state| state.cluster.clone()) {
            return Err(already_in(&cluster.cluster_id));
        }
        let consensus = self.start_consensus(None).await?;
        // A Raft group without cluster info means an earlier `init` stopped between its two
        // steps: finish the bootstrap instead of refusing.
        if !consensus.is_initialised().await.map_err(consensus_error)? {
            let mut members = BTreeMap::from([(self.raft_node_id(), self.manager_node())]);
            for peer in &peers {
                let (raft_id, node) = self.identify_peer(peer).await?;
                if members.insert(raft_id, node).is_some() {
                    return Err(CtlError::new(
                        ErrorCode::BadRequest,
                        format!("{peer} is named twice, or is this node itself"),
                    ));
                }
            }
            consensus
                .initialise(members)
                .await
                .map_err(consensus_error)?;
        }
        consensus.wait_for_leadership(ELECTION_TIMEOUT).await.map_err(|error| {
            CtlError::new(
                ErrorCode::Unavailable,
                format!(
                    "the new cluster did not elect this node in time ({error}); are the peers running?"
                ),
            )
        })?;
        let now = crate::now_ms();
        let cluster_id = tokens::cluster_id();
        let cluster = ClusterInfo {
            cluster_id: cluster_id.clone(),
            created_at_ms: now,
            manager_token: tokens::join_token(&cluster_id, NodeRole::Manager),
            worker_token: tokens::join_token(&cluster_id, NodeRole::Worker),
            manager_secret: tokens::manager_secret(),
        };
        let node = self.own_record(now);
        // Just after its election a leader may still refuse writes for a moment; the bootstrap
        // is safe to repeat, since a second one is rejected and the first one's id is kept.
        let deadline = tokio::time::Instant::now() + ELECTION_TIMEOUT;
        loop {
            let command = Command::Bootstrap {
                cluster: cluster.clone(),
                node: node.clone(),
            };
            match self.propose(command).await {
                Ok(_) => break,
                Err(error) if error.code == ErrorCode::BadRequest => {
                    let existing = consensus.read_stale(|state| state.cluster.clone());
                    if existing.is_some_and(|existing| existing.cluster_id == cluster_id) {
                        break;
                    }
                    return Err(CtlError::new(ErrorCode::AlreadyInitialised, error.message));
                }
                Err(error)
                    if error.code == ErrorCode::NoLeader
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => return Err(error),
            }
        }
        tracing::info!(%cluster_id, peers = peers.len(), "initialised a new cluster");
        self.reconcile_gossip().await;
        Ok(InitInfo {
            cluster_id,
            node_id: self.node_id(),
            raft_node_id: self.raft_node_id(),
        })
    }

    /// Learns a peer's ids from the peer itself, and checks it is free to join.
    async fn identify_peer(&self, peer: &str) -> Result<(u64, ManagerNode), CtlError> {
        let identity: PeerIdentity = identify(self.raft_node_id(), peer).await.map_err(|error| {
            CtlError::new(
                ErrorCode::Unavailable,
                format!("cannot reach the peer {peer} on its Raft address: {error}; is its agent running with that --listen-raft-addr?"),
            )
        })?;
        if identity.initialised {
            return Err(CtlError::new(
                ErrorCode::WrongCluster,
                format!(
                    "the peer {peer} already belongs to a cluster; only fresh nodes can be named in --peers"
                ),
            ));
        }
        Ok((
            identity.raft_node_id,
            ManagerNode {
                raft_addr: strip_scheme(peer).to_string(),
                remote_addr: identity.remote_addr,
            },
        ))
    }

    /// `join --token` (or, without a token, `init --join-addr`): asks the cluster at `addr` to
    /// admit this node, then waits until the cluster state has reached it.
    pub(super) async fn join(
        &self,
        token: Option<String>,
        addr: &str,
    ) -> Result<JoinInfo, CtlError> {
        if let Some(token) = token.as_deref()
            && tokens::is_worker_token(token)
        {
            return self.join_as_worker(token.to_string(), addr).await;
        }
        let _serialised = self.membership_lock.lock().await;
        let current = self.read_stale(|state| state.cluster.clone());
        // The leader adds this node as a learner and starts replicating at once.
        let consensus = self.start_consensus(None).await?;
        let request = self.join_request(
            token,
            current.as_ref().map(|cluster| cluster.cluster_id.clone()),
        );
        let reply = self.send_join(addr, request).await?;
        // The leader replicates the state to this node; wait until it holds the cluster.
        let deadline = tokio::time::Instant::now() + JOIN_CATCH_UP_TIMEOUT;
        loop {
            let joined = consensus.read_stale(|state| {
                state.cluster.as_ref().map(|c| c.cluster_id.clone())
                    == Some(reply.cluster_id.clone())
            });
            if joined {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CtlError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "cluster {} admitted this node, but its state has not reached it within {JOIN_CATCH_UP_TIMEOUT:?}; check that the managers can reach this node's Raft address {}",
                        reply.cluster_id, self.advertised.raft_addr
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(cluster_id = %reply.cluster_id, role = %reply.role, "joined the cluster");
        self.reconcile_gossip().await;
        Ok(JoinInfo {
            cluster_id: reply.cluster_id,
            node_id: self.node_id(),
            role: reply.role,
            leader_raft_id: reply.leader_raft_id,
        })
    }

    /// On a manager: admits a joining node (forwarding to the leader when this is not it).
    pub(super) async fn admit(
        &self,
        mut join: JoinRequest,
        may_forward: bool,
    ) -> Result<JoinReply, CtlError> {
        if let Some(leader_addr) = self.leader_elsewhere().await? {
            if !may_forward {
                return Err(CtlError::new(
                    ErrorCode::NoLeader,
                    "this manager is not the leader",
                ));
            }
            join.forwarded = true;
            return match self
                .remote
                .call(&leader_addr, RemoteRequest::Join(join), JOIN_TIMEOUT)
                .await?
            {
                RemoteReply::Joined(reply) => Ok(reply),
                _ => Err(CtlError::new(
                    ErrorCode::Internal,
                    "the leader answered the join with something else",
                )),
            };
        }
        let consensus = self.manager_consensus()?;
        let cluster = self.require_cluster()?;
        if let Some(theirs) = &join.cluster_id
            && theirs != &cluster.cluster_id
        {
            return Err(CtlError::new(
                ErrorCode::WrongCluster,
                format!(
                    "node {} belongs to cluster {theirs}, not {}; a node joins only one cluster (use a fresh --config-dir)",
                    join.node_id, cluster.cluster_id
                ),
            ));
        }
        let view = consensus.membership();
        let member = view.nodes.contains_key(&join.raft_node_id);
        let role = match join.token.as_deref() {
            Some(token)
                if super::constant_time_eq(token.as_bytes(), cluster.manager_token.as_bytes()) =>
            {
                Role::Manager
            }
            Some(token)
                if super::constant_time_eq(token.as_bytes(), cluster.worker_token.as_bytes()) =>
            {
                return self.admit_worker(join, &cluster).await;
            }
            Some(token) => {
                let role = if tokens::is_worker_token(token) {
                    "worker"
                } else {
                    "manager"
                };
                return Err(CtlError::new(
                    ErrorCode::InvalidToken,
                    format!(
                        "the join token is not valid for cluster {} (it may have been rotated); get a current one with `symphony-ctl token show {role}` on a manager",
                        cluster.cluster_id
                    ),
                ));
            }
            // Named by `init --peers`, or re-registering: already in the Raft group.
            None if member => Role::Manager,
            None => {
                return Err(CtlError::new(
                    ErrorCode::InvalidToken,
                    "a join token is required: this node was not named by `init --peers`",
                ));
            }
        };
        let clash = consensus.read_stale(|state| {
            state
                .nodes
                .get(&join.node_id)
                // A manager that left comes back under a new Raft id (see
                // `Identity::renew_raft_id`); any other change of Raft id is a clone.
                .is_some_and(|existing| {
                    existing.raft_node_id != Some(join.raft_node_id)
                        && existing.status != NodeStatus::Left
                })
        });
        if clash {
            return Err(CtlError::new(
                ErrorCode::BadRequest,
                format!(
                    "node id {} is already taken by another node; copying a config dir clones its identity",
                    join.node_id
                ),
            ));
        }
        if !member {
            consensus
                .add_learner(
                    join.raft_node_id,
                    ManagerNode {
                        raft_addr: join.raft_addr.clone(),
                        remote_addr: join.remote_addr.clone(),
                    },
                )
                .await
                .map_err(consensus_error)?;
        }
        let now = crate::now_ms();
        let existing = consensus.read_stale(|state| state.nodes.get(&join.node_id).cloned());
        let record = NodeRecord {
            node_id: join.node_id,
            raft_node_id: Some(join.raft_node_id),
            role: NodeRole::Manager,
            hostname: join.hostname,
            remote_addr: join.remote_addr,
            raft_addr: Some(join.raft_addr),
            labels: existing
                .as_ref()
                .map(|e| e.labels.clone())
                .unwrap_or_default(),
            availability: existing
                .as_ref()
                .map_or(Availability::Active, |e| e.availability),
            status: NodeStatus::Ready,
            resources: Resources {
                cpus: join.cpus,
                memory_bytes: join.memory_bytes,
            },
            agent_version: join.agent_version,
            joined_at_ms: existing.as_ref().map_or(now, |e| e.joined_at_ms),
            status_changed_at_ms: now,
            demoted: existing.as_ref().is_some_and(|e| e.demoted),
            gossip_addr: join.gossip_addr,
            node_secret: None,
        };
        self.propose(Command::UpsertNode { node: record }).await?;
        tracing::info!(node_id = join.node_id, raft_node_id = join.raft_node_id, %role, "admitted a node");
        Ok(JoinReply {
            cluster_id: cluster.cluster_id,
            role,
            leader_raft_id: Some(consensus.raft_node_id()),
            node_secret: None,
            managers: self.manager_contacts(),
        })
    }

    pub(super) async fn promote(&self, node_id: u64) -> Result<DoneInfo, CtlError> {
        let (record, raft_id) = self.manager(node_id)?;
        let consensus = self.manager_consensus()?;
        let view = consensus.membership();
        if view.voters.contains(&raft_id) {
            return Ok(done(format!("node {node_id} is already a voter")));
        }
        if !view.learners.contains(&raft_id) {
            return Err(not_member(node_id));
        }
        self.set_demoted(record, false).await?;
        consensus
            .promote(BTreeSet::from([raft_id]))
            .await
            .map_err(consensus_error)?;
        Ok(done(format!("node {node_id} is now a voter")))
    }

    pub(super) async fn demote(&self, node_id: u64) -> Result<DoneInfo, CtlError> {
        let (record, raft_id) = self.manager(node_id)?;
        let consensus = self.manager_consensus()?;
        let view = consensus.membership();
        if !view.voters.contains(&raft_id) {
            if view.learners.contains(&raft_id) {
                return Ok(done(format!("node {node_id} is already a learner")));
            }
            return Err(not_member(node_id));
        }
        self.check_quorum_without(raft_id, "demoting")?;
        self.set_demoted(record, true).await?;
        consensus
            .demote(BTreeSet::from([raft_id]))
            .await
            .map_err(consensus_error)?;
        Ok(done(format!(
            "node {node_id} is now a learner; `node promote {node_id}` makes it a voter again"
        )))
    }

    /// `node rm`: takes a node out of the Raft group (if it is in it) and forgets it.
    pub(super) async fn remove(&self, node_id: u64, force: bool) -> Result<DoneInfo, CtlError> {
        let record = self
            .read_stale(|state| state.nodes.get(&node_id).cloned())
            .ok_or_else(|| not_found(node_id))?;
        if let Some(raft_id) = record.raft_node_id {
            // Losing quorum is the graver refusal, so it is checked first.
            if !force
                && self
                    .manager_consensus()?
                    .membership()
                    .voters
                    .contains(&raft_id)
            {
                self.check_quorum_without(raft_id, "removing")?;
            }
            if record.status == NodeStatus::Ready && !force {
                return Err(still_ready(node_id));
            }
            self.remove_from_raft(node_id, raft_id, force).await?;
        } else if record.status == NodeStatus::Ready && !force {
            return Err(still_ready(node_id));
        }
        self.propose(Command::RemoveNode { node_id }).await?;
        Ok(done(format!("node {node_id} was removed from the cluster")))
    }

    async fn remove_from_raft(
        &self,
        node_id: u64,
        raft_id: u64,
        force: bool,
    ) -> Result<(), CtlError> {
        let consensus = self.manager_consensus()?;
        let view = consensus.membership();
        if !view.nodes.contains_key(&raft_id) {
            return Ok(());
        }
        if raft_id == consensus.raft_node_id() {
            return Err(CtlError::new(
                ErrorCode::BadRequest,
                format!(
                    "node {node_id} is the leader; run `symphony-ctl leave` on it, which hands leadership over first"
                ),
            ));
        }
        if view.voters.contains(&raft_id) && !force {
            self.check_quorum_without(raft_id, "removing")?;
        }
        consensus
            .remove(BTreeSet::from([raft_id]))
            .await
            .map_err(consensus_error)
    }

    /// On the leader: takes a leaving manager out of the Raft group and marks it `left`.
    pub(super) async fn remove_leaving(
        &self,
        node_id: u64,
        may_forward: bool,
    ) -> Result<(), CtlError> {
        if let Some(leader_addr) = self.leader_elsewhere().await? {
            if !may_forward {
                return Err(CtlError::new(
                    ErrorCode::NoLeader,
                    "this manager is not the leader",
                ));
            }
            return match self
                .remote
                .call(
                    &leader_addr,
                    RemoteRequest::Leaving {
                        secret: self.manager_secret()?,
                        node_id,
                    },
                    JOIN_TIMEOUT,
                )
                .await?
            {
                RemoteReply::Left => Ok(()),
                _ => Err(CtlError::new(
                    ErrorCode::Internal,
                    "the leader answered with something else",
                )),
            };
        }
        let mut record = self
            .read_stale(|state| state.nodes.get(&node_id).cloned())
            .ok_or_else(|| not_found(node_id))?;
        if let Some(raft_id) = record.raft_node_id {
            self.remove_from_raft(node_id, raft_id, false).await?;
        }
        record.status = NodeStatus::Left;
        record.status_changed_at_ms = crate::now_ms();
        self.propose(Command::UpsertNode { node: record }).await?;
        Ok(())
    }

    /// `leave` on a manager: hand leadership over if this node has it, have the leader remove
    /// this node, then start over as a fresh node (same identity, no cluster).
    pub(super) async fn leave(&self) -> Result<DoneInfo, CtlError> {
        let _serialised = self.membership_lock.lock().await;
        let cluster = self.require_cluster()?;
        let consensus = self.manager_consensus()?;
        let me = consensus.raft_node_id();
        let view = consensus.membership();
        let others: Vec<u64> = view.voters.iter().copied().filter(|id| *id != me).collect();
        if others.is_empty() {
            return Err(CtlError::new(
                ErrorCode::BadRequest,
                "this is the cluster's only voting manager; it cannot leave (promote another manager first)",
            ));
        }
        if view.leader == Some(me) {
            let progress = consensus.progress();
            let successor = others
                .iter()
                .copied()
                .max_by_key(|id| progress.get(id).and_then(|p| p.matched_index))
                .unwrap_or(others[0]);
            consensus
                .transfer_leadership(successor)
                .await
                .map_err(consensus_error)?;
            let deadline = tokio::time::Instant::now() + ELECTION_TIMEOUT;
            while consensus
                .membership()
                .leader
                .is_none_or(|leader| leader == me)
            {
                if tokio::time::Instant::now() >= deadline {
                    return Err(CtlError::new(
                        ErrorCode::Unavailable,
                        "leadership could not be handed over; try again",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        self.remove_leaving(self.node_id(), true).await?;
        self.reset_to_fresh().await?;
        Ok(done(format!(
            "this node left cluster {}; it can join a cluster again",
            cluster.cluster_id
        )))
    }

    /// Drops this node's Raft store and starts the consensus layer empty.
    async fn reset_to_fresh(&self) -> Result<(), CtlError> {
        if let Some(consensus) = self.consensus() {
            consensus.shutdown().await;
        }
        let dir = self.setup.config.data_dir.clone();
        let wipe = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir))
            .await
            .map_err(|error| CtlError::new(ErrorCode::Internal, error.to_string()))?;
        if let Err(error) = wipe
            && error.kind() != std::io::ErrorKind::NotFound
        {
            return Err(CtlError::new(
                ErrorCode::Internal,
                format!("cannot remove the old Raft store: {error}"),
            ));
        }
        let renewed = self
            .identity()
            .renew_raft_id(&self.config_dir)
            .map_err(|error| CtlError::new(ErrorCode::Internal, error.to_string()))?;
        tracing::info!(
            raft_node_id = renewed.raft_node_id,
            "a new Raft id for this node's next cluster"
        );
        *self
            .identity
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = renewed;
        self.restart_consensus().await.map(drop)
    }

    /// `recover --force-new-cluster`: this manager becomes a one-voter cluster with all the
    /// state it has, including log entries it never saw committed.
    pub(super) async fn recover_force_new_cluster(&self) -> Result<DoneInfo, CtlError> {
        let _serialised = self.membership_lock.lock().await;
        let cluster = self.require_cluster()?;
        self.manager_consensus()?.shutdown().await;
        let dir = self.setup.config.data_dir.clone();
        let internal = |error: std::io::Error| {
            CtlError::new(
                ErrorCode::Internal,
                format!("cannot rewrite the Raft store: {error}"),
            )
        };
        let recovered = recover_state_when_closed(&dir).await.map_err(internal)?;
        let mut state = recovered.state;
        let now = crate::now_ms();
        let own = self.own_record(now);
        state.nodes.insert(own.node_id, own);
        seed::seed_single_voter(
            &dir,
            self.raft_node_id(),
            self.manager_node(),
            &state,
            recovered.last_log_id,
        )
        .await
        .map_err(internal)?;
        let consensus = self.restart_consensus().await?;
        consensus
            .wait_for_leadership(ELECTION_TIMEOUT)
            .await
            .map_err(consensus_error)?;
        tracing::warn!(cluster_id = %cluster.cluster_id, "forced a new one-manager cluster");
        Ok(done(format!(
            "this manager is now the only voter of cluster {}, with all its state; add managers with `join --token`",
            cluster.cluster_id
        )))
    }

    pub(super) async fn snapshot_save(&self, path: &str) -> Result<SnapshotInfo, CtlError> {
        self.require_cluster()?;
        let snapshot = self
            .manager_consensus()?
            .current_snapshot()
            .await
            .map_err(consensus_error)?
            .ok_or_else(|| CtlError::new(ErrorCode::Unavailable, "nothing has been applied yet"))?;
        let bytes = snapshot.snapshot.len() as u64;
        let last_log_index = snapshot.meta.last_log_id.map(|id| id.index());
        let target = std::path::PathBuf::from(path);
        tokio::task::spawn_blocking(move || snapshot::save(&target, &snapshot))
            .await
            .map_err(|error| CtlError::new(ErrorCode::Internal, error.to_string()))?
            .map_err(|error| {
                CtlError::new(
                    ErrorCode::BadRequest,
                    format!("cannot write {path}: {error}"),
                )
            })?;
        Ok(SnapshotInfo {
            path: path.to_string(),
            last_log_index,
            bytes,
        })
    }

    /// Refuses a change that leaves fewer live voters than a quorum of the voters that remain.
    fn check_quorum_without(&self, raft_id: u64, doing: &str) -> Result<(), CtlError> {
        let consensus = self.manager_consensus()?;
        let me = consensus.raft_node_id();
        let view = consensus.membership();
        let progress = consensus.progress();
        let remaining: Vec<u64> = view
            .voters
            .iter()
            .copied()
            .filter(|id| *id != raft_id)
            .collect();
        let alive = remaining
            .iter()
            .filter(|id| {
                **id == me
                    || progress
                        .get(id)
                        .and_then(|p| p.last_ack)
                        .is_some_and(|ago| ago < ALIVE_WITHIN)
            })
            .count();
        let quorum = remaining.len() / 2 + 1;
        if remaining.is_empty() || alive < quorum {
            return Err(CtlError::new(
                ErrorCode::WouldLoseQuorum,
                format!(
                    "{doing} it would leave {alive} reachable of {} voting managers, fewer than the quorum of {quorum}; bring managers back first, or add --force",
                    remaining.len()
                ),
            ));
        }
        Ok(())
    }

    /// A manager's record and Raft id.
    fn manager(&self, node_id: u64) -> Result<(NodeRecord, u64), CtlError> {
        let record = self
            .read_stale(|state| state.nodes.get(&node_id).cloned())
            .ok_or_else(|| not_found(node_id))?;
        let raft_id = record.raft_node_id.ok_or_else(|| not_member(node_id))?;
        Ok((record, raft_id))
    }

    async fn set_demoted(&self, mut record: NodeRecord, demoted: bool) -> Result<(), CtlError> {
        if record.demoted == demoted {
            return Ok(());
        }
        record.demoted = demoted;
        self.propose(Command::UpsertNode { node: record })
            .await
            .map(drop)
    }

    fn manager_node(&self) -> ManagerNode {
        ManagerNode {
            raft_addr: self.advertised.raft_addr.clone(),
            remote_addr: self.advertised.remote_addr.clone(),
        }
    }

    /// This node's record as a ready manager.
    fn own_record(&self, now: u64) -> NodeRecord {
        NodeRecord {
            node_id: self.node_id(),
            raft_node_id: Some(self.raft_node_id()),
            role: NodeRole::Manager,
            hostname: self.advertised.hostname.clone(),
            remote_addr: self.advertised.remote_addr.clone(),
            raft_addr: Some(self.advertised.raft_addr.clone()),
            labels: BTreeMap::new(),
            availability: Availability::Active,
            status: NodeStatus::Ready,
            resources: Resources {
                cpus: cpus(),
                memory_bytes: crate::system::total_memory_bytes(),
            },
            agent_version: crate::VERSION.to_string(),
            joined_at_ms: now,
            status_changed_at_ms: now,
            demoted: false,
            gossip_addr: Some(self.advertised.gossip_addr.clone()),
            node_secret: None,
        }
    }

    /// What this node tells the cluster about itself when it joins.
    pub(super) fn join_request(
        &self,
        token: Option<String>,
        cluster_id: Option<String>,
    ) -> JoinRequest {
        JoinRequest {
            token,
            node_id: self.node_id(),
            raft_node_id: self.raft_node_id(),
            hostname: self.advertised.hostname.clone(),
            raft_addr: self.advertised.raft_addr.clone(),
            remote_addr: self.advertised.remote_addr.clone(),
            agent_version: crate::VERSION.to_string(),
            cpus: cpus(),
            memory_bytes: crate::system::total_memory_bytes(),
            cluster_id,
            forwarded: false,
            gossip_addr: Some(self.advertised.gossip_addr.clone()),
            labels: self.labels.clone(),
        }
    }
}

/// Reads the old store once the stopped Raft node has let go of it (its tasks drop the store
/// as they end, a moment after `shutdown` returns).
async fn recover_state_when_closed(dir: &std::path::Path) -> std::io::Result<seed::Recovered> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match seed::recover_state(dir).await {
            Ok(recovered) => return Ok(recovered),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "the old Raft store is still open; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

pub(super) fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

fn done(message: String) -> DoneInfo {
    DoneInfo { message }
}

impl Node {
    /// Sends a join to the node at `addr` (any node of the cluster) and returns its answer.
    pub(super) async fn send_join(
        &self,
        addr: &str,
        request: JoinRequest,
    ) -> Result<JoinReply, CtlError> {
        match self
            .remote
            .call(addr, RemoteRequest::Join(request), JOIN_TIMEOUT)
            .await?
        {
            RemoteReply::Joined(reply) => Ok(reply),
            _ => Err(CtlError::new(
                ErrorCode::Internal,
                "the cluster answered the join with something else",
            )),
        }
    }
}

pub(super) fn already_in(cluster_id: &str) -> CtlError {
    CtlError::new(
        ErrorCode::AlreadyInitialised,
        format!(
            "this node already belongs to cluster {cluster_id}; a node can only be initialised once"
        ),
    )
}

fn still_ready(node_id: u64) -> CtlError {
    CtlError::new(
        ErrorCode::BadRequest,
        format!(
            "node {node_id} is ready; only a down or left node can be removed. Run `symphony-ctl leave` on it, or stop it and wait until it is down, or add --force"
        ),
    )
}

fn not_found(node_id: u64) -> CtlError {
    CtlError::new(
        ErrorCode::NotFound,
        format!("no node {node_id} in this cluster; `symphony-ctl node ls` lists them"),
    )
}

fn not_member(node_id: u64) -> CtlError {
    CtlError::new(
        ErrorCode::BadRequest,
        format!("node {node_id} is not a manager in the Raft group"),
    )
}
