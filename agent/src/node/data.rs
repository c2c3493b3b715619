//! The data side of a node: the KV store, join tokens, `status` and `node ls`.

use std::collections::{BTreeMap, BTreeSet};

use symphony_consensus::{
    Availability, ClusterInfo, Command, CommandResult, ConsensusError, KvRecord, NodeRecord,
    NodeRole, NodeStatus, ServerState,
};
use symphony_ctl::proto::{
    ClusterStatus, CtlError, ErrorCode, KvDeleteResult, KvEntry, KvListing, KvWriteResult,
    ManagerStatus, NodeInfo, ReadConsistency, Request, Response, Role, StatusInfo, TokenInfo,
};

use super::Node;
use crate::tokens;

/// The largest KV value: every value is a Raft log entry, replicated and kept in memory, and an
/// entry must fit a Raft frame with room to spare (etcd's default limit is 1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// The largest KV key.
pub const MAX_KEY_BYTES: usize = 4096;

/// A manager that has not acknowledged the leader for this long is shown as unreachable.
const REACHABLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

impl Node {
    /// KV, token and listing requests (already routed to the leader where they need it).
    pub(super) async fn data_request(&self, request: Request) -> Result<Response, CtlError> {
        match request {
            Request::KvPut {
                key,
                value,
                if_revision,
            } => {
                self.require_cluster()?;
                check_sizes(&key, &value)?;
                let result = self
                    .propose(Command::KvPut {
                        key,
                        value,
                        if_revision,
                    })
                    .await?;
                match result {
                    CommandResult::KvPut { revision } => {
                        Ok(Response::KvPut(KvWriteResult { revision }))
                    }
                    other => Err(unexpected_result(other)),
                }
            }
            Request::KvGet { key, consistency } => {
                self.require_cluster()?;
                let record = self
                    .read(consistency, |state| state.kv_get(&key).cloned())
                    .await?;
                Ok(Response::KvGet(record.map(|record| kv_entry(key, record))))
            }
            Request::KvList {
                prefix,
                consistency,
            } => {
                self.require_cluster()?;
                let listing = self
                    .read(consistency, |state| KvListing {
                        entries: state
                            .kv_list(&prefix)
                            .map(|(key, record)| kv_entry(key.clone(), record.clone()))
                            .collect(),
                        revision: state.revision,
                    })
                    .await?;
                Ok(Response::KvList(listing))
            }
            Request::KvDelete { key, if_revision } => {
                self.require_cluster()?;
                match self.propose(Command::KvDelete { key, if_revision }).await? {
                    CommandResult::KvDelete { deleted, revision } => {
                        Ok(Response::KvDelete(KvDeleteResult { deleted, revision }))
                    }
                    other => Err(unexpected_result(other)),
                }
            }
            Request::TokenShow { role } => {
                self.require_cluster()?;
                let cluster = self
                    .read(ReadConsistency::Linearizable, |state| state.cluster.clone())
                    .await?
                    .ok_or_else(not_initialised)?;
                Ok(Response::Token(TokenInfo {
                    role,
                    token: token_of(&cluster, role),
                }))
            }
            Request::TokenRotate { role } => {
                let cluster = self.require_cluster()?;
                let token = tokens::join_token(&cluster.cluster_id, node_role(role));
                match self
                    .propose(Command::RotateToken {
                        role: node_role(role),
                        token: token.clone(),
                    })
                    .await?
                {
                    CommandResult::Done => Ok(Response::Token(TokenInfo { role, token })),
                    other => Err(unexpected_result(other)),
                }
            }
            Request::NodeList { consistency } => {
                self.require_cluster()?;
                let records: Vec<NodeRecord> = self
                    .read(consistency, |state| state.nodes.values().cloned().collect())
                    .await?;
                Ok(Response::NodeList(self.node_infos(records)))
            }
            Request::NodeInspect {
                node_id,
                consistency,
            } => {
                self.require_cluster()?;
                let record = self
                    .read(consistency, |state| state.nodes.get(&node_id).cloned())
                    .await?
                    .ok_or_else(|| no_such_node(node_id))?;
                self.node_response(record)
            }
            Request::NodeUpdate {
                node_id,
                availability,
                label_add,
                label_rm,
            } => {
                self.require_cluster()?;
                let availability = availability
                    .as_deref()
                    .map(parse_availability)
                    .transpose()?;
                if let Some(key) = label_add
                    .keys()
                    .chain(label_rm.iter())
                    .find(|key| key.is_empty())
                {
                    return Err(CtlError::new(
                        ErrorCode::BadRequest,
                        format!("a label needs a non-empty key (got '{key}')"),
                    ));
                }
                self.propose(Command::UpdateNode {
                    node_id,
                    availability,
                    label_add,
                    label_rm,
                })
                .await?;
                let record = self
                    .read_stale(|state| state.nodes.get(&node_id).cloned())
                    .ok_or_else(|| no_such_node(node_id))?;
                self.node_response(record)
            }
            other => Err(CtlError::new(
                ErrorCode::Internal,
                format!("{} reached the data handler", other.name()),
            )),
        }
    }

    pub(super) async fn status(&self) -> StatusInfo {
        let cluster = match self.worker_state() {
            Some(worker) => Some(self.worker_status(worker).await),
            None => self.manager_status().await,
        };
        StatusInfo {
            node_id: self.node_id(),
            raft_node_id: self.raft_node_id(),
            agent_version: crate::VERSION.to_string(),
            cluster,
        }
    }

    async fn manager_status(&self) -> Option<ClusterStatus> {
        // A node in no cluster may run no Raft node, and has no cluster to report.
        let consensus = self.consensus()?;
        let (cluster, revision, nodes) =
            self.read_stale(|state| (state.cluster.clone(), state.revision, state.nodes.len()));
        let alive = self.gossip_alive().await;
        let gossip_dropped = self.gossip_dropped().await;
        cluster.map(|cluster| {
            let metrics = consensus.metrics();
            let membership = metrics.membership_config.membership();
            let leader_remote_addr = metrics
                .current_leader
                .and_then(|leader| membership.get_node(&leader))
                .map(|node| node.remote_addr.clone());
            let (managers, leader_node_id) = self.read_stale(|state| {
                let managers: Vec<ManagerStatus> = state
                    .nodes
                    .values()
                    .filter(|record| record.role == NodeRole::Manager)
                    .filter(|record| record.status != NodeStatus::Left)
                    .map(|record| ManagerStatus {
                        node_id: record.node_id,
                        remote_addr: record.remote_addr.clone(),
                        leader: record.raft_node_id.is_some()
                            && record.raft_node_id == metrics.current_leader,
                        alive: alive.as_ref().map(|alive| alive.contains(&record.node_id)),
                        session: false,
                    })
                    .collect();
                let leader = managers
                    .iter()
                    .find(|manager| manager.leader)
                    .map(|manager| manager.node_id);
                (managers, leader)
            });
            ClusterStatus {
                cluster_id: cluster.cluster_id,
                role: Role::Manager,
                raft_state: server_state_name(metrics.state).to_string(),
                leader_raft_id: metrics.current_leader,
                leader_remote_addr,
                term: metrics.current_term,
                last_log_index: metrics.last_log_index,
                commit_index: metrics.cluster_committed.as_ref().map(|id| id.index()),
                applied_index: metrics.last_applied.as_ref().map(|id| id.index()),
                voters: membership.voter_ids().collect(),
                learners: membership.learner_ids().collect(),
                kv_revision: revision,
                nodes,
                managers,
                leader_node_id,
                gossip_members: alive.as_ref().map(BTreeSet::len),
                session_age_ms: None,
                gossip_dropped,
            }
        })
    }

    fn node_response(&self, record: NodeRecord) -> Result<Response, CtlError> {
        self.node_infos(vec![record])
            .into_iter()
            .next()
            .map(|info| Response::Node(Box::new(info)))
            .ok_or_else(|| CtlError::new(ErrorCode::Internal, "the node vanished while being read"))
    }

    /// Node records as `node ls` shows them, with each manager's Raft standing; on the leader
    /// also its replication progress and reachability.
    pub(super) fn node_infos(&self, records: Vec<NodeRecord>) -> Vec<NodeInfo> {
        let consensus = self.consensus();
        let me = self.raft_node_id();
        let view = consensus
            .as_ref()
            .map(|consensus| consensus.membership())
            .unwrap_or_default();
        let leading = view.leader == Some(me);
        let progress = match &consensus {
            Some(consensus) if leading => consensus.progress(),
            _ => BTreeMap::new(),
        };
        let last = view.last_log_index;
        let raft_role = |raft_id: u64| {
            if view.leader == Some(raft_id) {
                "leader"
            } else if view.voters.contains(&raft_id) {
                "follower"
            } else if view.learners.contains(&raft_id) {
                "learner"
            } else {
                "removed"
            }
            .to_string()
        };
        let matched = |raft_id: u64| {
            if !leading {
                return None;
            }
            if raft_id == me {
                return last;
            }
            progress.get(&raft_id).and_then(|p| p.matched_index)
        };
        let reachable = |raft_id: u64| {
            if !leading || !view.nodes.contains_key(&raft_id) {
                return None;
            }
            if raft_id == me {
                return Some(true);
            }
            Some(
                progress
                    .get(&raft_id)
                    .and_then(|p| p.last_ack)
                    .is_some_and(|ago| ago < REACHABLE_WITHIN),
            )
        };
        let mut infos: Vec<NodeInfo> = records
            .iter()
            .map(|record| {
                let raft_id = record.raft_node_id;
                let matched_index = raft_id.and_then(matched);
                NodeInfo {
                    node_id: record.node_id,
                    raft_node_id: raft_id,
                    hostname: record.hostname.clone(),
                    role: match record.role {
                        NodeRole::Manager => Role::Manager,
                        NodeRole::Worker => Role::Worker,
                    },
                    status: record.status.as_str().to_string(),
                    availability: record.availability.as_str().to_string(),
                    raft_addr: record.raft_addr.clone(),
                    remote_addr: record.remote_addr.clone(),
                    raft_role: raft_id.map(raft_role),
                    voter: raft_id.map(|id| view.voters.contains(&id)),
                    matched_index,
                    lag: match (last, matched_index) {
                        (Some(last), Some(matched)) => Some(last.saturating_sub(matched)),
                        _ => None,
                    },
                    reachable: raft_id.and_then(reachable),
                    agent_version: record.agent_version.clone(),
                    joined_at_ms: record.joined_at_ms,
                    status_changed_at_ms: record.status_changed_at_ms,
                    labels: record.labels.clone(),
                    cpus: record.resources.cpus,
                    memory_bytes: record.resources.memory_bytes,
                }
            })
            .collect();
        // Members named by `init --peers` that have not registered with `init --join-addr` yet.
        for (raft_id, node) in &view.nodes {
            if records
                .iter()
                .any(|record| record.raft_node_id == Some(*raft_id))
            {
                continue;
            }
            let matched_index = matched(*raft_id);
            infos.push(NodeInfo {
                node_id: 0,
                raft_node_id: Some(*raft_id),
                hostname: String::new(),
                role: Role::Manager,
                status: "pending".to_string(),
                availability: "active".to_string(),
                raft_addr: Some(node.raft_addr.clone()),
                remote_addr: node.remote_addr.clone(),
                raft_role: Some("pending".to_string()),
                voter: Some(view.voters.contains(raft_id)),
                matched_index,
                lag: match (last, matched_index) {
                    (Some(last), Some(matched)) => Some(last.saturating_sub(matched)),
                    _ => None,
                },
                reachable: reachable(*raft_id),
                agent_version: String::new(),
                joined_at_ms: 0,
                status_changed_at_ms: 0,
                labels: BTreeMap::new(),
                cpus: 0,
                memory_bytes: 0,
            });
        }
        infos
    }
}

fn server_state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

fn kv_entry(key: String, record: KvRecord) -> KvEntry {
    KvEntry {
        key,
        value: record.value,
        create_revision: record.create_revision,
        mod_revision: record.mod_revision,
        version: record.version,
    }
}

fn node_role(role: Role) -> NodeRole {
    match role {
        Role::Manager => NodeRole::Manager,
        Role::Worker => NodeRole::Worker,
    }
}

fn token_of(cluster: &ClusterInfo, role: Role) -> String {
    match role {
        Role::Manager => cluster.manager_token.clone(),
        Role::Worker => cluster.worker_token.clone(),
    }
}

fn no_such_node(node_id: u64) -> CtlError {
    CtlError::new(
        ErrorCode::NotFound,
        format!("no node {node_id} in this cluster; `symphony-ctl node ls` lists them"),
    )
}

fn parse_availability(text: &str) -> Result<Availability, CtlError> {
    match text {
        "active" => Ok(Availability::Active),
        "pause" => Ok(Availability::Pause),
        "drain" => Ok(Availability::Drain),
        other => Err(CtlError::new(
            ErrorCode::BadRequest,
            format!("availability must be active, pause or drain, not '{other}'"),
        )),
    }
}

/// Refuses keys and values too large to replicate comfortably.
fn check_sizes(key: &str, value: &[u8]) -> Result<(), CtlError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            format!(
                "a key must have 1 to {MAX_KEY_BYTES} bytes; this one has {}",
                key.len()
            ),
        ));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            format!(
                "a value may have at most {MAX_VALUE_BYTES} bytes; this one has {} (store large data elsewhere and put a reference here)",
                value.len()
            ),
        ));
    }
    Ok(())
}

pub(super) fn not_initialised() -> CtlError {
    CtlError::new(
        ErrorCode::NotInitialised,
        "this node is not part of a cluster yet; run `symphony-ctl init` to create one",
    )
}

pub(super) fn compare_failed(key: &str, expected: u64, actual: u64) -> CtlError {
    let found = if actual == 0 {
        "the key does not exist".to_string()
    } else {
        format!("the key is at revision {actual}")
    };
    let wanted = if expected == 0 {
        "it must not exist".to_string()
    } else {
        format!("expected revision {expected}")
    };
    CtlError::new(
        ErrorCode::CompareFailed,
        format!("{wanted}, but {found} (key '{key}')"),
    )
}

fn unexpected_result(result: CommandResult) -> CtlError {
    CtlError::new(
        ErrorCode::Internal,
        format!("the state machine answered with an unexpected result: {result:?}"),
    )
}

/// Consensus failures as operators read them.
pub fn consensus_error(error: ConsensusError) -> CtlError {
    let code = match &error {
        ConsensusError::NotLeader { .. } => ErrorCode::NoLeader,
        ConsensusError::NoQuorum(_)
        | ConsensusError::Stopped(_)
        | ConsensusError::MembershipBusy(_) => ErrorCode::Unavailable,
        ConsensusError::AlreadyInitialised => ErrorCode::AlreadyInitialised,
        _ => ErrorCode::Internal,
    };
    CtlError::new(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_failures_explain_both_sides() {
        let error = compare_failed("k", 0, 4);
        assert_eq!(error.code, ErrorCode::CompareFailed);
        assert_eq!(
            error.message,
            "it must not exist, but the key is at revision 4 (key 'k')"
        );
        let error = compare_failed("k", 3, 0);
        assert_eq!(
            error.message,
            "expected revision 3, but the key does not exist (key 'k')"
        );
    }

    #[test]
    fn oversized_keys_and_values_are_refused() {
        assert!(check_sizes("k", &[0; MAX_VALUE_BYTES]).is_ok());
        assert_eq!(
            check_sizes("k", &[0; MAX_VALUE_BYTES + 1])
                .unwrap_err()
                .code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            check_sizes("", b"v").unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            check_sizes(&"k".repeat(MAX_KEY_BYTES + 1), b"v")
                .unwrap_err()
                .code,
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn not_leader_maps_to_no_leader() {
        let error = consensus_error(ConsensusError::NotLeader {
            leader_id: Some(3),
            leader: None,
        });
        assert_eq!(error.code, ErrorCode::NoLeader);
        assert!(error.message.contains("leader is 3"));
    }
}
