//! Nodes: `node ls` and `inspect` (with each manager's Raft standing, and on the leader its
//! replication progress and reachability), `update` (availability and labels, merged in the
//! log), and the manager group's `promote`, `demote` and `rm`.

use std::collections::BTreeMap;

use symphony_consensus::{Availability, Command, Consensus, NodeCommand, NodeRecord, NodeRole};
use symphony_ctl::proto::{CtlError, NodeInfo, ReadConsistency, Response, Role};

use crate::errors::{bad_request, internal, no_such_node};
use crate::manager::membership;
use crate::manager::propose::{propose_client, read};

/// A manager that has not acknowledged the leader for this long is shown as unreachable.
const REACHABLE_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

pub async fn list(
    consensus: &Consensus,
    consistency: ReadConsistency,
) -> Result<Response, CtlError> {
    let records: Vec<NodeRecord> = read(consensus, consistency, |state| {
        state.nodes.values().cloned().collect()
    })
    .await?;
    Ok(Response::NodeList(node_infos(consensus, records)))
}

pub async fn inspect(
    consensus: &Consensus,
    node_id: u64,
    consistency: ReadConsistency,
) -> Result<Response, CtlError> {
    let record = read(consensus, consistency, |state| {
        state.nodes.get(&node_id).cloned()
    })
    .await?
    .ok_or_else(|| no_such_node(node_id))?;
    node_response(consensus, record)
}

pub async fn update(
    consensus: &Consensus,
    node_id: u64,
    availability: Option<String>,
    label_add: BTreeMap<String, String>,
    label_rm: Vec<String>,
) -> Result<Response, CtlError> {
    let availability = availability
        .as_deref()
        .map(parse_availability)
        .transpose()?;
    if let Some(key) = label_add
        .keys()
        .chain(label_rm.iter())
        .find(|key| key.is_empty())
    {
        return Err(bad_request(format!(
            "a label needs a non-empty key (got '{key}')"
        )));
    }
    let command = Command::Node(Box::new(NodeCommand::Update {
        node_id,
        availability,
        label_add,
        label_rm,
    }));
    propose_client(consensus, command).await?;
    let record = consensus
        .read_stale(|state| state.nodes.get(&node_id).cloned())
        .ok_or_else(|| no_such_node(node_id))?;
    node_response(consensus, record)
}

pub async fn promote(consensus: &Consensus, node_id: u64) -> Result<Response, CtlError> {
    membership::promote(consensus, node_id)
        .await
        .map(Response::Done)
}

pub async fn demote(consensus: &Consensus, node_id: u64) -> Result<Response, CtlError> {
    membership::demote(consensus, node_id)
        .await
        .map(Response::Done)
}

pub async fn remove(
    consensus: &Consensus,
    node_id: u64,
    force: bool,
) -> Result<Response, CtlError> {
    membership::remove(consensus, node_id, force)
        .await
        .map(Response::Done)
}

fn node_response(consensus: &Consensus, record: NodeRecord) -> Result<Response, CtlError> {
    node_infos(consensus, vec![record])
        .into_iter()
        .next()
        .map(|info| Response::Node(Box::new(info)))
        .ok_or_else(|| internal("the node vanished while being read"))
}

/// Node records as `node ls` shows them, with each manager's Raft standing; on the leader
/// also its replication progress and reachability.
pub fn node_infos(consensus: &Consensus, records: Vec<NodeRecord>) -> Vec<NodeInfo> {
    let me = consensus.raft_node_id();
    let view = consensus.membership();
    let leading = view.leader == Some(me);
    let progress = if leading {
        consensus.progress()
    } else {
        BTreeMap::new()
    };
    let last = view.last_log_index;
    let tasks = consensus.read_stale(crate::api::services::tasks_per_node);
    let raft_role = |raft_id: u64| {
        if view.leader == Some(raft_id) {
            "leader"
        } else if view.voters.contains(&raft_id) {
            "follower"
        } else if view.learners.contains(&raft_id) {
            "learner"
        } else {
            "removed"
        }
        .to_string()
    };
    let matched = |raft_id: u64| {
        if !leading {
            return None;
        }
        if raft_id == me {
            return last;
        }
        progress.get(&raft_id).and_then(|p| p.matched_index)
    };
    let reachable = |raft_id: u64| {
        if !leading || !view.nodes.contains_key(&raft_id) {
            return None;
        }
        if raft_id == me {
            return Some(true);
        }
        Some(
            progress
                .get(&raft_id)
                .and_then(|p| p.last_ack)
                .is_some_and(|ago| ago < REACHABLE_WITHIN),
        )
    };
    let mut infos: Vec<NodeInfo> = records
        .iter()
        .map(|record| {
            let raft_id = record.raft_node_id;
            let matched_index = raft_id.and_then(matched);
            NodeInfo {
                node_id: record.node_id,
                raft_node_id: raft_id,
                hostname: record.hostname.clone(),
                role: match record.role {
                    NodeRole::Manager => Role::Manager,
                    NodeRole::Worker => Role::Worker,
                },
                status: record.status.as_str().to_string(),
                availability: record.availability.as_str().to_string(),
                raft_addr: record.raft_addr.clone(),
                remote_addr: record.remote_addr.clone(),
                raft_role: raft_id.map(raft_role),
                voter: raft_id.map(|id| view.voters.contains(&id)),
                matched_index,
                lag: match (last, matched_index) {
                    (Some(last), Some(matched)) => Some(last.saturating_sub(matched)),
                    _ => None,
                },
                reachable: raft_id.and_then(reachable),
                agent_version: record.agent_version.clone(),
                joined_at_ms: record.joined_at_ms,
                status_changed_at_ms: record.status_changed_at_ms,
                labels: record.labels.clone(),
                cpus: record.resources.cpus,
                memory_bytes: record.resources.memory_bytes,
                docker: record.resources.docker.clone(),
                tasks: tasks.get(&record.node_id).copied().unwrap_or(0),
            }
        })
        .collect();
    // Members named by `init --peers` that have not registered with `init --join-addr` yet.
    for (raft_id, node) in &view.nodes {
        if records
            .iter()
            .any(|record| record.raft_node_id == Some(*raft_id))
        {
            continue;
        }
        let matched_index = matched(*raft_id);
        infos.push(NodeInfo {
            node_id: 0,
            raft_node_id: Some(*raft_id),
            hostname: String::new(),
            role: Role::Manager,
            status: "pending".to_string(),
            availability: "active".to_string(),
            raft_addr: Some(node.raft_addr.clone()),
            remote_addr: node.remote_addr.clone(),
            raft_role: Some("pending".to_string()),
            voter: Some(view.voters.contains(raft_id)),
            matched_index,
            lag: match (last, matched_index) {
                (Some(last), Some(matched)) => Some(last.saturating_sub(matched)),
                _ => None,
            },
            reachable: reachable(*raft_id),
            agent_version: String::new(),
            joined_at_ms: 0,
            status_changed_at_ms: 0,
            labels: BTreeMap::new(),
            cpus: 0,
            memory_bytes: 0,
            docker: None,
            tasks: 0,
        });
    }
    infos
}

fn parse_availability(text: &str) -> Result<Availability, CtlError> {
    match text {
        "active" => Ok(Availability::Active),
        "pause" => Ok(Availability::Pause),
        "drain" => Ok(Availability::Drain),
        other => Err(bad_request(format!(
            "availability must be active, pause or drain, not '{other}'"
        ))),
    }
}
