//! Raft: the counters of things that happen (leader changes, snapshots), kept by a watcher of
//! the Raft node's metrics, and the gauges of where the node stands, read at each scrape.
//!
//! openraft publishes its state in a watch channel (`Consensus::watch_metrics`); it does not count
//! events. The watcher follows that channel, and the node's own watch to follow the Raft node
//! the supervisor runs (none on a worker, a new one after `init`, a join or a heal), and
//! counts what changed between two values it saw.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use symphony_consensus::Consensus;
use symphony_consensus::ServerState;
use symphony_consensus::store::CommitTimings;
use tokio_util::sync::CancellationToken;

use crate::node::NodeHandle;

/// The Raft counters; cheap to clone. Only [`watch`] bumps them.
#[derive(Clone, Debug, Default)]
pub struct RaftCounters {
    leader_changes: Counter,
    snapshots: Counter,
}

impl RaftCounters {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "raft_leader_changes",
            "Times this node saw the Raft leader become another node (or the first one it knew)",
            self.leader_changes.clone(),
        );
        registry.register(
            "raft_snapshots",
            "Snapshots this node's Raft node built or installed since the agent started",
            self.snapshots.clone(),
        );
    }
}

/// What the watcher remembers between two values.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Seen {
    leader: Option<u64>,
    snapshot: Option<u64>,
}

/// What one new value of the metrics adds to the counters: a leader other than the last one
/// known (a gap without a leader is no change by itself), and a snapshot at another index.
/// `fresh` is a Raft node's first value: the snapshot it loaded from its store is not new.
fn changes(seen: &mut Seen, leader: Option<u64>, snapshot: Option<u64>, fresh: bool) -> (u64, u64) {
    let mut counted = (0, 0);
    if leader.is_some() && leader != seen.leader {
        counted.0 = 1;
        seen.leader = leader;
    }
    if snapshot != seen.snapshot {
        if !fresh && snapshot.is_some() {
            counted.1 = 1;
        }
        seen.snapshot = snapshot;
    }
    counted
}

/// Counts leader changes and snapshots until `shutdown`.
pub async fn watch(mut node: NodeHandle, counters: RaftCounters, shutdown: CancellationToken) {
    let mut seen = Seen::default();
    loop {
        let Some(consensus) = node.consensus() else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = node.changed() => continue,
            }
        };
        let mut metrics = consensus.watch_metrics();
        let mut fresh = true;
        loop {
            let (leader, snapshot) = metrics.read(|now| {
                (
                    now.current_leader,
                    now.snapshot.as_ref().map(|log_id| log_id.index()),
                )
            });
            let (leaders, snapshots) = changes(&mut seen, leader, snapshot, fresh);
            counters.leader_changes.inc_by(leaders);
            counters.snapshots.inc_by(snapshots);
            fresh = false;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                running = metrics.changed() => if !running { break },
                // The supervisor may have replaced or dropped the Raft node.
                _ = node.changed() => {
                    if !node.consensus().is_some_and(|now| now.same_node(&consensus)) {
                        break;
                    }
                }
            }
        }
    }
}

/// The store's commit times as a histogram: the consensus crate keeps the counts in its own
/// atomics (it knows nothing of Prometheus), and this encodes a reading of them.
#[derive(Debug)]
pub struct CommitHistogram(pub CommitTimings);

impl Collector for CommitHistogram {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let times = self.0.read();
        let mut metric = encoder.encode_descriptor(
            "raft_store_commit_duration_seconds",
            "Time of each Raft store commit, one redb transaction with its fsync, that Raft appends wait for.",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(times.sum_seconds, times.count, &times.buckets, None)
    }
}

/// Where this node's Raft node stands, as gauges in one scrape's registry.
pub fn register_gauges(consensus: &Consensus, registry: &mut Registry) {
    let metrics = consensus.metrics();
    let gauge = |value: u64| {
        let gauge: Gauge = Gauge::default();
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        gauge
    };
    let index = |log_id: Option<&symphony_consensus::types::LogId>| {
        gauge(log_id.map_or(0, |log_id| log_id.index()))
    };
    registry.register(
        "raft_term",
        "The Raft term this node is in",
        gauge(metrics.current_term),
    );
    registry.register(
        "raft_is_leader",
        "1 if this node is the Raft leader, else 0",
        gauge(u64::from(metrics.state == ServerState::Leader)),
    );
    registry.register(
        "raft_last_log_index",
        "The index of the last entry in this node's Raft log",
        gauge(metrics.last_log_index.unwrap_or(0)),
    );
    registry.register(
        "raft_commit_index",
        "The index of the last Raft entry a quorum holds, as this node last heard",
        index(metrics.cluster_committed.as_ref()),
    );
    registry.register(
        "raft_applied_index",
        "The index of the last Raft entry applied to this node's state machine",
        index(metrics.last_applied.as_ref()),
    );
    registry.register(
        "raft_snapshot_index",
        "The last index the newest snapshot covers (0: none yet)",
        index(metrics.snapshot.as_ref()),
    );
    registry.register(
        "raft_snapshot_size_bytes",
        "The size of the last snapshot this node made (to send to a follower) or installed (0: none yet)",
        gauge(consensus.snapshot_bytes()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_new_leaders_and_new_snapshots_only() {
        let mut seen = Seen::default();
        // A Raft node starting with a snapshot from its store and no leader yet.
        assert_eq!(changes(&mut seen, None, Some(100), true), (0, 0));
        assert_eq!(changes(&mut seen, Some(1), Some(100), false), (1, 0));
        // An election gap, then the same leader again: no change.
        assert_eq!(changes(&mut seen, None, Some(100), false), (0, 0));
        assert_eq!(changes(&mut seen, Some(1), Some(100), false), (0, 0));
        // A new snapshot, then another leader.
        assert_eq!(changes(&mut seen, Some(1), Some(200), false), (0, 1));
        assert_eq!(changes(&mut seen, Some(2), Some(200), false), (1, 0));
        // A restarted Raft node (a heal) loads the snapshot it had: not new.
        assert_eq!(changes(&mut seen, Some(2), Some(200), true), (0, 0));
    }
}
