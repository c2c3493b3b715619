//! Ceasing to be a manager of the cluster one was: `leave` (hand leadership over, be removed,
//! start again as a fresh node) and `recover --force-new-cluster` (after a quorum loss, become
//! a one-voter cluster with all the state this node has).

use std::time::Duration;

use symphony_consensus::store::seed;
use symphony_ctl::proto::{CtlError, DoneInfo, ErrorCode};

use super::init::{manager_node, own_record};
use super::supervisor::Owner;
use crate::errors::{consensus_error, internal, not_initialised};
use crate::manager::membership::remove_leaving;
use crate::remote::forward::leader_elsewhere;
use crate::remote::proto::{RemoteReply, RemoteRequest};

/// How long a leadership hand-over or a new election may take.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the leader may take to remove this node.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// `leave` on a manager: hand leadership over if this node has it, have the leader remove
/// this node, then start over as a fresh node (same node id, a new Raft id, no cluster).
pub async fn leave(owner: &mut Owner) -> Result<DoneInfo, CtlError> {
    let state = owner.current();
    let cluster = state.cluster().ok_or_else(not_initialised)?;
    let consensus = state.consensus.clone().ok_or_else(not_initialised)?;
    let me = consensus.raft_node_id();
    let view = consensus.membership();
    let others: Vec<u64> = view.voters.iter().copied().filter(|id| *id != me).collect();
    let Some(&first_other) = others.first() else {
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            "this is the cluster's only voting manager; it cannot leave (promote another manager first)",
        ));
    };
    if view.leader == Some(me) {
        let successor =
            crate::manager::handover::successor(me, &view.voters, &consensus.progress())
                .unwrap_or(first_other);
        consensus
            .transfer_leadership(successor)
            .await
            .map_err(consensus_error)?;
        let deadline = tokio::time::Instant::now() + ELECTION_TIMEOUT;
        while consensus
            .membership()
            .leader
            .is_none_or(|leader| leader == me)
        {
            if tokio::time::Instant::now() >= deadline {
                return Err(CtlError::new(
                    ErrorCode::Unavailable,
                    "leadership could not be handed over; try again",
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let node_id = state.identity.node_id;
    match leader_elsewhere(owner.node(), &owner.ctx.remote).await? {
        // The leaving manager tells the leader it knows; the leader never passes it on.
        Some(leader_addr) => {
            let notice = RemoteRequest::Leaving {
                secret: cluster.manager_secret.clone(),
                node_id,
            };
            match owner
                .ctx
                .remote
                .forward(&leader_addr, notice, LEAVE_TIMEOUT)
                .await?
            {
                RemoteReply::Left => {}
                _ => return Err(internal("the leader answered with something else")),
            }
        }
        None => remove_leaving(&consensus, node_id).await?,
    }
    reset_to_fresh(owner).await?;
    Ok(DoneInfo {
        message: format!(
            "this node left cluster {}; it can join a cluster again",
            cluster.cluster_id
        ),
    })
}

/// Drops this node's Raft store and starts an empty Raft node under a new Raft id.
async fn reset_to_fresh(owner: &mut Owner) -> Result<(), CtlError> {
    owner.stop_raft().await;
    let dir = owner.config().setup.config.data_dir.clone();
    let wipe = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir))
        .await
        .map_err(|error| internal(error.to_string()))?;
    if let Err(error) = wipe
        && error.kind() != std::io::ErrorKind::NotFound
    {
        return Err(internal(format!(
            "cannot remove the old Raft store: {error}"
        )));
    }
    let renewed = owner.renew_raft_id()?;
    tracing::info!(
        raft_node_id = renewed.raft_node_id,
        "a new Raft id for this node's next cluster"
    );
    owner.start_raft().await?;
    owner.membership_changed();
    Ok(())
}

/// `recover --force-new-cluster`: this manager becomes a one-voter cluster with all the
/// state it has, including log entries it never saw committed.
pub async fn recover_force_new_cluster(owner: &mut Owner) -> Result<DoneInfo, CtlError> {
    let cluster = owner.current().cluster().ok_or_else(not_initialised)?;
    owner.stop_raft().await;
    let dir = owner.config().setup.config.data_dir.clone();
    let rewrite_error =
        |error: std::io::Error| internal(format!("cannot rewrite the Raft store: {error}"));
    let recovered = recover_state_when_closed(&dir)
        .await
        .map_err(rewrite_error)?;
    let mut state = recovered.state;
    let own = own_record(owner, crate::now_ms());
    state.nodes.seed(own);
    seed::seed_single_voter(
        &dir,
        owner.current().identity.raft_node_id,
        manager_node(owner),
        &state,
        recovered.last_log_id,
    )
    .await
    .map_err(rewrite_error)?;
    let consensus = owner.start_raft().await?;
    consensus
        .wait_for_leadership(ELECTION_TIMEOUT)
        .await
        .map_err(consensus_error)?;
    owner.membership_changed();
    tracing::warn!(cluster_id = %cluster.cluster_id, "forced a new one-manager cluster");
    Ok(DoneInfo {
        message: format!(
            "this manager is now the only voter of cluster {}, with all its state; add managers with `join --token`",
            cluster.cluster_id
        ),
    })
}

/// Reads the old store once the stopped Raft node has let go of it (its tasks drop the store
/// as they end, a moment after `shutdown` returns).
async fn recover_state_when_closed(dir: &std::path::Path) -> std::io::Result<seed::Recovered> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match seed::recover_state(dir).await {
            Ok(recovered) => return Ok(recovered),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "the old Raft store is still open; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error),
        }
    }
}
