//! Liveness as the cluster state records it: each change of a node's status (ready, down,
//! left) that this manager's replica applies, counted by the status it changed to.
//!
//! Counted from the replica rather than inside the leader's liveness loop, so that every
//! manager counts the same changes (each applies the same log) and a leader change loses none;
//! the loop keeps its narrow handles. A node's first appearance (a join) is not a change.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use symphony_consensus::state::nodes;
use symphony_consensus::{Consensus, NodeStatus};
use tokio_util::sync::CancellationToken;

use crate::node::NodeHandle;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// The status-change counter; cheap to clone. Only [`watch`] bumps it.
#[derive(Clone, Debug, Default)]
pub struct StatusChanges {
    total: Family<StatusLabels, Counter>,
}

impl StatusChanges {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "node_status_changes",
            "Changes of a node's status (to ready, down or left) this manager's replica applied, by the new status",
            self.total.clone(),
        );
    }
}

/// Every node's status in the replica.
fn statuses(consensus: &Consensus) -> BTreeMap<u64, NodeStatus> {
    consensus.read_stale(|state| {
        state
            .nodes
            .iter()
            .map(|(id, record)| (*id, record.status))
            .collect()
    })
}

/// The statuses nodes known `before` moved to by `after`.
fn changes(
    before: &BTreeMap<u64, NodeStatus>,
    after: &BTreeMap<u64, NodeStatus>,
) -> Vec<NodeStatus> {
    after
        .iter()
        .filter_map(|(id, status)| {
            let was = before.get(id)?;
            (was != status).then_some(*status)
        })
        .collect()
}

/// Counts status changes until `shutdown`, following whichever Raft node the supervisor runs
/// (a new one starts from what its replica holds: not counted again).
pub async fn watch(mut node: NodeHandle, counter: StatusChanges, shutdown: CancellationToken) {
    loop {
        let Some(consensus) = node.consensus() else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = node.changed() => continue,
            }
        };
        let mut tables = consensus.watch_tables(&[nodes::TABLE]);
        let mut seen = statuses(&consensus);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                running = tables.changed() => {
                    if !running {
                        break;
                    }
                    let now = statuses(&consensus);
                    for status in changes(&seen, &now) {
                        counter.total.get_or_create(&StatusLabels { status: status.as_str() }).inc();
                    }
                    seen = now;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_nodes_that_move_count() {
        let before = BTreeMap::from([(1, NodeStatus::Ready), (2, NodeStatus::Ready)]);
        let after = BTreeMap::from([
            (1, NodeStatus::Down),
            (2, NodeStatus::Ready),
            // A join: not a change.
            (3, NodeStatus::Ready),
        ]);
        assert_eq!(changes(&before, &after), vec![NodeStatus::Down]);
        let back = BTreeMap::from([(1, NodeStatus::Ready), (3, NodeStatus::Left)]);
        assert_eq!(
            changes(&after, &back),
            vec![NodeStatus::Ready, NodeStatus::Left]
        );
    }
}
