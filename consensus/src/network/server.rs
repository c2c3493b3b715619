//! The incoming side: accept managers' connections on `--listen-raft-addr` and hand each one to
//! a [`session`](super::session) that serves its RPCs until the peer hangs up.

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::rpc::LocalIdentity;
use super::session;
use crate::types::Raft;

/// Serves Raft RPCs on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    raft: Raft,
    local_id: u64,
    identity: LocalIdentity,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                let _ = socket.set_nodelay(true);
                let raft = raft.clone();
                let shutdown = shutdown.clone();
                let identity = identity.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        result = session::serve_connection(socket, &raft, local_id, &identity) => {
                            if let Err(error) = result {
                                tracing::debug!(%peer, %error, "raft connection closed");
                            }
                        }
                    }
                });
            }
            Err(error) => {
                // Usually out of file descriptors; pause so the loop does not spin.
                tracing::warn!(%error, "accepting a raft connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
