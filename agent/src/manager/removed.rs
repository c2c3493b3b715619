//! On every manager: the nodes `node rm` removed, followed from the replica into the node's
//! TLS (`TlsStore::set_removed`), so that this manager refuses their certificates in the next
//! handshake and on the next call of a connection already open.
//!
//! The list is cluster state (`ClusterInfo::removed_nodes`, added to by the same log entry
//! that removes the node), so every manager refuses the same nodes, a restarted one as soon
//! as its replica is loaded, and a new one once it has caught up.

use std::sync::Arc;

use symphony_consensus::Consensus;
use symphony_consensus::state::cluster;
use tokio_util::sync::CancellationToken;

use crate::node::NodeHandle;
use crate::tls::TlsStore;

fn publish(consensus: &Consensus, tls: &TlsStore) {
    let removed = consensus.read_stale(|state| {
        state
            .cluster
            .as_ref()
            .map(|cluster| cluster.removed_nodes.clone())
            .unwrap_or_default()
    });
    tls.set_removed(&removed);
}

/// Follows the removed nodes of whichever Raft node the supervisor runs, until `shutdown`.
pub async fn watch(mut node: NodeHandle, tls: Arc<TlsStore>, shutdown: CancellationToken) {
    loop {
        let Some(consensus) = node.consensus() else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = node.changed() => continue,
            }
        };
        let mut tables = consensus.watch_tables(&[cluster::TABLE]);
        publish(&consensus, &tls);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                running = tables.changed() => {
                    if !running {
                        break;
                    }
                    publish(&consensus, &tls);
                }
                _ = node.changed() => {
                    if !node.consensus().is_some_and(|now| now.same_node(&consensus)) {
                        break;
                    }
                }
            }
        }
    }
}
