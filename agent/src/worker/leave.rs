//! `leave` on a worker: the leader marks it `left`, then it leaves the gossip pool and forgets
//! the cluster. Nothing changes unless a manager recorded the leave.

use symphony_ctl::proto::{CtlError, DoneInfo, ErrorCode};

use super::session::candidates;
use crate::errors::{internal, not_initialised};
use crate::node::init::JOIN_TIMEOUT;
use crate::node::supervisor::Owner;
use crate::remote::proto::{RemoteReply, RemoteRequest};

pub async fn leave(owner: &mut Owner) -> Result<DoneInfo, CtlError> {
    let state = owner.current();
    let Some(worker) = state.worker.clone() else {
        return Err(not_initialised());
    };
    let notice = RemoteRequest::WorkerLeaving {
        node_id: state.identity.node_id,
        secret: worker.node_secret.clone(),
    };
    let gossip = owner.ctx.gossip.running().map(|running| running.gossip);
    let current = owner.ctx.session.view().map(|view| view.manager);
    let managers = candidates(
        current,
        gossip.as_ref(),
        state.identity.node_id,
        worker.managers.clone(),
    )
    .await;
    let mut recorded = false;
    let mut last_error = None;
    for manager in managers {
        match owner
            .ctx
            .remote
            .call(&manager.remote_addr, notice.clone(), JOIN_TIMEOUT)
            .await
        {
            Ok(RemoteReply::Left) => {
                recorded = true;
                break;
            }
            Ok(_) => return Err(internal("the manager answered with something else")),
            Err(error) if error.code == ErrorCode::Unavailable => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    if !recorded {
        return Err(CtlError::new(
            ErrorCode::Unavailable,
            format!(
                "no manager could record the leave ({}); nothing changed, retry when a manager is reachable",
                last_error.map_or_else(|| "none is known".to_string(), |e| e.message)
            ),
        )
        .not_applied());
    }
    owner.set_worker(None).await?;
    if let Err(error) = owner.open_raft_port().await {
        tracing::info!(%error, "not serving Raft after leaving; init or a manager join will retry");
    }
    Ok(DoneInfo {
        message: format!(
            "this node left cluster {}; it can join a cluster again",
            worker.cluster_id
        ),
    })
}
