//! One scrape: a registry built for this answer alone, holding the shared instruments (by
//! handle) and fresh gauges and counters filled from what the owners of the state publish,
//! encoded in the Prometheus text format.
//!
//! Building the registry per scrape keeps the readings out of any long-lived shared state:
//! nothing has to copy the Raft node's, the gossip driver's or the replica's numbers as they
//! change, and a scrape sees them as they are when it is asked.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use symphony_consensus::{Consensus, NodeRole, TaskState};
use symphony_gossip::MemberLiveness;

use super::Metrics;
use crate::gossip::GossipWatch;
use crate::node::NodeHandle;

/// The content type of the answer (the Prometheus text format, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// How long a scrape waits for the gossip driver's member view; a driver too busy to answer
/// leaves the member gauges out of that scrape rather than holding the scrape.
const GOSSIP_VIEW_TIMEOUT: Duration = Duration::from_secs(1);

/// What a scrape reads: the instruments, and the handles of the state's owners.
#[derive(Clone)]
pub struct Sources {
    pub metrics: Metrics,
    pub node: NodeHandle,
    pub gossip: GossipWatch,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct NodeLabels {
    role: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Encodes every metric of this node now.
pub async fn scrape(sources: &Sources) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("symphony");
    let build: Family<BuildLabels, Gauge> = Family::default();
    build
        .get_or_create(&BuildLabels {
            version: crate::VERSION,
            revision: symphony_ctl::GIT_REVISION,
        })
        .set(1);
    registry.register(
        "build_info",
        "Always 1; the labels say which agent version and git revision this is",
        build,
    );
    sources.metrics.requests.register(&mut registry);
    // Raft, store and cluster-state metrics only where a Raft node runs: a worker has none.
    if let Some(consensus) = sources.node.consensus() {
        sources.metrics.raft.register(&mut registry);
        sources.metrics.status_changes.register(&mut registry);
        sources.metrics.kv_watchers.register(
            &mut registry,
            "kv_watchers",
            "kv watch streams this manager serves now",
        );
        sources.metrics.sessions.register(
            &mut registry,
            "sessions",
            "Worker sessions this manager serves now (open assignment streams)",
        );
        sources.metrics.placements.register(&mut registry);
        registry.register_collector(Box::new(super::raft::CommitHistogram(
            sources.metrics.commits.clone(),
        )));
        super::raft::register_gauges(&consensus, &mut registry);
        register_state(&consensus, &mut registry);
    }
    register_gossip(&sources.gossip, &mut registry).await;
    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

fn gauge(value: usize) -> Gauge {
    let gauge: Gauge = Gauge::default();
    gauge.set(count_value(value));
    gauge
}

/// What the leader alone reports from its replica, so that a sum over the nodes counts each
/// service, task and node once.
#[derive(Default)]
struct LeaderView {
    services: usize,
    tasks: BTreeMap<TaskState, usize>,
    nodes: BTreeMap<NodeLabels, usize>,
}

/// The replica's tables: keys on every manager (each holds the whole store); services, tasks
/// and nodes only on the leader.
fn register_state(consensus: &Consensus, registry: &mut Registry) {
    let leads = consensus.leadership().leads();
    let (keys, revision, leader) = consensus.read_stale(|state| {
        let leader = leads.then(|| {
            let mut view = LeaderView {
                services: state.services.len(),
                ..LeaderView::default()
            };
            for task in state.tasks.values() {
                *view.tasks.entry(task.state).or_default() += 1;
            }
            for node in state.nodes.values() {
                let role = match node.role {
                    NodeRole::Manager => "manager",
                    NodeRole::Worker => "worker",
                };
                let labels = NodeLabels {
                    role,
                    status: node.status.as_str(),
                };
                *view.nodes.entry(labels).or_default() += 1;
            }
            view
        });
        (state.kv.len(), state.kv.revision(), leader)
    });
    registry.register(
        "kv_keys",
        "Keys in the KV store, in this manager's replica",
        gauge(keys),
    );
    registry.register(
        "kv_revision",
        "The KV store's revision, in this manager's replica",
        gauge(usize::try_from(revision).unwrap_or(usize::MAX)),
    );
    let Some(leader) = leader else {
        return;
    };
    registry.register(
        "services",
        "Services declared (on the leader only)",
        gauge(leader.services),
    );
    let tasks: Family<StateLabels, Gauge> = Family::default();
    for (state, count) in leader.tasks {
        let labels = StateLabels {
            state: state.as_str(),
        };
        tasks.get_or_create(&labels).set(count_value(count));
    }
    registry.register(
        "tasks",
        "Tasks in the cluster state by observed state (on the leader only)",
        tasks,
    );
    let nodes: Family<NodeLabels, Gauge> = Family::default();
    for (labels, count) in leader.nodes {
        nodes.get_or_create(&labels).set(count_value(count));
    }
    registry.register(
        "nodes",
        "Nodes in the cluster state by role and status as the leader decided it (on the leader only)",
        nodes,
    );
}

fn count_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The gossip driver's counters (since it started: they begin again when the driver is
/// restarted, which Prometheus takes as a counter reset) and its view of the pool.
async fn register_gossip(gossip: &GossipWatch, registry: &mut Registry) {
    let Some(running) = gossip.running() else {
        return;
    };
    let stats = running.gossip.stats();
    let counter = |value: u64| {
        let counter: Counter = Counter::default();
        counter.inc_by(value);
        counter
    };
    registry.register(
        "gossip_packets_sent",
        "Gossip packets sent by the running driver",
        counter(stats.packets_sent),
    );
    registry.register(
        "gossip_packets_received",
        "Gossip packets read from the socket by the running driver, dropped ones included",
        counter(stats.packets_received),
    );
    registry.register(
        "gossip_send_failures",
        "Outgoing gossip packets lost: the writer's queue was full or the send failed",
        counter(stats.send_failures),
    );
    let dropped: Family<ReasonLabels, Counter> = Family::default();
    for (reason, count) in [
        ("too_short", stats.dropped_too_short),
        ("bad_magic", stats.dropped_bad_magic),
        ("wrong_version", stats.dropped_wrong_version),
        ("foreign_cluster", stats.dropped_foreign_cluster),
        ("bad_checksum", stats.dropped_bad_checksum),
        ("unsealed", stats.dropped_unsealed),
        ("unknown_key", stats.dropped_unknown_key),
        ("unauthenticated", stats.dropped_unauthenticated),
        ("replayed", stats.dropped_replayed),
        ("refused_by_foca", stats.dropped_by_foca),
    ] {
        dropped
            .get_or_create(&ReasonLabels { reason })
            .inc_by(count);
    }
    registry.register(
        "gossip_packets_dropped",
        "Gossip packets received and dropped, by reason",
        dropped,
    );
    let view = tokio::time::timeout(GOSSIP_VIEW_TIMEOUT, running.gossip.membership_state()).await;
    let Ok(Ok(members)) = view else {
        return;
    };
    let by_state: Family<StateLabels, Gauge> = Family::default();
    // Every state is present, at 0 when no member is in it, so that a query for suspects
    // finds a series before the first suspicion.
    for state in ["alive", "suspect", "down"] {
        by_state.get_or_create(&StateLabels { state }).set(0);
    }
    for member in &members {
        let state = match member.state() {
            MemberLiveness::Alive => "alive",
            MemberLiveness::Suspect => "suspect",
            MemberLiveness::Down => "down",
        };
        by_state.get_or_create(&StateLabels { state }).inc();
    }
    registry.register(
        "gossip_members",
        "Other members this node's gossip view holds, by state",
        by_state,
    );
}
