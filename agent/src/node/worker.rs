//! Workers, on both sides of the wire.
//!
//! A worker joins with the worker token through any node: a manager passes the join to the
//! leader, a worker passes it to a manager it knows. The leader checks the token, writes the
//! node's record (role worker, status ready) and hands back a secret of the worker's own and
//! the managers, whose gossip addresses are the worker's seeds. The worker keeps both in
//! `worker.json`, so a restart rejoins the same cluster as the same node without a token.
//!
//! Afterwards the worker keeps a session with one manager (see [`crate::worker::session`]):
//! it learns which manager leads and where the managers are, and it is where later work
//! (assignments) will come from. Liveness does not ride on it: that is gossip's job, judged
//! by the leader ([`super::liveness`]).

use std::collections::BTreeSet;
use std::time::Duration;

use symphony_consensus::{
    Availability, ClusterInfo, Command, NodeRecord, NodeRole, NodeStatus, Resources,
};
use symphony_ctl::proto::{
    ClusterStatus, CtlError, DoneInfo, ErrorCode, JoinInfo, ManagerStatus, Request, Response, Role,
};
use symphony_gossip::MemberState;
use tokio::time::Instant;

use super::{Node, constant_time_eq};
use crate::remote::proto::{
    JoinReply, JoinRequest, ManagerContact, RemoteReply, RemoteRequest, SessionReply,
};
use crate::tokens;
use crate::worker::state::WorkerState;

/// How long a join may take, through every hop to the leader.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one session call may take before the worker tries another manager.
const SESSION_TIMEOUT: Duration = Duration::from_secs(1);

/// The least time between two merges of a manager's gossip view into a worker's.
const VIEW_MERGE_EVERY: Duration = Duration::from_secs(60);

/// Whether a worker seeing `seen` members is behind a manager seeing `own` by more than gossip
/// itself soon mends: any at all in a small pool, more than one in twenty in a large one (a
/// few joins or deaths in flight are normal in a fleet of thousands). A new worker, or one
/// back from a partition, is far behind.
fn is_clearly_behind(seen: u64, own: u64) -> bool {
    seen.saturating_add(own / 20) < own
}

/// `managers` in an order that depends on `node_id`: sorted, then rotated by it. Workers keep
/// the first manager that answers, so without this every worker of a fleet would open its
/// session with the same manager (the first one listed at join) and leave the others idle.
fn spread(mut managers: Vec<ManagerContact>, node_id: u64) -> Vec<ManagerContact> {
    managers.sort_by_key(|manager| manager.node_id);
    if let Some(shift) = usize::try_from(node_id)
        .ok()
        .and_then(|id| id.checked_rem(managers.len()))
    {
        managers.rotate_left(shift);
    }
    managers
}

/// A worker's session as last heard from its manager.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub manager: ManagerContact,
    pub leader_node_id: Option<u64>,
    pub managers: Vec<ManagerContact>,
    pub at: Instant,
}

impl Node {
    // ---- the worker's side ----

    /// `join --token <worker token>`: asks the cluster at `addr` (any node) to admit this node
    /// as a worker, remembers the membership, and starts gossip and the session.
    pub(super) async fn join_as_worker(
        &self,
        token: String,
        addr: &str,
    ) -> Result<JoinInfo, CtlError> {
        let _serialised = self.membership_lock.lock().await;
        if let Some(worker) = self.worker_state() {
            return Err(super::membership::already_in(&worker.cluster_id));
        }
        if let Some(cluster) = self.read_stale(|state| state.cluster.clone()) {
            return Err(super::membership::already_in(&cluster.cluster_id));
        }
        // A worker serves no Raft RPCs: stop listening (freeing the port for a manager on this
        // machine) before asking, so that no peer's `init --peers` can start making this node
        // a manager while it joins as a worker. A Raft node may run already: harmless if it
        // holds no membership (a manager join that failed), not if a peer has given it one.
        self.stop_raft().await;
        if self.raft_has_membership().await {
            self.listen_for_raft_again().await;
            return Err(CtlError::new(
                ErrorCode::AlreadyInitialised,
                "another node has begun adding this one to its Raft group as a manager (an `init --peers` or a manager join named it); see `status`, or join from a fresh node",
            ));
        }
        let request = self.join_request(Some(token), None);
        let reply = match self.send_join(addr, request).await {
            Ok(reply) => reply,
            Err(error) => {
                self.listen_for_raft_again().await;
                return Err(error);
            }
        };
        let (Role::Worker, Some(node_secret)) = (reply.role, reply.node_secret) else {
            self.listen_for_raft_again().await;
            return Err(internal(
                "the cluster did not admit this node as a worker; was a manager token given?",
            ));
        };
        let state = WorkerState {
            cluster_id: reply.cluster_id.clone(),
            node_secret,
            managers: reply.managers,
        };
        if let Err(error) = self.save_worker_state(state.clone()).await {
            // Admitted, but this node cannot remember it: it stays a fresh node, and the
            // cluster's record of it will be marked down.
            self.listen_for_raft_again().await;
            return Err(error);
        }
        *self
            .worker
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(state);
        self.reconcile_gossip().await;
        self.refresh_session().await;
        // The session loop follows gossip's manager events from now on.
        self.session_wanted.notify_one();
        tracing::info!(cluster_id = %reply.cluster_id, "joined the cluster as a worker");
        Ok(JoinInfo {
            cluster_id: reply.cluster_id,
            node_id: self.node_id(),
            role: Role::Worker,
            leader_raft_id: reply.leader_raft_id,
        })
    }

    async fn save_worker_state(&self, state: WorkerState) -> Result<(), CtlError> {
        let dir = self.config_dir.clone();
        tokio::task::spawn_blocking(move || state.save(&dir))
            .await
            .map_err(|error| internal(error.to_string()))?
            .map_err(|error| internal(error.to_string()))
    }

    /// A control request on a worker: only what concerns the worker itself is served here.
    pub(super) async fn dispatch_as_worker(&self, request: Request) -> Result<Response, CtlError> {
        match request {
            Request::Status => Ok(Response::Status(Box::new(self.status().await))),
            Request::Leave => self.leave_as_worker().await.map(Response::Done),
            Request::Init { .. } | Request::Join { .. } => {
                let cluster_id = self
                    .worker_state()
                    .map(|w| w.cluster_id)
                    .unwrap_or_default();
                Err(super::membership::already_in(&cluster_id))
            }
            other => Err(self.not_manager(other.name())),
        }
    }

    fn not_manager(&self, what: &str) -> CtlError {
        let managers: Vec<String> = self
            .worker_state()
            .map(|worker| {
                worker
                    .managers
                    .into_iter()
                    .map(|manager| manager.remote_addr)
                    .collect()
            })
            .unwrap_or_default();
        CtlError::new(
            ErrorCode::NotManager,
            format!(
                "`{what}` needs a manager, and this node is a worker; run it on a manager's control socket (managers: {})",
                if managers.is_empty() {
                    "see `symphony-ctl status`".to_string()
                } else {
                    managers.join(", ")
                }
            ),
        )
    }

    /// A request from another node to this worker: joins are passed on to a manager; the
    /// rest is for managers only.
    pub(super) async fn handle_remote_as_worker(
        &self,
        request: RemoteRequest,
    ) -> Result<RemoteReply, CtlError> {
        let RemoteRequest::Join(join) = request else {
            return Err(CtlError::new(
                ErrorCode::NotManager,
                "this node is a worker; send this to a manager",
            ));
        };
        let mut last_error = None;
        for manager in self.session_candidates().await {
            match self
                .remote
                .call(
                    &manager.remote_addr,
                    RemoteRequest::Join(join.clone()),
                    JOIN_TIMEOUT,
                )
                .await
            {
                Ok(reply) => return Ok(reply),
                Err(error) if error.code == ErrorCode::Unavailable => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            CtlError::new(
                ErrorCode::Unavailable,
                "this worker knows no manager to pass the join to",
            )
        }))
    }

    /// `leave` on a worker: the leader marks it `left`, then it leaves the gossip pool and
    /// forgets the cluster. Nothing changes unless a manager recorded the leave.
    async fn leave_as_worker(&self) -> Result<DoneInfo, CtlError> {
        let _serialised = self.membership_lock.lock().await;
        let Some(worker) = self.worker_state() else {
            return Err(super::data::not_initialised());
        };
        let notice = RemoteRequest::WorkerLeaving {
            node_id: self.node_id(),
            secret: worker.node_secret.clone(),
            forwarded: false,
        };
        let mut recorded = false;
        let mut last_error = None;
        for manager in self.session_candidates().await {
            match self
                .remote
                .call(&manager.remote_addr, notice.clone(), JOIN_TIMEOUT)
                .await
            {
                Ok(RemoteReply::Left) => {
                    recorded = true;
                    break;
                }
                Ok(_) => return Err(internal("the manager answered with something else")),
                Err(error) if error.code == ErrorCode::Unavailable => last_error = Some(error),
                Err(error) => return Err(error),
            }
        }
        if !recorded {
            return Err(CtlError::new(
                ErrorCode::Unavailable,
                format!(
                    "no manager could record the leave ({}); nothing changed, retry when a manager is reachable",
                    last_error.map_or_else(|| "none is known".to_string(), |e| e.message)
                ),
            ));
        }
        let dir = self.config_dir.clone();
        tokio::task::spawn_blocking(move || WorkerState::remove(&dir))
            .await
            .map_err(|error| internal(error.to_string()))?
            .map_err(|error| internal(error.to_string()))?;
        *self
            .worker
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        *self
            .session
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.reconcile_gossip().await;
        if let Err(error) = self.listen_for_raft().await {
            tracing::info!(%error, "not serving Raft after leaving; init or a manager join will retry");
        }
        Ok(DoneInfo {
            message: format!(
                "this node left cluster {}; it can join a cluster again",
                worker.cluster_id
            ),
        })
    }

    /// The managers to try for a session, best first: the current one, then those gossip
    /// sees alive, then those remembered in `worker.json`; each group in an order of this
    /// node's own (see [`spread`]).
    async fn session_candidates(&self) -> Vec<ManagerContact> {
        let mut candidates = Vec::new();
        let session = self.session_view();
        let alive: Vec<ManagerContact> = match self.gossip().await {
            Some((gossip, _)) => gossip
                .managers()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|member| ManagerContact {
                    node_id: member.node_id,
                    remote_addr: member.remote_addr,
                    gossip_addr: Some(member.gossip_addr.to_string()),
                })
                .collect(),
            None => Vec::new(),
        };
        if let Some(session) = session
            && (alive.is_empty()
                || alive
                    .iter()
                    .any(|manager| manager.node_id == session.manager.node_id))
        {
            candidates.push(session.manager);
        }
        let own_id = self.node_id();
        candidates.extend(spread(alive, own_id));
        if let Some(worker) = self.worker_state() {
            candidates.extend(spread(worker.managers, own_id));
        }
        let mut seen = BTreeSet::new();
        candidates.retain(|manager| seen.insert(manager.node_id));
        candidates
    }

    /// Whether a Raft node runs here and holds a membership: some peer made this node part of
    /// a Raft group, whether or not the cluster's state has reached it yet.
    async fn raft_has_membership(&self) -> bool {
        match self.consensus() {
            Some(consensus) => consensus.is_initialised().await.unwrap_or(true),
            None => false,
        }
    }

    /// A fresh node whose worker join did not happen waits for Raft connections again, as it
    /// did before (it may be named by `init --peers` or join as a manager next).
    async fn listen_for_raft_again(&self) {
        if let Err(error) = self.listen_for_raft().await {
            tracing::warn!(%error, "cannot listen for Raft connections again");
        }
    }

    /// Whether this worker's next session may ask for the manager's gossip view: not within
    /// [`VIEW_MERGE_EVERY`] of the last merge, so that a fleet that keeps growing (every
    /// worker always a little behind) does not have each worker pull the whole view from the
    /// managers every few seconds.
    fn may_ask_for_gossip_view(&self) -> bool {
        self.gossip_view_merged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_none_or(|merged| merged.elapsed() >= VIEW_MERGE_EVERY)
    }

    /// Resolves when something (a join) wants the session refreshed before its next tick.
    pub async fn session_wanted(&self) {
        self.session_wanted.notified().await;
    }

    /// The worker's session as last heard.
    pub fn session_view(&self) -> Option<SessionView> {
        self.session
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// One round of the worker's session: ask the current manager (or the next that answers)
    /// for the managers and their leader. Remembers the managers when they changed.
    pub async fn refresh_session(&self) {
        let Some(worker) = self.worker_state() else {
            return;
        };
        let gossip = self.gossip().await.map(|(gossip, _)| gossip);
        let request = RemoteRequest::Session {
            node_id: self.node_id(),
            secret: worker.node_secret.clone(),
            members_seen: gossip
                .as_ref()
                .filter(|_| self.may_ask_for_gossip_view())
                .map(|gossip| u64::try_from(gossip.member_count()).unwrap_or(u64::MAX)),
        };
        let previous = self.session_view().map(|view| view.manager.node_id);
        for manager in self.session_candidates().await {
            let call = self
                .remote
                .call(&manager.remote_addr, request.clone(), SESSION_TIMEOUT);
            let reply = match tokio::time::timeout(SESSION_TIMEOUT * 2, call).await {
                Ok(Ok(RemoteReply::Session(reply))) => reply,
                Ok(Ok(_)) => continue,
                Ok(Err(error)) => {
                    // NotFound also comes from a manager that has not applied this
                    // worker's join yet; only a wrong secret is worth a warning.
                    if error.code == ErrorCode::InvalidToken {
                        tracing::warn!(manager = manager.node_id, %error, "a manager refused this worker's session");
                    } else {
                        tracing::debug!(manager = manager.node_id, %error, "session call failed");
                    }
                    continue;
                }
                Err(_) => {
                    tracing::debug!(manager = manager.node_id, "session call timed out");
                    continue;
                }
            };
            if reply.cluster_id != worker.cluster_id {
                tracing::warn!(manager = manager.node_id, cluster_id = %reply.cluster_id, "a manager of another cluster answered; skipping it");
                continue;
            }
            if previous != Some(manager.node_id) {
                tracing::info!(manager = manager.node_id, addr = %manager.remote_addr, "session with a manager");
            }
            if !reply.members.is_empty()
                && let Some(gossip) = &gossip
            {
                tracing::debug!(
                    members = reply.members.len(),
                    "merging the manager's gossip view"
                );
                if let Err(error) = gossip.apply(reply.members).await {
                    tracing::debug!(%error, "cannot merge the manager's gossip view");
                }
                *self
                    .gossip_view_merged
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
            }
            if !reply.managers.is_empty() && reply.managers != worker.managers {
                let updated = WorkerState {
                    managers: reply.managers.clone(),
                    ..worker.clone()
                };
                match self.save_worker_state(updated.clone()).await {
                    Ok(()) => {
                        *self
                            .worker
                            .write()
                            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(updated);
                    }
                    Err(error) => tracing::warn!(%error, "cannot remember the managers"),
                }
            }
            *self
                .session
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(SessionView {
                manager,
                leader_node_id: reply.leader_node_id,
                managers: reply.managers,
                at: Instant::now(),
            });
            return;
        }
        // Said once per outage, not every second: an overloaded or cut-off worker would
        // otherwise fill its log with the same line.
        let last_answer = self.session_view().map(|view| view.at.elapsed());
        if last_answer.is_none_or(|age| age < SESSION_TIMEOUT * 4) {
            tracing::warn!("no manager answered this worker's session; retrying");
        } else {
            tracing::debug!("no manager answered this worker's session; retrying");
        }
    }

    /// `status` on a worker: the managers it knows and which leads.
    pub(super) async fn worker_status(&self, worker: WorkerState) -> ClusterStatus {
        let session = self.session_view();
        let leader = session.as_ref().and_then(|view| view.leader_node_id);
        let alive = self.gossip_alive().await;
        let mut managers = session
            .as_ref()
            .map(|view| view.managers.clone())
            .unwrap_or_default();
        if managers.is_empty() {
            managers = worker.managers.clone();
        }
        let managers: Vec<ManagerStatus> = managers
            .into_iter()
            .map(|manager| ManagerStatus {
                node_id: manager.node_id,
                alive: alive.as_ref().map(|alive| alive.contains(&manager.node_id)),
                leader: leader == Some(manager.node_id),
                session: session
                    .as_ref()
                    .is_some_and(|view| view.manager.node_id == manager.node_id),
                remote_addr: manager.remote_addr,
            })
            .collect();
        let leader_remote_addr = managers
            .iter()
            .find(|manager| manager.leader)
            .map(|manager| manager.remote_addr.clone());
        ClusterStatus {
            cluster_id: worker.cluster_id,
            role: Role::Worker,
            raft_state: "none".to_string(),
            leader_raft_id: None,
            leader_remote_addr,
            term: 0,
            last_log_index: None,
            commit_index: None,
            applied_index: None,
            voters: Vec::new(),
            learners: Vec::new(),
            kv_revision: 0,
            nodes: 0,
            managers,
            leader_node_id: leader,
            gossip_members: alive.map(|alive| alive.len()),
            gossip_dropped: self.gossip_dropped().await,
            session_age_ms: session
                .map(|view| u64::try_from(view.at.elapsed().as_millis()).unwrap_or(u64::MAX)),
        }
    }

    // ---- the managers' side ----

    /// On the leader: admits a worker that gave the worker token.
    pub(super) async fn admit_worker(
        &self,
        join: JoinRequest,
        cluster: &ClusterInfo,
    ) -> Result<JoinReply, CtlError> {
        let consensus = self.manager_consensus()?;
        let existing = consensus.read_stale(|state| state.nodes.get(&join.node_id).cloned());
        if existing
            .as_ref()
            .is_some_and(|record| record.role == NodeRole::Manager)
        {
            return Err(CtlError::new(
                ErrorCode::BadRequest,
                format!(
                    "node id {} belongs to a manager of this cluster; copying a config dir clones its identity",
                    join.node_id
                ),
            ));
        }
        let now = crate::now_ms();
        let mut labels = existing
            .as_ref()
            .map(|record| record.labels.clone())
            .unwrap_or_default();
        labels.extend(join.labels);
        let node_secret = tokens::secret();
        let record = NodeRecord {
            node_id: join.node_id,
            raft_node_id: None,
            role: NodeRole::Worker,
            hostname: join.hostname,
            remote_addr: join.remote_addr,
            raft_addr: None,
            labels,
            availability: existing
                .as_ref()
                .map_or(Availability::Active, |record| record.availability),
            status: NodeStatus::Ready,
            resources: Resources {
                cpus: join.cpus,
                memory_bytes: join.memory_bytes,
            },
            agent_version: join.agent_version,
            joined_at_ms: existing.as_ref().map_or(now, |record| record.joined_at_ms),
            status_changed_at_ms: now,
            demoted: false,
            gossip_addr: join.gossip_addr,
            node_secret: Some(node_secret.clone()),
        };
        self.propose(Command::UpsertNode { node: record }).await?;
        tracing::info!(node_id = join.node_id, "admitted a worker");
        Ok(JoinReply {
            cluster_id: cluster.cluster_id.clone(),
            role: Role::Worker,
            leader_raft_id: Some(consensus.raft_node_id()),
            node_secret: Some(node_secret),
            managers: self.manager_contacts(),
        })
    }

    /// The managers of the cluster, as workers should know them.
    pub(super) fn manager_contacts(&self) -> Vec<ManagerContact> {
        self.read_stale(|state| {
            state
                .nodes
                .values()
                .filter(|record| {
                    record.role == NodeRole::Manager && record.status != NodeStatus::Left
                })
                .map(|record| ManagerContact {
                    node_id: record.node_id,
                    remote_addr: record.remote_addr.clone(),
                    gossip_addr: record.gossip_addr.clone(),
                })
                .collect()
        })
    }

    /// The worker's record, if `secret` proves the caller is that worker.
    fn authenticate_worker(&self, node_id: u64, secret: &str) -> Result<NodeRecord, CtlError> {
        let record = self.read_stale(|state| state.nodes.get(&node_id).cloned())
            .ok_or_else(|| {
                CtlError::new(
                    ErrorCode::NotFound,
                    format!(
                        "node {node_id} is not known to this manager: its join has not reached it yet, or the node was removed (then join again with a worker token)"
                    ),
                )
            })?;
        match &record.node_secret {
            Some(expected) if constant_time_eq(expected.as_bytes(), secret.as_bytes()) => {
                Ok(record)
            }
            _ => Err(CtlError::new(
                ErrorCode::InvalidToken,
                format!("this is not node {node_id}'s secret"),
            )),
        }
    }

    /// On any manager: one round of a worker's session.
    pub(super) async fn serve_session(
        &self,
        node_id: u64,
        secret: &str,
        members_seen: Option<u64>,
    ) -> Result<SessionReply, CtlError> {
        let cluster = self.require_cluster()?;
        let record = self.authenticate_worker(node_id, secret)?;
        if record.status == NodeStatus::Left {
            return Err(CtlError::new(
                ErrorCode::NotFound,
                format!("node {node_id} has left the cluster; join again with a worker token"),
            ));
        }
        let consensus = self.manager_consensus()?;
        let leader_raft_id = consensus.membership().leader;
        let leader_node_id = leader_raft_id.and_then(|leader| {
            consensus.read_stale(|state| {
                state
                    .nodes
                    .values()
                    .find(|record| record.raft_node_id == Some(leader))
                    .map(|record| record.node_id)
            })
        });
        Ok(SessionReply {
            cluster_id: cluster.cluster_id,
            leader_node_id,
            managers: self.manager_contacts(),
            members: self.gossip_view_beyond(members_seen).await,
        })
    }

    /// This manager's whole gossip view, if a worker that sees `members_seen` members is
    /// clearly behind it; nothing otherwise (the usual case, once a pool has converged).
    async fn gossip_view_beyond(&self, members_seen: Option<u64>) -> Vec<MemberState> {
        let Some(seen) = members_seen else {
            return Vec::new();
        };
        let Some((gossip, _)) = self.gossip().await else {
            return Vec::new();
        };
        let own = u64::try_from(gossip.member_count()).unwrap_or(u64::MAX);
        if !is_clearly_behind(seen, own) {
            return Vec::new();
        }
        gossip.membership_state().await.unwrap_or_default()
    }

    /// On the leader (passed on once by another manager): marks a leaving worker `left`.
    pub(super) async fn worker_leaving(
        &self,
        node_id: u64,
        secret: String,
        forwarded: bool,
    ) -> Result<(), CtlError> {
        if let Some(leader_addr) = self.leader_elsewhere().await? {
            if forwarded {
                return Err(CtlError::new(
                    ErrorCode::NoLeader,
                    "this manager is not the leader",
                ));
            }
            let notice = RemoteRequest::WorkerLeaving {
                node_id,
                secret,
                forwarded: true,
            };
            return match self.remote.call(&leader_addr, notice, JOIN_TIMEOUT).await? {
                RemoteReply::Left => Ok(()),
                _ => Err(internal("the leader answered with something else")),
            };
        }
        self.authenticate_worker(node_id, &secret)?;
        self.propose(Command::SetNodeStatus {
            node_id,
            status: NodeStatus::Left,
            at_ms: crate::now_ms(),
        })
        .await?;
        tracing::info!(node_id, "a worker left");
        Ok(())
    }
}

fn internal(message: impl Into<String>) -> CtlError {
    CtlError::new(ErrorCode::Internal, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_spread_their_sessions_over_the_managers() {
        let managers: Vec<ManagerContact> = [30, 10, 20]
            .into_iter()
            .map(|node_id| ManagerContact {
                node_id,
                remote_addr: format!("127.0.0.1:{node_id}"),
                gossip_addr: None,
            })
            .collect();
        let first = |worker: u64| spread(managers.clone(), worker)[0].node_id;
        assert_eq!([first(0), first(1), first(2), first(3)], [10, 20, 30, 10]);
        assert_eq!(spread(managers.clone(), 4).len(), 3);
        assert!(spread(Vec::new(), 7).is_empty());
    }

    #[test]
    fn a_worker_is_clearly_behind_when_it_misses_more_than_gossip_soon_mends() {
        // Small pools: any difference.
        assert!(is_clearly_behind(0, 1));
        assert!(is_clearly_behind(18, 19));
        assert!(!is_clearly_behind(19, 19));
        assert!(!is_clearly_behind(25, 19), "a worker ahead is not behind");
        // Large pools: more than one member in twenty.
        assert!(is_clearly_behind(77, 153));
        assert!(!is_clearly_behind(150, 153));
        assert!(!is_clearly_behind(9_600, 10_000));
        assert!(is_clearly_behind(9_400, 10_000));
    }
}
