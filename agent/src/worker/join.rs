//! Becoming a worker: `join --token <worker token>` through any node of the cluster.
//!
//! A manager passes the join to the leader, a worker passes it to a manager it knows. The
//! leader checks the token, writes the node's record (role worker, status ready) and hands
//! back a secret of the worker's own and the managers, whose gossip addresses are the worker's
//! seeds. The worker keeps both in `worker.json`, so a restart rejoins the same cluster as the
//! same node without a token.
//!
//! A worker whose certificate expired while it was off (it renews its own only while it
//! runs) is refused by every manager; `join --token` re-enrols it ([`rejoin`]): the same
//! node id, role and record, a new certificate for the same key (which the leader checks
//! against the one it issued before).

use symphony_ctl::proto::{CtlError, ErrorCode, JoinInfo, Role};

use super::state::WorkerState;
use crate::errors::{already_in, internal};
use crate::node::init::{join_request, keep_certificate, send_join};
use crate::node::supervisor::Owner;

pub async fn join(owner: &mut Owner, token: String, addr: &str) -> Result<JoinInfo, CtlError> {
    let state = owner.current();
    if let Some(worker) = state.worker {
        if !owner.ctx.tls.holds_valid_certificate() {
            return rejoin(owner, token, addr, worker).await;
        }
        return Err(already_in(&worker.cluster_id));
    }
    if let Some(cluster) = state.cluster() {
        return Err(already_in(&cluster.cluster_id));
    }
    // Checked before anything changes here: a CA the token does not pin stops the join.
    let (bundle, csr) = crate::node::init::prepare_join(owner, Some(&token), addr).await?;
    // A worker serves no Raft RPCs: stop listening (freeing the port for a manager on this
    // machine) before asking, so that no peer's `init --peers` can start making this node a
    // manager while it joins as a worker. A Raft node may run already: harmless if it holds no
    // membership (a manager join that failed), not if a peer has given it one.
    owner.close_raft_port().await;
    if owner.raft_has_membership().await {
        listen_again(owner).await;
        return Err(CtlError::new(
            ErrorCode::AlreadyInitialised,
            "another node has begun adding this one to its Raft group as a manager (an `init --peers` or a manager join named it); see `status`, or join from a fresh node",
        ));
    }
    let request = join_request(owner, Some(token), None, Some(csr));
    let reply = match send_join(owner, addr, request, bundle.as_ref()).await {
        Ok(reply) => reply,
        Err(error) => {
            listen_again(owner).await;
            return Err(error);
        }
    };
    keep_certificate(owner, bundle.as_ref(), &reply);
    let (Role::Worker, Some(node_secret)) = (reply.role, reply.node_secret) else {
        listen_again(owner).await;
        return Err(internal(
            "the cluster did not admit this node as a worker; was a manager token given?",
        ));
    };
    // Kept before the membership, so that gossip starts sealed under the cluster's keys.
    keep_keyring(owner, &reply.cluster_id, reply.gossip_keys.as_ref());
    let worker = WorkerState {
        cluster_id: reply.cluster_id.clone(),
        node_secret,
        managers: reply.managers,
    };
    if let Err(error) = owner.set_worker(Some(worker)).await {
        // Admitted, but this node cannot remember it: it stays a fresh node, and the
        // cluster's record of it will be marked down.
        listen_again(owner).await;
        return Err(error);
    }
    // A Raft node built by an earlier, failed manager join holds nothing: let it go.
    owner.stop_raft().await;
    // So that `status` names the managers as soon as the join returns.
    owner.ctx.session.refresh_now().await;
    tracing::info!(cluster_id = %reply.cluster_id, "joined the cluster as a worker");
    Ok(JoinInfo {
        cluster_id: reply.cluster_id,
        node_id: owner.current().identity.node_id,
        role: Role::Worker,
        leader_raft_id: reply.leader_raft_id,
    })
}

/// `join --token` of a worker whose certificate is no longer valid: the same join, as a
/// newcomer, under its own id and for its own key; the leader keeps its record (merged) and
/// issues a new certificate and a new secret.
async fn rejoin(
    owner: &mut Owner,
    token: String,
    addr: &str,
    worker: WorkerState,
) -> Result<JoinInfo, CtlError> {
    let (bundle, csr) = crate::node::init::prepare_join(owner, Some(&token), addr).await?;
    let request = join_request(
        owner,
        Some(token),
        Some(worker.cluster_id.clone()),
        Some(csr),
    );
    let reply = send_join(owner, addr, request, bundle.as_ref()).await?;
    if reply.cluster_id != worker.cluster_id {
        return Err(CtlError::new(
            ErrorCode::WrongCluster,
            format!(
                "this worker belongs to cluster {}, and the node at {addr} to {}",
                worker.cluster_id, reply.cluster_id
            ),
        ));
    }
    keep_certificate(owner, bundle.as_ref(), &reply);
    let (Role::Worker, Some(node_secret)) = (reply.role, reply.node_secret) else {
        return Err(internal(
            "the cluster did not admit this node as a worker again; was a manager token given?",
        ));
    };
    keep_keyring(owner, &reply.cluster_id, reply.gossip_keys.as_ref());
    let managers = if reply.managers.is_empty() {
        worker.managers
    } else {
        reply.managers
    };
    owner
        .set_worker(Some(WorkerState {
            cluster_id: reply.cluster_id.clone(),
            node_secret,
            managers,
        }))
        .await?;
    owner.ctx.session.refresh_now().await;
    tracing::info!(cluster_id = %reply.cluster_id, "re-enrolled with the cluster as the same worker");
    Ok(JoinInfo {
        cluster_id: reply.cluster_id,
        node_id: owner.current().identity.node_id,
        role: Role::Worker,
        leader_raft_id: reply.leader_raft_id,
    })
}

/// Keeps the gossip keyring a join brought, before the membership, so that gossip starts
/// sealed under the cluster's keys.
fn keep_keyring(
    owner: &Owner,
    cluster_id: &str,
    keyring: Option<&symphony_consensus::GossipKeyring>,
) {
    if let Some(keyring) = keyring
        && let Err(error) = owner.ctx.keys.offer(cluster_id, keyring)
    {
        tracing::warn!(%error, "cannot keep the gossip keyring on disk; the session will bring it again");
    }
}

/// A fresh node whose worker join did not happen serves its Raft port again, as it did
/// before (it may be named by `init --peers` or join as a manager next).
async fn listen_again(owner: &mut Owner) {
    if let Err(error) = owner.open_raft_port().await {
        tracing::warn!(%error, "cannot listen for Raft connections again");
    }
}
