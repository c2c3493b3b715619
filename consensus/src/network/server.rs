//! The incoming side: accept managers' connections on `--listen-raft-addr` and hand each RPC to
//! the local Raft node. Requests on one connection are handled in order, which is what
//! replication needs; openraft opens separate connections for heartbeats and snapshots.

use futures_util::{SinkExt, StreamExt};
use symphony_ctl::frame::{self, MAX_FRAME_LEN};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::rpc::{
    LocalIdentity, PROTOCOL, PROTOCOL_VERSION, PeerIdentity, RaftHello, RaftReply, RaftRequest,
};
use crate::types::{Raft, Snapshot};

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
                        result = serve_connection(socket, &raft, local_id, &identity) => {
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

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] frame::FrameError),
    #[error("the peer speaks {0} v{1}")]
    Protocol(String, u32),
}

async fn serve_connection<S>(
    socket: S,
    raft: &Raft,
    local_id: u64,
    identity: &LocalIdentity,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = frame::framed(socket, MAX_FRAME_LEN);
    let Some(first) = stream.next().await else {
        return Ok(());
    };
    let hello: RaftHello = frame::decode(&first?)?;
    let reply = RaftHello {
        protocol: PROTOCOL.to_string(),
        version: PROTOCOL_VERSION,
        node_id: local_id,
    };
    stream.send(frame::encode(&reply)?).await?;
    if hello.protocol != PROTOCOL || hello.version != PROTOCOL_VERSION {
        return Err(ConnectionError::Protocol(hello.protocol, hello.version));
    }
    while let Some(body) = stream.next().await {
        let reply = match frame::decode::<RaftRequest>(&body?) {
            Ok(RaftRequest::Identify) => RaftReply::Identity(PeerIdentity {
                raft_node_id: local_id,
                node_id: identity.node_id,
                remote_addr: identity.remote_addr.clone(),
                initialised: raft.is_initialized().await.unwrap_or(false),
            }),
            Ok(request) => handle(raft, request).await,
            Err(error) => RaftReply::Failed(format!("undecodable request: {error}")),
        };
        stream.send(frame::encode(&reply)?).await?;
    }
    Ok(())
}

async fn handle(raft: &Raft, request: RaftRequest) -> RaftReply {
    match request {
        RaftRequest::Append(rpc) => match raft.append_entries(rpc).await {
            Ok(reply) => RaftReply::Append(reply),
            Err(error) => RaftReply::Failed(error.to_string()),
        },
        RaftRequest::Vote(rpc) => match raft.vote(rpc).await {
            Ok(reply) => RaftReply::Vote(reply),
            Err(error) => RaftReply::Failed(error.to_string()),
        },
        RaftRequest::PreVote(rpc) => match raft.pre_vote(rpc).await {
            Ok(reply) => RaftReply::Vote(reply),
            Err(error) => RaftReply::Failed(error.to_string()),
        },
        RaftRequest::Snapshot { vote, meta, data } => {
            let snapshot = Snapshot {
                meta,
                snapshot: data,
            };
            match raft.install_full_snapshot(vote, snapshot).await {
                Ok(reply) => RaftReply::Snapshot(reply),
                Err(error) => RaftReply::Failed(error.to_string()),
            }
        }
        RaftRequest::TransferLeader(rpc) => match raft.handle_transfer_leader(rpc).await {
            Ok(reply) => RaftReply::TransferLeader(reply),
            Err(error) => RaftReply::Failed(error.to_string()),
        },
        RaftRequest::Identify => RaftReply::Failed("identify is answered by the connection".into()),
    }
}
