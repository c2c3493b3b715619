//! On any manager: renewing a node's certificate over the node's own mutual TLS.
//!
//! The node is the one the caller's verified certificate names — never an id the request
//! carries — and its role is the one its record in the cluster state holds (a certificate
//! asks for nothing). A node removed from the cluster, one that left, and one the state does
//! not know are refused. The new certificate lives for the cluster's current lifetime. What
//! was issued is recorded in the node's record through the leader (`CertificateIssued`);
//! that record is for operators, later joins and the end of a root rotation, so a renewal
//! is handed out at once and recorded in the background, tried again for about a minute (the
//! node's key, which the record names, does not change).

use symphony_consensus::{NodeRole, NodeStatus};
use symphony_ctl::proto::{CtlError, ErrorCode, Role};
use symphony_pki::CertIdentity;

use super::admission::{certificate_record, issue_certificate};
use super::propose::require_cluster;
use crate::context::Context;
use crate::errors::not_initialised;
use crate::remote::proto::{RemoteCall, RemoteRequest};

/// The first wait before recording a renewal again, and the last (about a minute in all).
const RECORD_FIRST_RETRY: std::time::Duration = std::time::Duration::from_millis(250);
const RECORD_LAST_RETRY: std::time::Duration = std::time::Duration::from_secs(32);

/// Issues the node `caller` names a new certificate for the key of `csr`; returns it and the
/// CA bundle it checks out against.
pub async fn renew(
    ctx: &Context,
    caller: Option<&CertIdentity>,
    csr: &str,
) -> Result<(String, String), CtlError> {
    let caller = caller.ok_or_else(|| {
        CtlError::new(
            ErrorCode::Forbidden,
            "a certificate renewal needs the certificate it renews",
        )
        .not_applied()
    })?;
    if ctx.node.is_worker() {
        return Err(CtlError::new(
            ErrorCode::NotManager,
            "this node is a worker; renew a certificate with a manager",
        ));
    }
    let consensus = ctx.node.consensus().ok_or_else(not_initialised)?;
    let cluster = require_cluster(&consensus)?;
    if caller.cluster_id != cluster.cluster_id {
        return Err(CtlError::new(
            ErrorCode::WrongCluster,
            format!(
                "the certificate names {caller}, not a node of cluster {}",
                cluster.cluster_id
            ),
        ));
    }
    let node_id = caller.node_id;
    if cluster.is_removed(node_id) {
        return Err(CtlError::new(
            ErrorCode::NodeRemoved,
            format!("node {node_id} was removed from the cluster; its certificate is not renewed"),
        )
        .not_applied());
    }
    let record = consensus.read_stale(|state| state.nodes.get(&node_id).cloned());
    let role = match record {
        Some(record) if record.status == NodeStatus::Left => {
            return Err(CtlError::new(
                ErrorCode::Forbidden,
                format!(
                    "node {node_id} has left the cluster; it joins again to be issued a certificate"
                ),
            )
            .not_applied());
        }
        Some(record) => match record.role {
            NodeRole::Manager => Role::Manager,
            NodeRole::Worker => Role::Worker,
        },
        None => {
            return Err(CtlError::new(
                ErrorCode::NotFound,
                format!("this manager's replica has no node {node_id}; try another manager, or join again"),
            )
            .not_applied());
        }
    };
    let certificate = issue_certificate(&cluster, csr, node_id, role)?;
    let ca = cluster.ca.as_ref().ok_or_else(crate::tokens::no_ca)?;
    let bundle = cluster.trust_bundle().ok_or_else(crate::tokens::no_ca)?;
    tracing::info!(node_id, %role, "renewed a node's certificate");
    match certificate_record(&certificate, &ca.bundle()) {
        Ok(record) => {
            let call = RemoteCall {
                request: RemoteRequest::CertificateIssued {
                    secret: cluster.manager_secret.clone(),
                    node_id,
                    certificate: record,
                },
                forwarded: false,
            };
            // Recorded in the background, tried again for a while: a root rotation ends only
            // once every node's record names the new root, and the node, holding its new
            // certificate, will not ask again for weeks.
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let mut delay = RECORD_FIRST_RETRY;
                loop {
                    // Routed to the leader like any leader's call.
                    match crate::remote::server::handle(&ctx, call.clone()).await {
                        Ok(_) => return,
                        Err(error) if delay > RECORD_LAST_RETRY => {
                            tracing::warn!(node_id, %error, "cannot record the renewed certificate in the node's record; giving up");
                            return;
                        }
                        Err(error) => {
                            tracing::debug!(node_id, %error, "cannot record the renewed certificate yet; trying again");
                        }
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            });
        }
        Err(error) => {
            tracing::warn!(node_id, %error, "cannot read the renewed certificate to record it");
        }
    }
    Ok((certificate, bundle.pem))
}
