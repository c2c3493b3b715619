//! The incoming side: accept managers' connections on `--listen-raft-addr` and hand each one to
//! a [`session`](super::session) that serves its RPCs until the peer hangs up.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::rpc::LocalIdentity;
use super::session;
use crate::types::Raft;

/// Serves Raft RPCs on `listener` until `shutdown` is cancelled, starting with `first`: a
/// connection already accepted before the Raft node existed (a fresh node starts its Raft node
/// only when the first peer calls).
pub async fn serve(
    listener: Arc<TcpListener>,
    first: Option<TcpStream>,
    raft: Raft,
    local_id: u64,
    identity: LocalIdentity,
    shutdown: CancellationToken,
) {
    if let Some(socket) = first {
        spawn_session(
            socket,
            raft.clone(),
            local_id,
            identity.clone(),
            shutdown.clone(),
        );
    }
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, _)) => spawn_session(
                socket,
                raft.clone(),
                local_id,
                identity.clone(),
                shutdown.clone(),
            ),
            Err(error) => {
                // Usually out of file descriptors; pause so the loop does not spin.
                tracing::warn!(%error, "accepting a raft connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves one accepted connection's RPCs until the peer hangs up or `shutdown` is cancelled.
pub fn spawn_session(
    socket: TcpStream,
    raft: Raft,
    local_id: u64,
    identity: LocalIdentity,
    shutdown: CancellationToken,
) {
    let _ = socket.set_nodelay(true);
    let peer = socket.peer_addr().ok();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            result = session::serve_connection(socket, &raft, local_id, &identity) => {
                if let Err(error) = result {
                    tracing::debug!(?peer, %error, "raft connection closed");
                }
            }
        }
    });
}
