//! On the leader: admitting a node that asks to join — a manager with the manager token (or
//! named by `init --peers`), a worker with the worker token. The token decides the role; a
//! wrong or rotated one is refused and nothing is written. The record is written by one
//! [`NodeCommand::Join`], merged in the log into whatever record the node had.

use symphony_consensus::{
    ClusterInfo, Command, Consensus, GossipKeyring, ManagerNode, NodeCommand, NodeJoin, NodeRole,
    NodeStatus, Resources,
};
use symphony_ctl::proto::{CtlError, ErrorCode, Role};
use symphony_pki::{CertIdentity, CertRole, PkiError};

use super::propose::{propose, require_cluster};
use crate::errors::{bad_request, consensus_error};
use crate::remote::proto::{JoinReply, JoinRequest, ManagerContact};
use crate::tokens::{self, constant_time_eq};

/// Admits `join` on the leader.
pub async fn admit(consensus: &Consensus, join: JoinRequest) -> Result<JoinReply, CtlError> {
    let cluster = require_cluster(consensus)?;
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
    let member = consensus
        .membership()
        .nodes
        .contains_key(&join.raft_node_id);
    let role = match join.token.as_deref() {
        Some(token) if constant_time_eq(token.as_bytes(), cluster.manager_token.as_bytes()) => {
            Role::Manager
        }
        Some(token) if constant_time_eq(token.as_bytes(), cluster.worker_token.as_bytes()) => {
            Role::Worker
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
    let node_id = join.node_id;
    // Without a token a join only registers a member `init --peers` named: one that already
    // has a record is answered as it is, never rewritten (the ids it takes are no secret).
    if join.token.is_none() {
        let registered = consensus.read_stale(|state| {
            state
                .nodes
                .get(&node_id)
                .map(|record| record.raft_node_id == Some(join.raft_node_id))
        });
        match registered {
            Some(true) => {
                return Ok(JoinReply {
                    cluster_id: cluster.cluster_id,
                    role,
                    leader_raft_id: Some(consensus.raft_node_id()),
                    node_secret: None,
                    managers: manager_contacts(consensus),
                    gossip_keys: None,
                    // Its certificate was issued when it first registered: the ids it
                    // names are no secret, so they earn nothing more.
                    certificate: None,
                });
            }
            Some(false) => {
                return Err(CtlError::new(
                    ErrorCode::InvalidToken,
                    format!(
                        "node {node_id} is registered already; joining as it again needs a join token"
                    ),
                ));
            }
            None => {}
        }
    }
    // Issued before anything is written, so a request that cannot be signed changes nothing.
    let certificate = join
        .csr
        .as_deref()
        .map(|csr| issue_certificate(&cluster, csr, node_id, role))
        .transpose()?;
    let (node, node_secret) = match role {
        Role::Worker => {
            let secret = tokens::secret();
            (node_join(join, role, Some(secret.clone())), Some(secret))
        }
        Role::Manager => {
            // Refuse a clone before it is added to the Raft group; the log checks again.
            if let Some(reason) = manager_clash(consensus, &join) {
                return Err(bad_request(reason));
            }
            if !member {
                let node = ManagerNode {
                    raft_addr: join.raft_addr.clone(),
                    remote_addr: join.remote_addr.clone(),
                };
                consensus
                    .add_learner(join.raft_node_id, node)
                    .await
                    .map_err(consensus_error)?;
            }
            (node_join(join, role, None), None)
        }
    };
    let command = Command::Node(NodeCommand::Join {
        node,
        at_ms: crate::now_ms(),
    });
    propose(consensus, command).await?;
    tracing::info!(node_id, %role, "admitted a node");
    Ok(JoinReply {
        cluster_id: cluster.cluster_id,
        role,
        leader_raft_id: Some(consensus.raft_node_id()),
        node_secret,
        managers: manager_contacts(consensus),
        // Read after the join is applied, so a rotation's check, which asks every node in
        // the table, either counted this node or happened before this keyring was read.
        gossip_keys: (role == Role::Worker).then(|| gossip_keyring(consensus)),
        certificate,
    })
}

/// A certificate for `node_id` as `role` of `cluster`, for the key of `csr`: the identity is
/// the leader's decision, whatever the request asked for.
pub fn issue_certificate(
    cluster: &ClusterInfo,
    csr: &str,
    node_id: u64,
    role: Role,
) -> Result<String, CtlError> {
    let ca = cluster.ca.as_ref().ok_or_else(tokens::no_ca)?;
    issue_with(ca, &cluster.cluster_id, csr, node_id, role)
}

/// Issues a certificate with `ca` for node `node_id` of `cluster_id` as `role`, to the key of
/// `csr`, whatever else the request asks for.
pub fn issue_with(
    ca: &symphony_pki::ClusterCa,
    cluster_id: &str,
    csr: &str,
    node_id: u64,
    role: Role,
) -> Result<String, CtlError> {
    let identity = CertIdentity {
        cluster_id: cluster_id.to_string(),
        role: match role {
            Role::Manager => CertRole::Manager,
            Role::Worker => CertRole::Worker,
        },
        node_id,
    };
    ca.issue(csr, &identity, std::time::SystemTime::now())
        .map(|issued| issued.cert_pem)
        .map_err(|error| match error {
            PkiError::Malformed { .. } | PkiError::BadRequestSignature => bad_request(format!(
                "the join's certificate request was refused: {error}"
            )),
            other => crate::errors::internal(format!("cannot issue a certificate: {other}")),
        })
}

/// The cluster's gossip keyring, as this manager's replica holds it.
pub fn gossip_keyring(consensus: &Consensus) -> GossipKeyring {
    consensus.read_stale(|state| {
        state
            .cluster
            .as_ref()
            .map(|cluster| cluster.gossip_keys.clone())
            .unwrap_or_default()
    })
}

/// Why a manager join may not take its node id (see [`NodeCommand::Join`]).
fn manager_clash(consensus: &Consensus, join: &JoinRequest) -> Option<String> {
    consensus.read_stale(|state| {
        let existing = state.nodes.get(&join.node_id)?;
        // A manager that left comes back under a new Raft id; any other change is a clone.
        (existing.raft_node_id != Some(join.raft_node_id) && existing.status != NodeStatus::Left)
            .then(|| {
                format!(
                    "node id {} is already taken by another node; copying a config dir clones its identity",
                    join.node_id
                )
            })
    })
}

/// The record a joining node asks for: a manager with its Raft id and address, a worker with
/// the secret the leader hands it.
fn node_join(join: JoinRequest, role: Role, node_secret: Option<String>) -> NodeJoin {
    let manager = role == Role::Manager;
    NodeJoin {
        node_id: join.node_id,
        raft_node_id: manager.then_some(join.raft_node_id),
        role: if manager {
            NodeRole::Manager
        } else {
            NodeRole::Worker
        },
        hostname: join.hostname,
        remote_addr: join.remote_addr,
        raft_addr: manager.then_some(join.raft_addr),
        gossip_addr: join.gossip_addr,
        resources: Resources {
            cpus: join.cpus,
            memory_bytes: join.memory_bytes,
            docker: join.docker,
        },
        agent_version: join.agent_version,
        labels: join.labels,
        node_secret,
    }
}

/// The managers of the cluster, as workers should know them.
pub fn manager_contacts(consensus: &Consensus) -> Vec<ManagerContact> {
    consensus.read_stale(|state| {
        state
            .nodes
            .values()
            .filter(|record| record.role == NodeRole::Manager && record.status != NodeStatus::Left)
            .map(|record| ManagerContact {
                node_id: record.node_id,
                remote_addr: record.remote_addr.clone(),
                gossip_addr: record.gossip_addr.clone(),
            })
            .collect()
    })
}
