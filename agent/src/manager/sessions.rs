//! The managers' side of workers: one round of a worker's session (any manager answers, from
//! its replica), and a worker's leave notice (the leader records it).
//!
//! A worker proves who it is with the secret the leader handed it at join.

use symphony_consensus::{Command, Consensus, GossipKeyring, NodeCommand, NodeRecord, NodeStatus};
use symphony_ctl::proto::{CtlError, ErrorCode};
use symphony_gossip::MemberState;

use super::admission::{gossip_keyring, manager_contacts};
use super::propose::{propose, require_cluster};
use crate::gossip::GossipWatch;
use crate::remote::proto::SessionReply;
use crate::tokens::constant_time_eq;

/// Whether a worker seeing `seen` members is behind a manager seeing `own` by more than gossip
/// itself soon mends: any at all in a small pool, more than one in twenty in a large one (a
/// few joins or deaths in flight are normal in a fleet of thousands). A new worker, or one
/// back from a partition, is far behind.
fn is_clearly_behind(seen: u64, own: u64) -> bool {
    seen.saturating_add(own / 20) < own
}

/// The worker's record, if `secret` proves the caller is that worker.
pub(crate) fn authenticate_worker(
    consensus: &Consensus,
    node_id: u64,
    secret: &str,
) -> Result<NodeRecord, CtlError> {
    let record = consensus
        .read_stale(|state| state.nodes.get(&node_id).cloned())
        .ok_or_else(|| {
            CtlError::new(
                ErrorCode::NotFound,
                format!(
                    "node {node_id} is not known to this manager: its join has not reached it yet, or the node was removed (then join again with a worker token)"
                ),
            )
        })?;
    match &record.node_secret {
        Some(expected) if constant_time_eq(expected.as_bytes(), secret.as_bytes()) => Ok(record),
        _ => Err(CtlError::new(
            ErrorCode::InvalidToken,
            format!("this is not node {node_id}'s secret"),
        )),
    }
}

/// On any manager: one round of a worker's session.
pub async fn serve_session(
    consensus: &Consensus,
    gossip: &GossipWatch,
    node_id: u64,
    secret: &str,
    members_seen: Option<u64>,
    keyring_version: Option<u64>,
) -> Result<SessionReply, CtlError> {
    let cluster = require_cluster(consensus)?;
    let record = authenticate_worker(consensus, node_id, secret)?;
    if record.status == NodeStatus::Left {
        return Err(CtlError::new(
            ErrorCode::NotFound,
            format!("node {node_id} has left the cluster; join again with a worker token"),
        ));
    }
    let leader_raft_id = consensus.membership().leader;
    let leader_node_id = leader_raft_id.and_then(|leader| {
        consensus.read_stale(|state| {
            state
                .nodes
                .values()
                .find(|record| record.raft_node_id == Some(leader))
                .map(|record| record.node_id)
        })
    });
    Ok(SessionReply {
        cluster_id: cluster.cluster_id,
        leader_node_id,
        managers: manager_contacts(consensus),
        members: gossip_view_beyond(gossip, members_seen).await,
        gossip_keys: newer_keyring(gossip_keyring(consensus), keyring_version),
    })
}

/// The keyring, if it is newer than the version a worker holds: a worker learns every
/// rotation at its next session round (every few seconds), and keys travel only when they
/// changed.
fn newer_keyring(keyring: GossipKeyring, held: Option<u64>) -> Option<GossipKeyring> {
    (held.is_none_or(|held| held < keyring.version) && keyring.version > 0).then_some(keyring)
}

/// This manager's whole gossip view, if a worker that sees `members_seen` members is clearly
/// behind it; nothing otherwise (the usual case, once a pool has converged).
async fn gossip_view_beyond(gossip: &GossipWatch, members_seen: Option<u64>) -> Vec<MemberState> {
    let Some(seen) = members_seen else {
        return Vec::new();
    };
    let Some(running) = gossip.running() else {
        return Vec::new();
    };
    let own = u64::try_from(running.gossip.member_count()).unwrap_or(u64::MAX);
    if !is_clearly_behind(seen, own) {
        return Vec::new();
    }
    running.gossip.membership_state().await.unwrap_or_default()
}

/// On the leader: marks a leaving worker `left`.
pub async fn worker_leaving(
    consensus: &Consensus,
    node_id: u64,
    secret: &str,
) -> Result<(), CtlError> {
    authenticate_worker(consensus, node_id, secret)?;
    let left = Command::Node(Box::new(NodeCommand::SetStatus {
        node_id,
        status: NodeStatus::Left,
        at_ms: crate::now_ms(),
    }));
    propose(consensus, left).await?;
    tracing::info!(node_id, "a worker left");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyring_goes_to_a_worker_only_when_it_is_newer() {
        let mut keyring = GossipKeyring::default();
        assert_eq!(
            newer_keyring(keyring.clone(), None),
            None,
            "nothing to send"
        );
        keyring.version = 3;
        assert!(newer_keyring(keyring.clone(), None).is_some());
        assert!(newer_keyring(keyring.clone(), Some(2)).is_some());
        assert_eq!(newer_keyring(keyring.clone(), Some(3)), None);
        assert_eq!(newer_keyring(keyring, Some(4)), None);
    }

    #[test]
    fn a_worker_is_clearly_behind_when_it_misses_more_than_gossip_soon_mends() {
        // Small pools: any difference.
        assert!(is_clearly_behind(0, 1));
        assert!(is_clearly_behind(18, 19));
        assert!(!is_clearly_behind(19, 19));
        assert!(!is_clearly_behind(25, 19), "a worker ahead is not behind");
        // Large pools: more than one member in twenty.
        assert!(is_clearly_behind(77, 153));
        assert!(!is_clearly_behind(150, 153));
        assert!(!is_clearly_behind(9_600, 10_000));
        assert!(is_clearly_behind(9_400, 10_000));
    }
}
