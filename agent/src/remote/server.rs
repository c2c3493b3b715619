//! Serving the node-to-node API: hello, then requests answered concurrently by id.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use symphony_ctl::frame::{self, MAX_FRAME_LEN};
use symphony_ctl::proto::{CtlError, ErrorCode, RequestId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::proto::{
    PROTOCOL, PROTOCOL_VERSION, RemoteHello, RemoteRequestFrame, RemoteResponseFrame,
};
use crate::node::Node;
use crate::pipeline::Step;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 4096;
const MAX_IN_FLIGHT: usize = 1024;

/// Accepts node-to-node connections until `shutdown`.
pub async fn serve(listener: TcpListener, node: Arc<Node>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a remote connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many remote connections; closing a new one");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let node = node.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = serve_connection(socket, node) => {}
            }
            drop(slot);
        });
    }
}

async fn serve_connection<S>(socket: S, node: Arc<Node>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut framed = frame::framed(socket, MAX_FRAME_LEN);
    let Ok(Some(Ok(first))) = tokio::time::timeout(HELLO_TIMEOUT, framed.next()).await else {
        return;
    };
    let refused = match frame::decode::<RemoteHello>(&first) {
        Ok(hello) if hello.protocol == PROTOCOL && hello.version == PROTOCOL_VERSION => None,
        Ok(hello) => Some(CtlError::new(
            ErrorCode::ProtocolMismatch,
            format!(
                "this node speaks {PROTOCOL} v{PROTOCOL_VERSION}, the peer {} v{}; run the same agent version on every node",
                hello.protocol, hello.version
            ),
        )),
        Err(_) => Some(CtlError::new(
            ErrorCode::ProtocolMismatch,
            format!("the first frame was not a {PROTOCOL} hello"),
        )),
    };
    let reply = RemoteHello {
        protocol: PROTOCOL.to_string(),
        version: PROTOCOL_VERSION,
        node_id: node.identity().node_id,
        refused: refused.clone(),
    };
    let Ok(bytes) = frame::encode(&reply) else {
        return;
    };
    if framed.send(bytes).await.is_err() || refused.is_some() {
        return;
    }

    let (sink, requests) = framed.split();
    crate::pipeline::serve(requests, sink, MAX_IN_FLIGHT, |item| {
        let Ok(body) = item else {
            return Step::Close(None);
        };
        let frame: RemoteRequestFrame = match frame::decode(&body) {
            Ok(frame) => frame,
            Err(error) => {
                let id = frame::decode::<RequestId>(&body).map_or(0, |r| r.id);
                let response = RemoteResponseFrame {
                    id,
                    result: Err(CtlError::new(
                        ErrorCode::BadRequest,
                        format!("malformed request: {error}"),
                    )),
                };
                return encode_response(&response).map_or(Step::Nothing, Step::Reply);
            }
        };
        let node = node.clone();
        Step::Spawn(async move {
            let result = node.handle_remote(frame.request).await;
            encode_response(&RemoteResponseFrame {
                id: frame.id,
                result,
            })
        })
    })
    .await;
}

/// Encodes a response; one too large for a frame becomes an error under the same id.
fn encode_response(response: &RemoteResponseFrame) -> Option<Bytes> {
    let encoded = frame::encode_within(response, MAX_FRAME_LEN, |size| RemoteResponseFrame {
        id: response.id,
        result: Err(CtlError::new(
            ErrorCode::BadRequest,
            format!(
                "the answer would be {size} bytes, over the {MAX_FRAME_LEN}-byte frame limit; ask for less"
            ),
        )),
    });
    match encoded {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::error!(%error, "a remote response could not be encoded");
            None
        }
    }
}
