//! On the leader: changing the manager group — promote, demote, remove (refused when it would
//! lose quorum), and taking out a manager that leaves.

use std::collections::BTreeSet;
use std::time::Duration;

use symphony_consensus::{Command, Consensus, NodeCommand, NodeRecord, NodeStatus};
use symphony_ctl::proto::{CtlError, DoneInfo, ErrorCode};

use super::propose::propose;
use crate::errors::{bad_request, consensus_error, no_such_node};

/// A voter that has not acknowledged the leader for this long does not count towards quorum.
const ALIVE_WITHIN: Duration = Duration::from_secs(3);

pub async fn promote(consensus: &Consensus, node_id: u64) -> Result<DoneInfo, CtlError> {
    let (_, raft_id) = manager(consensus, node_id)?;
    let view = consensus.membership();
    if view.voters.contains(&raft_id) {
        return Ok(done(format!("node {node_id} is already a voter")));
    }
    if !view.learners.contains(&raft_id) {
        return Err(not_member(node_id));
    }
    set_demoted(consensus, node_id, false).await?;
    consensus
        .promote(BTreeSet::from([raft_id]))
        .await
        .map_err(consensus_error)?;
    Ok(done(format!("node {node_id} is now a voter")))
}

pub async fn demote(consensus: &Consensus, node_id: u64) -> Result<DoneInfo, CtlError> {
    let (_, raft_id) = manager(consensus, node_id)?;
    let view = consensus.membership();
    if !view.voters.contains(&raft_id) {
        if view.learners.contains(&raft_id) {
            return Ok(done(format!("node {node_id} is already a learner")));
        }
        return Err(not_member(node_id));
    }
    check_quorum_without(consensus, raft_id, "demoting")?;
    set_demoted(consensus, node_id, true).await?;
    consensus
        .demote(BTreeSet::from([raft_id]))
        .await
        .map_err(consensus_error)?;
    Ok(done(format!(
        "node {node_id} is now a learner; `node promote {node_id}` makes it a voter again"
    )))
}

/// `node rm`: takes a node out of the Raft group (if it is in it) and forgets it.
pub async fn remove(
    consensus: &Consensus,
    node_id: u64,
    force: bool,
) -> Result<DoneInfo, CtlError> {
    let record = consensus
        .read_stale(|state| state.nodes.get(&node_id).cloned())
        .ok_or_else(|| no_such_node(node_id))?;
    if let Some(raft_id) = record.raft_node_id {
        // Losing quorum is the graver refusal, so it is checked first.
        if !force && consensus.membership().voters.contains(&raft_id) {
            check_quorum_without(consensus, raft_id, "removing")?;
        }
        if record.status == NodeStatus::Ready && !force {
            return Err(still_ready(node_id));
        }
        remove_from_raft(consensus, node_id, raft_id, force).await?;
    } else if record.status == NodeStatus::Ready && !force {
        return Err(still_ready(node_id));
    }
    propose(
        consensus,
        Command::Node(Box::new(NodeCommand::Remove { node_id })),
    )
    .await?;
    Ok(done(format!("node {node_id} was removed from the cluster")))
}

async fn remove_from_raft(
    consensus: &Consensus,
    node_id: u64,
    raft_id: u64,
    force: bool,
) -> Result<(), CtlError> {
    let view = consensus.membership();
    if !view.nodes.contains_key(&raft_id) {
        return Ok(());
    }
    if raft_id == consensus.raft_node_id() {
        return Err(bad_request(format!(
            "node {node_id} is the leader; run `symphony-ctl leave` on it, which hands leadership over first"
        )));
    }
    if view.voters.contains(&raft_id) && !force {
        check_quorum_without(consensus, raft_id, "removing")?;
    }
    consensus
        .remove(BTreeSet::from([raft_id]))
        .await
        .map_err(consensus_error)
}

/// On the leader: takes a leaving manager out of the Raft group and marks it `left`.
pub async fn remove_leaving(consensus: &Consensus, node_id: u64) -> Result<(), CtlError> {
    let record = consensus
        .read_stale(|state| state.nodes.get(&node_id).cloned())
        .ok_or_else(|| no_such_node(node_id))?;
    if let Some(raft_id) = record.raft_node_id {
        remove_from_raft(consensus, node_id, raft_id, false).await?;
    }
    let left = Command::Node(Box::new(NodeCommand::SetStatus {
        node_id,
        status: NodeStatus::Left,
        at_ms: crate::now_ms(),
    }));
    propose(consensus, left).await.map(drop)
}

/// Refuses a change that leaves fewer live voters than a quorum of the voters that remain.
pub fn check_quorum_without(
    consensus: &Consensus,
    raft_id: u64,
    doing: &str,
) -> Result<(), CtlError> {
    let me = consensus.raft_node_id();
    let view = consensus.membership();
    let progress = consensus.progress();
    let remaining: Vec<u64> = view
        .voters
        .iter()
        .copied()
        .filter(|id| *id != raft_id)
        .collect();
    let alive = remaining
        .iter()
        .filter(|id| {
            **id == me
                || progress
                    .get(id)
                    .and_then(|p| p.last_ack)
                    .is_some_and(|ago| ago < ALIVE_WITHIN)
        })
        .count();
    let quorum = remaining.len() / 2 + 1;
    if remaining.is_empty() || alive < quorum {
        return Err(CtlError::new(
            ErrorCode::WouldLoseQuorum,
            format!(
                "{doing} it would leave {alive} reachable of {} voting managers, fewer than the quorum of {quorum}; bring managers back first, or add --force",
                remaining.len()
            ),
        ));
    }
    Ok(())
}

/// A manager's record and Raft id.
fn manager(consensus: &Consensus, node_id: u64) -> Result<(NodeRecord, u64), CtlError> {
    let record = consensus
        .read_stale(|state| state.nodes.get(&node_id).cloned())
        .ok_or_else(|| no_such_node(node_id))?;
    let raft_id = record.raft_node_id.ok_or_else(|| not_member(node_id))?;
    Ok((record, raft_id))
}

async fn set_demoted(consensus: &Consensus, node_id: u64, demoted: bool) -> Result<(), CtlError> {
    let command = Command::Node(Box::new(NodeCommand::SetDemoted { node_id, demoted }));
    propose(consensus, command).await.map(drop)
}

fn done(message: String) -> DoneInfo {
    DoneInfo { message }
}

fn still_ready(node_id: u64) -> CtlError {
    bad_request(format!(
        "node {node_id} is ready; only a down or left node can be removed. Run `symphony-ctl leave` on it, or stop it and wait until it is down, or add --force"
    ))
}

fn not_member(node_id: u64) -> CtlError {
    bad_request(format!("node {node_id} is not a manager in the Raft group"))
}
