//! A worker asked to admit a node (another worker joins through it) passes the join to a
//! manager it knows; everything else the node-to-node API offers is for managers only.

use symphony_ctl::proto::{CtlError, ErrorCode};

use super::session::managers_to_try;
use crate::context::Context;
use crate::node::init::JOIN_TIMEOUT;
use crate::remote::proto::{RemoteReply, RemoteRequest};

pub async fn handle(ctx: &Context, request: RemoteRequest) -> Result<RemoteReply, CtlError> {
    let RemoteRequest::Join(join) = request else {
        return Err(CtlError::new(
            ErrorCode::NotManager,
            "this node is a worker; send this to a manager",
        ));
    };
    let managers = managers_to_try(ctx).await;
    let mut last_error = None;
    for manager in managers {
        match ctx
            .remote
            .call(
                &manager.remote_addr,
                RemoteRequest::Join(join.clone()),
                JOIN_TIMEOUT,
            )
            .await
        {
            Ok(reply) => return Ok(reply),
            Err(error) if error.code == ErrorCode::Unavailable => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        CtlError::new(
            ErrorCode::Unavailable,
            "this worker knows no manager to pass the join to",
        )
        .not_applied()
    }))
}
