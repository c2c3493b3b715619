//! `status`: this node and its cluster — on a manager its Raft standing and the managers, on a
//! worker the managers its session knows and which leads.

use std::collections::BTreeSet;

use symphony_consensus::{NodeRole, NodeStatus, ServerState};
use symphony_ctl::proto::{ClusterStatus, GossipDrops, ManagerStatus, Role, StatusInfo};

use crate::context::Context;
use crate::node::NodeState;
use crate::worker::state::WorkerState;

pub async fn status(ctx: &Context) -> StatusInfo {
    let state = ctx.node.state();
    let cluster = match &state.worker {
        Some(worker) => Some(worker_status(ctx, worker.clone()).await),
        None => manager_status(ctx, &state).await,
    };
    StatusInfo {
        node_id: state.identity.node_id,
        raft_node_id: state.identity.raft_node_id,
        agent_version: crate::VERSION.to_string(),
        cluster,
    }
}

async fn manager_status(ctx: &Context, state: &NodeState) -> Option<ClusterStatus> {
    // A node in no cluster may run no Raft node, and has no cluster to report.
    let consensus = state.consensus.as_ref()?;
    let (cluster, revision, nodes) = consensus.read_stale(|replica| {
        (
            replica.cluster.clone(),
            replica.kv.revision(),
            replica.nodes.len(),
        )
    });
    let cluster = cluster?;
    let alive = ctx.gossip.alive().await;
    let metrics = consensus.metrics();
    let membership = metrics.membership_config.membership();
    let leader_remote_addr = metrics
        .current_leader
        .and_then(|leader| membership.get_node(&leader))
        .map(|node| node.remote_addr.clone());
    let managers: Vec<ManagerStatus> = consensus.read_stale(|replica| {
        replica
            .nodes
            .values()
            .filter(|record| record.role == NodeRole::Manager && record.status != NodeStatus::Left)
            .map(|record| ManagerStatus {
                node_id: record.node_id,
                remote_addr: record.remote_addr.clone(),
                leader: record.raft_node_id.is_some()
                    && record.raft_node_id == metrics.current_leader,
                alive: alive.as_ref().map(|alive| alive.contains(&record.node_id)),
                session: false,
            })
            .collect()
    });
    let leader_node_id = managers
        .iter()
        .find(|manager| manager.leader)
        .map(|manager| manager.node_id);
    Some(ClusterStatus {
        cluster_id: cluster.cluster_id,
        role: Role::Manager,
        raft_state: server_state_name(metrics.state).to_string(),
        leader_raft_id: metrics.current_leader,
        leader_remote_addr,
        term: metrics.current_term,
        last_log_index: metrics.last_log_index,
        commit_index: metrics.cluster_committed.as_ref().map(|id| id.index()),
        applied_index: metrics.last_applied.as_ref().map(|id| id.index()),
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        kv_revision: revision,
        nodes,
        managers,
        leader_node_id,
        gossip_members: alive.as_ref().map(BTreeSet::len),
        session_age_ms: None,
        gossip_dropped: ctx.gossip.dropped(),
        gossip_drops: gossip_drops(ctx),
        store_error: consensus.store_fault().map(|fault| fault.message),
    })
}

/// `status` on a worker: the managers it knows and which leads.
async fn worker_status(ctx: &Context, worker: WorkerState) -> ClusterStatus {
    let session = ctx.session.view();
    let leader = session.as_ref().and_then(|view| view.leader_node_id);
    let alive = ctx.gossip.alive().await;
    let mut managers = session
        .as_ref()
        .map(|view| view.managers.clone())
        .unwrap_or_default();
    if managers.is_empty() {
        managers = worker.managers.clone();
    }
    let managers: Vec<ManagerStatus> = managers
        .into_iter()
        .map(|manager| ManagerStatus {
            node_id: manager.node_id,
            alive: alive.as_ref().map(|alive| alive.contains(&manager.node_id)),
            leader: leader == Some(manager.node_id),
            session: session
                .as_ref()
                .is_some_and(|view| view.manager.node_id == manager.node_id),
            remote_addr: manager.remote_addr,
        })
        .collect();
    let leader_remote_addr = managers
        .iter()
        .find(|manager| manager.leader)
        .map(|manager| manager.remote_addr.clone());
    ClusterStatus {
        cluster_id: worker.cluster_id,
        role: Role::Worker,
        raft_state: "none".to_string(),
        leader_raft_id: None,
        leader_remote_addr,
        term: 0,
        last_log_index: None,
        commit_index: None,
        applied_index: None,
        voters: Vec::new(),
        learners: Vec::new(),
        kv_revision: 0,
        nodes: 0,
        managers,
        leader_node_id: leader,
        gossip_members: alive.map(|alive| alive.len()),
        gossip_dropped: ctx.gossip.dropped(),
        gossip_drops: gossip_drops(ctx),
        session_age_ms: session
            .map(|view| u64::try_from(view.at.elapsed().as_millis()).unwrap_or(u64::MAX)),
        store_error: None,
    }
}

/// Gossip's drops by reason and the key it seals with, while it runs.
fn gossip_drops(ctx: &Context) -> Option<GossipDrops> {
    let stats = ctx.gossip.running()?.gossip.stats();
    Some(GossipDrops {
        sealing_key: ctx.keys.applied().and_then(|applied| applied.primary),
        too_short: stats.dropped_too_short,
        bad_magic: stats.dropped_bad_magic,
        wrong_version: stats.dropped_wrong_version,
        foreign_cluster: stats.dropped_foreign_cluster,
        bad_checksum: stats.dropped_bad_checksum,
        unsealed: stats.dropped_unsealed,
        unknown_key: stats.dropped_unknown_key,
        unauthenticated: stats.dropped_unauthenticated,
        replayed: stats.dropped_replayed,
        by_foca: stats.dropped_by_foca,
    })
}

fn server_state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}
