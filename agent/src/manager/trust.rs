//! On every manager: what its TLS takes from the cluster record in its replica.
//!
//! - The nodes `node rm` removed (`ClusterInfo::removed_nodes`, added to by the same log
//!   entry that removes the node), into `TlsStore::set_removed`: this manager refuses their
//!   certificates in the next handshake and on the next call of a connection already open.
//! - The CA bundle the cluster trusts (`ClusterInfo::trust_bundle`), into
//!   `TlsStore::set_trust`: during a root rotation the new root and the old, then the new
//!   alone. A new bundle wakes the renewer, which moves the node onto the new root.
//!
//! Both are cluster state, so every manager refuses and trusts the same, a restarted one as
//! soon as its replica is loaded, and a new one once it has caught up. Workers learn the
//! bundle from their session's stream (`dispatcher`).

use std::sync::Arc;

use symphony_consensus::Consensus;
use symphony_consensus::state::cluster;
use tokio_util::sync::CancellationToken;

use crate::node::NodeHandle;
use crate::node::follow::each_raft_node;
use crate::tls::TlsStore;

fn publish(consensus: &Consensus, tls: &TlsStore) {
    let (removed, bundle) = consensus.read_stale(|state| match state.cluster.as_ref() {
        Some(cluster) => (cluster.removed_nodes.clone(), cluster.trust_bundle()),
        None => (Default::default(), None),
    });
    tls.set_removed(&removed);
    if let Some(bundle) = bundle
        && let Err(error) = tls.set_trust(&bundle)
    {
        tracing::error!(%error, "cannot keep the cluster's CA bundle");
    }
}

/// Follows the cluster record of whichever Raft node the supervisor runs, until `shutdown`.
pub async fn watch(node: NodeHandle, tls: Arc<TlsStore>, shutdown: CancellationToken) {
    each_raft_node(node, shutdown, |consensus| {
        let tls = tls.clone();
        async move {
            let mut tables = consensus.watch_tables(&[cluster::TABLE]);
            publish(&consensus, &tls);
            while tables.changed().await {
                publish(&consensus, &tls);
            }
        }
    })
    .await;
}
