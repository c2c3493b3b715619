//! On the leader: admitting a node that asks to join — a manager with the manager token (or
//! named by `init --peers`), a worker with the worker token. The token decides the role; a
//! wrong or rotated one is refused and nothing is written. The record is written by one
//! [`NodeCommand::Join`], merged in the log into whatever record the node had, with what was
//! issued to it (its key's digest, the certificate's end, the root).
//!
//! **Joining again under an id the cluster knows** (a node whose certificate expired while it
//! was off re-enrols with a token, and keeps its id, role and state): a token proves the right
//! to join, not to be a particular node, so a token holder could otherwise claim any node's id
//! and be issued its certificate. The join keeps an existing id only if its certificate request
//! is for the key the cluster last issued that id a certificate for (the node's key never
//! leaves its config dir, and never changes). A removed node's id joins no more.

use symphony_consensus::{
    ClusterInfo, Command, Consensus, GossipKeyring, ManagerNode, NodeCertificate, NodeCommand,
    NodeJoin, NodeRole, NodeStatus, Resources,
};
use symphony_ctl::proto::{CtlError, ErrorCode, Role};
use symphony_pki::{CaBundle, CertIdentity, CertRole, PkiError};

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
    if cluster.is_removed(join.node_id) {
        return Err(CtlError::new(
            ErrorCode::NodeRemoved,
            format!(
                "node {} was removed from cluster {}; a removed node joins again only with a fresh --config-dir (a new node id)",
                join.node_id, cluster.cluster_id
            ),
        )
        .not_applied());
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
    if join.token.is_some() {
        let held = consensus.read_stale(|state| {
            state
                .nodes
                .get(&node_id)
                .and_then(|record| record.certificate.clone())
        });
        check_same_key(node_id, held.as_ref(), join.csr.as_deref())?;
    }
    // Issued before anything is written, so a request that cannot be signed changes nothing.
    let certificate = join
        .csr
        .as_deref()
        .map(|csr| issue_certificate(&cluster, csr, node_id, role))
        .transpose()?;
    let record = match (&certificate, &cluster.ca) {
        (Some(certificate), Some(ca)) => Some(certificate_record(certificate, &ca.bundle())?),
        _ => None,
    };
    let (node, node_secret) = match role {
        Role::Worker => {
            let secret = tokens::secret();
            (
                node_join(join, role, Some(secret.clone()), record),
                Some(secret),
            )
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
            (node_join(join, role, None, record), None)
        }
    };
    let command = Command::Node(Box::new(NodeCommand::Join {
        node,
        at_ms: crate::now_ms(),
    }));
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

/// Refuses a token join under `node_id` unless its certificate request `csr` is for the key
/// of the certificate last issued under that id (`held`; `None` for a new id, or one admitted
/// before certificates were recorded, which any join may take as before).
fn check_same_key(
    node_id: u64,
    held: Option<&NodeCertificate>,
    csr: Option<&str>,
) -> Result<(), CtlError> {
    let Some(held) = held else {
        return Ok(());
    };
    let asked = csr.map(symphony_pki::ca::request_key_digest).transpose();
    match asked {
        Ok(Some(digest)) if digest.eq_ignore_ascii_case(&held.key_digest) => Ok(()),
        Ok(_) => {
            tracing::warn!(
                node_id,
                "a join claimed a known node id without that node's key; refused"
            );
            Err(CtlError::new(
                ErrorCode::Forbidden,
                format!(
                    "node id {node_id} belongs to a node of this cluster, and this join does not prove it holds that node's key; a node joins again from its own config dir, and a new node from a fresh one"
                ),
            )
            .not_applied())
        }
        Err(error) => Err(bad_request(format!(
            "the join's certificate request was refused: {error}"
        ))),
    }
}

/// What the node's record keeps of `cert_pem`, issued from `bundle`.
pub fn certificate_record(cert_pem: &str, bundle: &CaBundle) -> Result<NodeCertificate, CtlError> {
    let unreadable = |error: PkiError| {
        crate::errors::internal(format!("cannot read a certificate just issued: {error}"))
    };
    let validity = symphony_pki::verify::validity_of(cert_pem).map_err(unreadable)?;
    Ok(NodeCertificate {
        key_digest: symphony_pki::verify::public_key_digest(cert_pem).map_err(unreadable)?,
        not_after_ms: crate::millis_since_epoch(validity.not_after),
        root_digest: bundle.digest().map_err(unreadable)?,
    })
}

/// A certificate for `node_id` as `role` of `cluster`, for the key of `csr`, valid for the
/// cluster's current lifetime: the identity is the leader's decision, whatever the request
/// asked for. It comes from the current root, followed by what it is presented with (the
/// chain a node keeps and sends).
pub fn issue_certificate(
    cluster: &ClusterInfo,
    csr: &str,
    node_id: u64,
    role: Role,
) -> Result<String, CtlError> {
    let ca = cluster.ca.as_ref().ok_or_else(tokens::no_ca)?;
    let certificate = issue_with(
        ca,
        &cluster.cluster_id,
        csr,
        node_id,
        role,
        cluster.cert_lifetime(),
    )?;
    // During a root rotation, with the new root cross-signed by the old: nodes that trust
    // only the old root yet take it through that.
    Ok(format!("{certificate}{}", cluster.issued_chain()))
}

/// Issues a certificate with `ca` for node `node_id` of `cluster_id` as `role`, to the key of
/// `csr`, valid for `lifetime` (backdated an hour), whatever else the request asks for.
pub fn issue_with(
    ca: &symphony_pki::ClusterCa,
    cluster_id: &str,
    csr: &str,
    node_id: u64,
    role: Role,
    lifetime: std::time::Duration,
) -> Result<String, CtlError> {
    let identity = CertIdentity {
        cluster_id: cluster_id.to_string(),
        role: match role {
            Role::Manager => CertRole::Manager,
            Role::Worker => CertRole::Worker,
        },
        node_id,
    };
    ca.issue_valid_for(csr, &identity, std::time::SystemTime::now(), lifetime)
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
fn node_join(
    join: JoinRequest,
    role: Role,
    node_secret: Option<String>,
    certificate: Option<NodeCertificate>,
) -> NodeJoin {
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
        certificate: certificate.map(Box::new),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_known_id_joins_again_only_with_its_key() {
        let key = symphony_pki::NodeKey::generate().unwrap();
        let held = NodeCertificate {
            key_digest: key.public_key_digest(),
            not_after_ms: 1,
            root_digest: "r".into(),
        };
        let own = key.request("again").unwrap();
        assert!(check_same_key(5, Some(&held), Some(&own)).is_ok());
        let other = symphony_pki::NodeKey::generate()
            .unwrap()
            .request("thief")
            .unwrap();
        let refused = check_same_key(5, Some(&held), Some(&other)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden);
        let without = check_same_key(5, Some(&held), None).unwrap_err();
        assert_eq!(
            without.code,
            ErrorCode::Forbidden,
            "no request proves no key"
        );
        // A new id, or one recorded before keys were: as before.
        assert!(check_same_key(5, None, Some(&other)).is_ok());
        assert!(check_same_key(5, None, None).is_ok());
    }
}
