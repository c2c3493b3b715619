//! Cluster-wide settings (`cluster update`) and the CA's view of the certificates it issued
//! (`ca status`).

use std::collections::BTreeMap;
use std::time::Duration;

use symphony_consensus::{ClusterCommand, ClusterInfo, Command, Consensus, NodeRole};
use symphony_ctl::proto::{
    CaRootCount, CaRotationInfo, CaStatusInfo, ClusterSettingsInfo, CtlError, ErrorCode,
    NodeCertInfo, ReadConsistency, Response, Role,
};

use crate::errors::not_initialised;
use crate::manager::propose::{propose_client, read, require_cluster};

/// `cluster update`: each setting given is one command, merged in the log.
pub async fn update(
    consensus: &Consensus,
    cert_expiry_ms: Option<u64>,
) -> Result<Response, CtlError> {
    require_cluster(consensus)?;
    if let Some(asked) = cert_expiry_ms {
        let lifetime =
            symphony_pki::ca::check_lifetime(Duration::from_millis(asked)).map_err(|error| {
                CtlError::new(ErrorCode::BadRequest, format!("--cert-expiry: {error}"))
                    .not_applied()
            })?;
        let command = Command::Cluster(Box::new(ClusterCommand::SetCertLifetime {
            seconds: lifetime.as_secs(),
        }));
        propose_client(consensus, command).await?;
        tracing::info!(
            seconds = lifetime.as_secs(),
            "the node certificate lifetime was changed"
        );
    }
    let cluster = require_cluster(consensus)?;
    Ok(Response::Cluster(ClusterSettingsInfo {
        cluster_id: cluster.cluster_id.clone(),
        cert_expiry_ms: millis(&cluster),
    }))
}

fn millis(cluster: &ClusterInfo) -> u64 {
    u64::try_from(cluster.cert_lifetime().as_millis()).unwrap_or(u64::MAX)
}

/// `ca status`: the current root, and per node the root and end of the certificate last
/// issued to it, as the cluster recorded them.
pub async fn ca_status(
    consensus: &Consensus,
    consistency: ReadConsistency,
) -> Result<Response, CtlError> {
    let (cluster, nodes) = read(consensus, consistency, |state| {
        (
            state.cluster.clone(),
            state.nodes.values().cloned().collect::<Vec<_>>(),
        )
    })
    .await?;
    let cluster = cluster.ok_or_else(not_initialised)?;
    let root_digest = cluster.root_digest().ok_or_else(crate::tokens::no_ca)?;
    let rotation = cluster.ca_rotation.as_ref().map(|rotation| CaRotationInfo {
        started_ms: rotation.started_ms,
        old_root_digest: symphony_pki::CaBundle::of_roots(&[&rotation.old_root_pem])
            .digest()
            .unwrap_or_default(),
        waiting_for: crate::manager::ca_rotation::waiting_for(&cluster, &nodes),
    });
    let mut counts: BTreeMap<Option<String>, u64> = BTreeMap::new();
    let nodes: Vec<NodeCertInfo> = nodes
        .into_iter()
        .map(|record| {
            let root = record
                .certificate
                .as_ref()
                .map(|cert| cert.root_digest.clone());
            *counts.entry(root.clone()).or_default() += 1;
            NodeCertInfo {
                node_id: record.node_id,
                hostname: record.hostname,
                role: match record.role {
                    NodeRole::Manager => Role::Manager,
                    NodeRole::Worker => Role::Worker,
                },
                status: record.status.as_str().to_string(),
                root_digest: root,
                not_after_ms: record.certificate.map(|cert| cert.not_after_ms),
            }
        })
        .collect();
    Ok(Response::CaStatus(Box::new(CaStatusInfo {
        cluster_id: cluster.cluster_id.clone(),
        root_digest,
        cert_expiry_ms: millis(&cluster),
        roots: counts
            .into_iter()
            .map(|(root_digest, nodes)| CaRootCount { root_digest, nodes })
            .collect(),
        nodes,
        rotation,
    })))
}

/// `ca rotate`: starts a rotation of the root unless one is under way; answers with the
/// status as the leader's replica holds it once the start is applied.
pub async fn ca_rotate(consensus: &Consensus) -> Result<Response, CtlError> {
    let cluster = require_cluster(consensus)?;
    if cluster.ca_rotation.is_none() {
        let command = crate::manager::ca_rotation::start(&cluster, crate::now_ms())?;
        propose_client(consensus, command).await?;
        tracing::info!("a root rotation started: every node renews onto the new root");
    }
    ca_status(consensus, ReadConsistency::Stale).await
}
