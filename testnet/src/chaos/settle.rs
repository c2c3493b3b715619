//! Whether the cluster is whole again — one leader that every manager agrees on, the expected
//! number of voting managers, every node running and `ready`, no partition — and waiting for it
//! with a deadline.
//!
//! The nemesis waits for this after each fault, so faults never pile up into a quorum loss
//! (the run tests what the cluster promises while it can keep its promises), and the run waits
//! for it at the end before its final reads. Not getting there in time is itself a finding.

use std::time::Duration;

use symphony_ctl::proto::Role;
use tokio::sync::watch;
use tokio::time::Instant;

use symphony_ctl::Client;

use super::tasks::{off_runtime, pause};
use crate::harness::expected_voters;
use crate::lab::rpc::call;
use crate::lab::{Lab, LabStatus};

/// How often the lab's status is looked at while waiting.
const POLL: Duration = Duration::from_millis(200);
/// How long one manager may take to answer `status` in the agreement check.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// `Ok` if `status` shows a whole cluster of `managers` managers, else what is missing.
pub fn whole(status: &LabStatus, managers: usize) -> Result<(), String> {
    let Some(leader) = &status.leader else {
        return Err("no leader".to_string());
    };
    if let Some(sides) = &status.partition {
        return Err(format!("still partitioned ({} sides)", sides.len()));
    }
    // One leader that every manager follows: a node that elected itself in a stale
    // configuration (a higher term nobody else is in) must not pass for a healthy cluster.
    let claimants: Vec<&str> = status
        .nodes
        .iter()
        .filter(|node| node.raft_state.as_deref() == Some("leader"))
        .map(|node| node.name.as_str())
        .collect();
    if claimants.len() > 1 {
        return Err(format!(
            "several managers claim to lead: {}",
            claimants.join(", ")
        ));
    }
    let behind: Vec<String> = status
        .nodes
        .iter()
        .filter(|node| node.role == Role::Manager && node.term != status.term)
        .map(|node| {
            format!(
                "{} (term {})",
                node.name,
                node.term
                    .map_or("unknown".to_string(), |term| term.to_string())
            )
        })
        .collect();
    if !behind.is_empty() {
        return Err(format!(
            "leader {leader} is in term {}, but not {}",
            status.term.unwrap_or_default(),
            behind.join(", ")
        ));
    }
    let voters = status
        .nodes
        .iter()
        .filter(|node| node.role == Role::Manager)
        .filter(|node| matches!(node.raft_state.as_deref(), Some("leader" | "follower")))
        .count();
    let wanted = expected_voters(managers);
    let unready: Vec<String> = status
        .nodes
        .iter()
        .filter(|node| node.process != "running" || node.status.as_deref() != Some("ready"))
        .map(|node| {
            format!(
                "{} ({}, {})",
                node.name,
                node.process,
                node.status.as_deref().unwrap_or("status unknown")
            )
        })
        .collect();
    if voters == wanted && unready.is_empty() {
        Ok(())
    } else if unready.is_empty() {
        Err(format!(
            "leader {leader}, {voters} of {wanted} managers voting"
        ))
    } else {
        Err(format!(
            "leader {leader}, {voters} of {wanted} managers voting, not ready: {}",
            unready.join(", ")
        ))
    }
}

/// `Ok` if every manager, asked itself, names the same leader in the same term, that leader's
/// Raft configuration has the expected voters and knows every manager, and its log holds
/// everything any manager has committed.
///
/// The lab's status alone cannot tell a healthy cluster from one where a manager elected
/// itself in a stale one-voter configuration and dragged the others into its term: all of them
/// then show one leader in one term. The leader's own voter list can.
pub async fn agreement(lab: &Lab, managers: usize) -> Result<(), String> {
    let mut views = Vec::new();
    for node in lab
        .state()
        .nodes
        .iter()
        .filter(|node| node.role == Role::Manager)
    {
        let status = call(
            &node.socket_path(),
            STATUS_TIMEOUT,
            async |client: &mut Client| client.status().await,
        )
        .await
        .map_err(|error| format!("{} did not answer status: {error}", node.name))?;
        let cluster = status
            .cluster
            .ok_or_else(|| format!("{} is in no cluster", node.name))?;
        views.push((node.name.clone(), status.raft_node_id, cluster));
    }
    let Some((_, _, first)) = views.first() else {
        return Err("no manager".to_string());
    };
    let (leader, term) = (first.leader_raft_id, first.term);
    if let Some((name, _, view)) = views
        .iter()
        .find(|(_, _, view)| view.leader_raft_id != leader || view.term != term)
    {
        return Err(format!(
            "{name} sees leader {:?} in term {}, {} sees {leader:?} in term {term}",
            view.leader_raft_id, view.term, views[0].0
        ));
    }
    let Some((leader_name, _, leader_view)) = views
        .iter()
        .find(|(_, raft_id, _)| Some(*raft_id) == leader)
    else {
        return Err(format!("the leader {leader:?} is none of the managers"));
    };
    let wanted = expected_voters(managers);
    if leader_view.voters.len() != wanted {
        return Err(format!(
            "the leader {leader_name} has {} voter(s), not {wanted}",
            leader_view.voters.len()
        ));
    }
    if let Some((name, _, _)) = views.iter().find(|(_, raft_id, _)| {
        !leader_view.voters.contains(raft_id) && !leader_view.learners.contains(raft_id)
    }) {
        return Err(format!(
            "the leader {leader_name}'s configuration does not include {name}"
        ));
    }
    // Leader completeness: the leader's log holds every committed entry, so it ends at or
    // after any manager's commit index — asked after the others, so its log can only have
    // grown since they answered.
    let leader_socket = lab
        .node(leader_name)
        .map_err(|error| error.to_string())?
        .socket_path();
    let last_log = call(
        &leader_socket,
        STATUS_TIMEOUT,
        async |client: &mut Client| client.status().await,
    )
    .await
    .map_err(|error| format!("{leader_name} did not answer status: {error}"))?
    .cluster
    .and_then(|cluster| cluster.last_log_index)
    .unwrap_or(0);
    if let Some((name, _, view)) = views
        .iter()
        .find(|(_, _, view)| view.commit_index.unwrap_or(0) > last_log)
    {
        return Err(format!(
            "the leader {leader_name}'s log ends at index {last_log} but {name} has committed up to {}: the leader lacks committed entries",
            view.commit_index.unwrap_or(0)
        ));
    }
    Ok(())
}

/// Waits until the cluster is whole; returns how long that took and the status, or what was
/// still missing when `timeout` ran out (or the run stopped).
pub async fn wait_whole(
    lab: &Lab,
    managers: usize,
    timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> Result<(Duration, LabStatus), String> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let status = off_runtime(lab.status()).await;
        let missing = match whole(&status, managers) {
            Ok(()) => match agreement(lab, managers).await {
                Ok(()) => return Ok((started.elapsed(), status)),
                Err(missing) => missing,
            },
            Err(missing) => missing,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "the cluster was not whole within {timeout:?}: {missing}"
            ));
        }
        if pause(stop, POLL).await {
            return Err(format!("stopped while waiting for the cluster: {missing}"));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::*;
    use crate::lab::{BackendKind, NodeRow};

    fn row(name: &str, role: Role, raft_state: Option<&str>, term: Option<u64>) -> NodeRow {
        NodeRow {
            name: name.to_string(),
            role,
            process: "running".to_string(),
            pid: None,
            container: None,
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            raft_addr: "127.0.0.1:2".parse().unwrap(),
            raft_state: raft_state.map(str::to_string),
            leader: raft_state == Some("leader"),
            term,
            status: Some("ready".to_string()),
            node_id: None,
            socket: PathBuf::new(),
            log: PathBuf::new(),
            note: None,
        }
    }

    fn status(nodes: Vec<NodeRow>, term: u64) -> LabStatus {
        LabStatus {
            dir: PathBuf::new(),
            backend: BackendKind::Local,
            subnet: "127.78.0".to_string(),
            cluster_id: None,
            leader: nodes
                .iter()
                .find(|node| node.leader)
                .map(|node| node.name.clone()),
            term: Some(term),
            partition: None,
            listed_by: None,
            listed_by_leader: true,
            nodes,
        }
    }

    #[test]
    fn a_whole_cluster_has_one_leader_in_one_term() {
        let healthy = status(
            vec![
                row("manager-1", Role::Manager, Some("leader"), Some(4)),
                row("manager-2", Role::Manager, Some("follower"), Some(4)),
                row("manager-3", Role::Manager, Some("follower"), Some(4)),
                row("worker-1", Role::Worker, None, None),
            ],
            4,
        );
        assert_eq!(whole(&healthy, 3), Ok(()));
        let learner = status(
            vec![
                row("manager-1", Role::Manager, Some("leader"), Some(4)),
                row("manager-2", Role::Manager, Some("learner"), Some(4)),
                row("manager-3", Role::Manager, Some("follower"), Some(4)),
            ],
            4,
        );
        assert!(whole(&learner, 3).unwrap_err().contains("2 of 3"));
        // A manager that elected itself alone, in a term no one else is in.
        let phantom = status(
            vec![
                row("manager-1", Role::Manager, Some("leader"), Some(3)),
                row("manager-2", Role::Manager, Some("follower"), Some(2)),
                row("manager-3", Role::Manager, Some("follower"), Some(2)),
            ],
            3,
        );
        assert!(whole(&phantom, 3).unwrap_err().contains("term 3"));
        let two = status(
            vec![
                row("manager-1", Role::Manager, Some("leader"), Some(3)),
                row("manager-2", Role::Manager, Some("leader"), Some(3)),
                row("manager-3", Role::Manager, Some("follower"), Some(3)),
            ],
            3,
        );
        assert!(whole(&two, 3).unwrap_err().contains("several"));
    }
}
