//! [`Node`]: the running agent as the control socket sees it. It answers every control request,
//! turning them into Raft proposals and reads.

use std::collections::BTreeMap;
use std::time::Duration;

use symphony_consensus::{
    Availability, ClusterInfo, ClusterState, Command, CommandResult, Consensus, ConsensusError,
    KvRecord, ManagerNode, NodeRecord, NodeRole, NodeStatus, Resources, ServerState,
};
use symphony_ctl::proto::{
    ClusterStatus, CtlError, ErrorCode, InitInfo, KvDeleteResult, KvEntry, KvListing,
    KvWriteResult, NodeInfo, ReadConsistency, Request, Response, Role, StatusInfo, TokenInfo,
};
use tokio::sync::Mutex;

use crate::identity::Identity;
use crate::tokens;

/// How long `init` waits for the new one-voter group to elect this node.
const INIT_LEADERSHIP_TIMEOUT: Duration = Duration::from_secs(10);

/// Addresses this node tells others to use.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub raft_addr: String,
    pub remote_addr: String,
    pub hostname: String,
}

/// The agent's state shared by all control connections.
pub struct Node {
    identity: Identity,
    advertised: Advertised,
    consensus: Consensus,
    /// Serialises `init`, so two concurrent calls cannot both bootstrap.
    init_lock: Mutex<()>,
}

impl Node {
    pub fn new(identity: Identity, advertised: Advertised, consensus: Consensus) -> Node {
        Node {
            identity,
            advertised,
            consensus,
            init_lock: Mutex::new(()),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn consensus(&self) -> &Consensus {
        &self.consensus
    }

    /// Answers one control request.
    pub async fn handle(&self, request: Request) -> Result<Response, CtlError> {
        match request {
            Request::Status => Ok(Response::Status(Box::new(self.status()))),
            Request::Init { peers, join_addr } if peers.is_empty() && join_addr.is_none() => {
                self.init().await.map(Response::Init)
            }
            Request::KvPut {
                key,
                value,
                if_revision,
            } => {
                self.require_cluster()?;
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
            other => Err(CtlError::new(
                ErrorCode::Internal,
                format!("{} is being built", other.name()),
            )),
        }
    }

    /// The cluster this node belongs to, or the error that says it belongs to none.
    fn require_cluster(&self) -> Result<ClusterInfo, CtlError> {
        self.consensus
            .read_stale(|state| state.cluster.clone())
            .ok_or_else(not_initialised)
    }

    async fn propose(&self, command: Command) -> Result<CommandResult, CtlError> {
        match self
            .consensus
            .propose(command)
            .await
            .map_err(consensus_error)?
        {
            CommandResult::CompareFailed {
                key,
                expected,
                actual,
            } => Err(compare_failed(&key, expected, actual)),
            CommandResult::Rejected { reason } => Err(CtlError::new(ErrorCode::BadRequest, reason)),
            result => Ok(result),
        }
    }

    async fn read<T>(
        &self,
        consistency: ReadConsistency,
        read: impl FnOnce(&ClusterState) -> T,
    ) -> Result<T, CtlError> {
        match consistency {
            ReadConsistency::Linearizable => self
                .consensus
                .read_linearizable(read)
                .await
                .map_err(consensus_error),
            ReadConsistency::Stale => Ok(self.consensus.read_stale(read)),
        }
    }

    /// Bootstraps a one-voter cluster with this node as its manager.
    async fn init(&self) -> Result<InitInfo, CtlError> {
        let _serialised = self.init_lock.lock().await;
        if let Some(cluster) = self.consensus.read_stale(|state| state.cluster.clone()) {
            return Err(CtlError::new(
                ErrorCode::AlreadyInitialised,
                format!(
                    "this node already belongs to cluster {}; a node can only be initialised once",
                    cluster.cluster_id
                ),
            ));
        }
        // A Raft group that exists without cluster info means an earlier `init` stopped between
        // its two steps: finish the bootstrap instead of refusing.
        if !self
            .consensus
            .is_initialised()
            .await
            .map_err(consensus_error)?
        {
            let members = BTreeMap::from([(
                self.identity.raft_node_id,
                ManagerNode {
                    raft_addr: self.advertised.raft_addr.clone(),
                    remote_addr: self.advertised.remote_addr.clone(),
                },
            )]);
            self.consensus
                .initialise(members)
                .await
                .map_err(consensus_error)?;
        }
        self.consensus
            .wait_for_leadership(INIT_LEADERSHIP_TIMEOUT)
            .await
            .map_err(|error| {
                CtlError::new(
                    ErrorCode::Unavailable,
                    format!("the new cluster did not elect this node in time: {error}"),
                )
            })?;
        let now = crate::now_ms();
        let cluster_id = tokens::cluster_id();
        let cluster = ClusterInfo {
            cluster_id: cluster_id.clone(),
            created_at_ms: now,
            manager_token: tokens::join_token(&cluster_id, NodeRole::Manager),
            worker_token: tokens::join_token(&cluster_id, NodeRole::Worker),
        };
        let node = NodeRecord {
            node_id: self.identity.node_id,
            raft_node_id: Some(self.identity.raft_node_id),
            role: NodeRole::Manager,
            hostname: self.advertised.hostname.clone(),
            remote_addr: self.advertised.remote_addr.clone(),
            raft_addr: Some(self.advertised.raft_addr.clone()),
            labels: BTreeMap::new(),
            availability: Availability::Active,
            status: NodeStatus::Ready,
            resources: Resources {
                cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
                memory_bytes: crate::system::total_memory_bytes(),
            },
            agent_version: crate::VERSION.to_string(),
            joined_at_ms: now,
            status_changed_at_ms: now,
        };
        match self.propose(Command::Bootstrap { cluster, node }).await {
            Ok(_) => {}
            Err(error) if error.code == ErrorCode::BadRequest => {
                return Err(CtlError::new(ErrorCode::AlreadyInitialised, error.message));
            }
            Err(error) => return Err(error),
        }
        tracing::info!(%cluster_id, "initialised a new cluster");
        Ok(InitInfo {
            cluster_id,
            node_id: self.identity.node_id,
            raft_node_id: self.identity.raft_node_id,
        })
    }

    fn status(&self) -> StatusInfo {
        let (cluster, revision, nodes) = self
            .consensus
            .read_stale(|state| (state.cluster.clone(), state.revision, state.nodes.len()));
        let cluster = cluster.map(|cluster| {
            let metrics = self.consensus.metrics();
            let membership = metrics.membership_config.membership();
            let leader_remote_addr = metrics
                .current_leader
                .and_then(|leader| membership.get_node(&leader))
                .map(|node| node.remote_addr.clone());
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
            }
        });
        StatusInfo {
            node_id: self.identity.node_id,
            raft_node_id: self.identity.raft_node_id,
            agent_version: crate::VERSION.to_string(),
            cluster,
        }
    }

    fn node_infos(&self, records: Vec<NodeRecord>) -> Vec<NodeInfo> {
        let metrics = self.consensus.metrics();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        records
            .into_iter()
            .map(|record| {
                let raft_role = record.raft_node_id.map(|raft_id| {
                    if metrics.current_leader == Some(raft_id) {
                        "leader"
                    } else if voters.contains(&raft_id) {
                        "follower"
                    } else if learners.contains(&raft_id) {
                        "learner"
                    } else {
                        "removed"
                    }
                    .to_string()
                });
                NodeInfo {
                    node_id: record.node_id,
                    raft_node_id: record.raft_node_id,
                    hostname: record.hostname,
                    role: match record.role {
                        NodeRole::Manager => Role::Manager,
                        NodeRole::Worker => Role::Worker,
                    },
                    status: record.status.as_str().to_string(),
                    availability: record.availability.as_str().to_string(),
                    raft_addr: record.raft_addr,
                    remote_addr: record.remote_addr,
                    raft_role,
                    agent_version: record.agent_version,
                    joined_at_ms: record.joined_at_ms,
                    voter: None,
                    matched_index: None,
                    lag: None,
                    reachable: None,
                }
            })
            .collect()
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

fn not_initialised() -> CtlError {
    CtlError::new(
        ErrorCode::NotInitialised,
        "this node is not part of a cluster yet; run `symphony-ctl init` to create one",
    )
}

fn compare_failed(key: &str, expected: u64, actual: u64) -> CtlError {
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
        ConsensusError::NoQuorum(_) | ConsensusError::Stopped(_) => ErrorCode::Unavailable,
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
    fn not_leader_maps_to_no_leader() {
        let error = consensus_error(ConsensusError::NotLeader {
            leader_id: Some(3),
            leader: None,
        });
        assert_eq!(error.code, ErrorCode::NoLeader);
        assert!(error.message.contains("leader is 3"));
    }
}
