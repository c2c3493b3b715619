//! Finding the leader, and passing a call on to it once.
//!
//! A request that needs the leader is answered where it arrives when that manager leads, and
//! otherwise passed on to the leader over the node-to-node API with the call marked
//! `forwarded`. A manager that receives a forwarded call answers it or refuses it (saying who
//! it believes leads), and never passes it on again, so a stale view cannot make a loop.

use std::time::Duration;

use symphony_ctl::proto::{CtlError, ErrorCode, LeaderHint, Request, Response};

use super::RemotePool;
use super::proto::{RemoteReply, RemoteRequest};
use crate::errors::{internal, not_leader};
use crate::node::{NodeHandle, NodeState};

/// How long a request waits for a leader to be elected before it gives up.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long a forwarded request may take on the leader.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// The leader as `state` knows it: `Ok(None)` when this node leads, `Ok(Some(addr))` when
/// another manager does, `Err` with what is known when no leader is.
pub fn leader_now(state: &NodeState) -> Result<Option<String>, Option<LeaderHint>> {
    // A node without a Raft node, or whose Raft node has stopped, knows no leader.
    let Some(consensus) = state
        .consensus
        .as_ref()
        .filter(|consensus| !consensus.has_stopped())
    else {
        return Err(None);
    };
    // Every request that needs the leader asks this: one member's record, not the membership.
    match consensus.leader() {
        Some((leader, _)) if leader == consensus.raft_node_id() => Ok(None),
        Some((_, Some(node))) => Ok(Some(node.remote_addr)),
        Some((leader, None)) => Err(Some(LeaderHint {
            raft_id: leader,
            remote_addr: None,
        })),
        None => Err(None),
    }
}

/// The leader's remote address when another manager leads; `None` when this one does. Waits a
/// little for an election in progress, then says no manager leads (nothing was proposed).
pub async fn leader_elsewhere(
    node: &NodeHandle,
    remote: &RemotePool,
) -> Result<Option<String>, CtlError> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        let state = node.state();
        let known = match leader_now(&state) {
            Ok(leader) => return Ok(leader),
            Err(known) => known,
        };
        // A manager whose Raft node stopped (its store failed) still forwards: the other
        // managers know who leads.
        if let Some(consensus) = state.consensus.as_ref().filter(|c| c.has_stopped())
            && let Some(leader) =
                leader_from_peers(consensus, remote, &node.config().advertised.remote_addr).await
        {
            return Ok(Some(leader));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CtlError::new(
                ErrorCode::NoLeader,
                "no manager is leader right now (an election may be under way, or a quorum of managers is down); retry, or see `symphony-ctl status`",
            )
            .not_applied()
            .with_leader(known));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Asks the other managers who leads.
async fn leader_from_peers(
    consensus: &symphony_consensus::Consensus,
    remote: &RemotePool,
    own_addr: &str,
) -> Option<String> {
    let peers: Vec<String> = consensus
        .membership()
        .nodes
        .values()
        .map(|node| node.remote_addr.clone())
        .filter(|addr| addr != own_addr)
        .collect();
    for peer in peers {
        if let Ok(RemoteReply::Leader(Some(leader))) = remote
            .call(&peer, RemoteRequest::WhoLeads, Duration::from_secs(2))
            .await
            && leader != own_addr
        {
            return Some(leader);
        }
    }
    None
}

/// For a forwarded call: `Ok` when this node leads, else the refusal naming who it believes
/// leads. Never waits, never passes the call on.
pub fn refuse_unless_leading(state: &NodeState) -> Result<(), CtlError> {
    match leader_now(state) {
        Ok(None) => Ok(()),
        Ok(Some(addr)) => {
            let raft_id = state
                .consensus
                .as_ref()
                .and_then(|consensus| consensus.leader().map(|(leader, _)| leader));
            Err(not_leader(raft_id.map(|raft_id| LeaderHint {
                raft_id,
                remote_addr: Some(addr),
            })))
        }
        Err(known) => Err(not_leader(known)),
    }
}

/// Passes a control request on to the leader at `leader_addr`.
pub async fn forward_control(
    remote: &RemotePool,
    leader_addr: &str,
    manager_secret: String,
    request: Request,
) -> Result<Response, CtlError> {
    let call = RemoteRequest::Forward {
        secret: manager_secret,
        request,
    };
    match remote.forward(leader_addr, call, FORWARD_TIMEOUT).await? {
        RemoteReply::Forwarded(response) => Ok(response),
        _ => Err(internal(
            "the leader answered a forwarded request with something else",
        )),
    }
}
