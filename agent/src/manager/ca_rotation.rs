//! A root rotation (`ca rotate`): the handler starts it on the leader, and the leader's loop
//! ends it once every node holds a certificate of the new root.
//!
//! Starting: the leader makes a new root and signs its certificate with the old root's key
//! (`ClusterCa::rotate`), then proposes `StartCaRotation`: from that entry on every manager
//! issues from the new root, sends the cross-signed root after each certificate (so a node
//! that trusts only the old root takes it), and trusts both roots; the join tokens are
//! replaced by ones that pin the bundle of both. Every node learns the new bundle (a manager
//! from its replica, `manager::trust`; a worker from its session's stream) and renews at once.
//! Each renewal is recorded in the node's record with the root that issued it.
//!
//! Ending: once every node that has not left holds a certificate of the new root ([`decide`],
//! pure), the leader proposes `FinishCaRotation`: the old root is trusted no more and the join
//! tokens pin the new root alone. A node that is down blocks the end until it is back (and
//! renewed) or removed (`node rm`); `ca status` names it.

use std::time::Duration;

use symphony_consensus::state::{cluster, nodes};
use symphony_consensus::{
    ClusterCommand, ClusterInfo, Command, Consensus, NodeRecord, NodeRole, NodeStatus,
};
use symphony_ctl::proto::CtlError;
use symphony_pki::CaBundle;
use tokio_util::sync::CancellationToken;

use super::propose::propose;
use crate::tokens;

/// How often the leader looks again without a change (a record written while it was busy).
const INTERVAL: Duration = Duration::from_secs(1);

/// The nodes that still hold a certificate of another root than the cluster's current one
/// (or none recorded), of those that have not left: what a rotation waits for.
pub fn waiting_for<'a>(
    cluster: &ClusterInfo,
    nodes: impl IntoIterator<Item = &'a NodeRecord>,
) -> Vec<u64> {
    let current = cluster.root_digest();
    nodes
        .into_iter()
        .filter(|node| node.status != NodeStatus::Left)
        .filter(|node| node.certificate.as_ref().map(|cert| &cert.root_digest) != current.as_ref())
        .map(|node| node.node_id)
        .collect()
}

/// Whether the rotation under way can end, and to which root: once no node waits.
pub fn decide<'a>(
    cluster: &ClusterInfo,
    nodes: impl IntoIterator<Item = &'a NodeRecord>,
) -> Option<String> {
    cluster.ca_rotation.as_ref()?;
    if !waiting_for(cluster, nodes).is_empty() {
        return None;
    }
    cluster.root_digest()
}

/// The command that starts a rotation of `cluster`'s root, at `now_ms`.
pub fn start(cluster: &ClusterInfo, now_ms: u64) -> Result<Command, CtlError> {
    let ca = cluster.ca.as_ref().ok_or_else(tokens::no_ca)?;
    let internal = |error: symphony_pki::PkiError| {
        crate::errors::internal(format!("cannot make the new root: {error}"))
    };
    let from_root_digest = cluster.root_digest().ok_or_else(tokens::no_ca)?;
    let rotated = ca
        .rotate(&cluster.cluster_id, std::time::SystemTime::now())
        .map_err(internal)?;
    let both = CaBundle::of_roots(&[&rotated.ca.cert_pem, &ca.cert_pem]);
    Ok(Command::Cluster(Box::new(
        ClusterCommand::StartCaRotation {
            from_root_digest,
            manager_token: tokens::join_token_pinning(&both, NodeRole::Manager)?,
            worker_token: tokens::join_token_pinning(&both, NodeRole::Worker)?,
            ca: rotated.ca,
            cross_signed_pem: rotated.cross_signed_pem,
            started_ms: now_ms,
        },
    )))
}

/// The command that ends the rotation to the root of digest `root_digest`.
pub fn finish(cluster: &ClusterInfo, root_digest: String) -> Result<Command, CtlError> {
    let ca = cluster.ca.as_ref().ok_or_else(tokens::no_ca)?;
    let alone = CaBundle::of_roots(&[&ca.cert_pem]);
    Ok(Command::Cluster(Box::new(
        ClusterCommand::FinishCaRotation {
            root_digest,
            manager_token: tokens::join_token_pinning(&alone, NodeRole::Manager)?,
            worker_token: tokens::join_token_pinning(&alone, NodeRole::Worker)?,
        },
    )))
}

/// Runs while this node leads (until `stop`): ends a rotation once every node moved.
pub async fn run(consensus: Consensus, stop: CancellationToken) {
    let mut changes = consensus.watch_tables(&[cluster::TABLE, nodes::TABLE]);
    let mut ticks = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            alive = changes.changed() => if !alive { return },
            _ = ticks.tick() => {}
        }
        let decided = consensus.read_stale(|state| {
            let cluster = state.cluster.as_ref()?;
            let root = decide(cluster, state.nodes.values())?;
            Some(finish(cluster, root))
        });
        match decided {
            None => {}
            Some(Err(error)) => tracing::warn!(%error, "cannot end the root rotation"),
            Some(Ok(command)) => match propose(&consensus, command).await {
                Ok(_) => tracing::info!(
                    "every node holds a certificate of the new root: the old root is no longer trusted, and the join tokens were replaced"
                ),
                Err(error) => {
                    tracing::debug!(%error, "ending the root rotation failed; will retry")
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::manager::testing;

    #[test]
    fn a_rotation_ends_once_every_node_that_has_not_left_moved() {
        let old = symphony_pki::ClusterCa::generate("c").unwrap();
        let mut state = testing::cluster(0);
        let template = state.nodes[&testing::MANAGER].clone();
        state.cluster.as_mut().unwrap().ca = Some(old);
        let cluster = state.cluster.clone().unwrap();
        let old_digest = cluster.root_digest().unwrap();
        let record = |id: u64| {
            let mut node = template.clone();
            node.node_id = id;
            node
        };
        let on = |id: u64, root: &str, status: NodeStatus| {
            let mut node = record(id);
            node.status = status;
            node.certificate = Some(symphony_consensus::NodeCertificate {
                key_digest: "k".into(),
                not_after_ms: 1,
                root_digest: root.into(),
            });
            node
        };
        // No rotation: nothing to end, whoever holds what.
        let nodes = [on(1, &old_digest, NodeStatus::Ready)];
        assert_eq!(decide(&cluster, &nodes), None);

        let start = start(&cluster, 7).unwrap();
        let mut changes = Default::default();
        assert_eq!(
            state.apply(&start, &mut changes),
            symphony_consensus::CommandResult::Done
        );
        let cluster = state.cluster.clone().unwrap();
        let new_digest = cluster.root_digest().unwrap();
        assert!(cluster.ca_rotation.is_some());

        let mut nodes = vec![
            on(1, &new_digest, NodeStatus::Ready),
            on(2, &old_digest, NodeStatus::Ready),
            on(3, &old_digest, NodeStatus::Down),
            on(4, &old_digest, NodeStatus::Left),
        ];
        let mut unrecorded = record(5);
        unrecorded.certificate = None;
        nodes.push(unrecorded);
        // A node of the old root, up or down, and one whose certificate was not recorded, wait;
        // one that left does not.
        assert_eq!(waiting_for(&cluster, &nodes), vec![2, 3, 5]);
        assert_eq!(decide(&cluster, &nodes), None);
        nodes.retain(|node| node.node_id != 5);
        nodes[1] = on(2, &new_digest, NodeStatus::Ready);
        assert_eq!(decide(&cluster, &nodes), None);
        nodes[2] = on(3, &new_digest, NodeStatus::Ready);
        assert_eq!(decide(&cluster, &nodes), Some(new_digest.clone()));

        let finish = finish(&cluster, new_digest).unwrap();
        assert_eq!(
            state.apply(&finish, &mut changes),
            symphony_consensus::CommandResult::Done
        );
        let cluster = state.cluster.clone().unwrap();
        assert!(cluster.ca_rotation.is_none());
        // The new tokens pin the new root alone.
        let pinned = tokens::parse(&cluster.worker_token).unwrap().ca_digest;
        assert!(
            cluster
                .trust_bundle()
                .unwrap()
                .matches_digest(&pinned)
                .unwrap()
        );
        assert_eq!(decide(&cluster, &nodes), None);
    }
}
