//! One control connection: the hello exchange, then requests answered as they complete.
//!
//! Every way a peer can misbehave ends in a typed error frame where one can still be sent, and
//! in closing this connection at worst; it never reaches the rest of the agent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use symphony_ctl::frame::{self, MAX_FRAME_LEN};
use symphony_ctl::proto::{
    CtlError, ErrorCode, Hello, HelloReply, PROTOCOL, PROTOCOL_VERSION, RequestFrame, RequestId,
    ResponseBody, ResponseFrame,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::node::Node;
use crate::pipeline::Step;

/// A client must say hello this soon after connecting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests of one connection being handled at once (see [`crate::pipeline`]).
const MAX_IN_FLIGHT: usize = 256;

/// Serves one connection until the peer closes it or breaks the protocol.
pub async fn serve<S>(stream: S, node: Arc<Node>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut framed = frame::framed(stream, MAX_FRAME_LEN);
    let first = match tokio::time::timeout(HELLO_TIMEOUT, framed.next()).await {
        Err(_) | Ok(None) => return,
        Ok(Some(first)) => first,
    };
    let refusal = match first {
        Ok(body) => match frame::decode::<Hello>(&body) {
            Ok(hello) if hello.protocol == PROTOCOL && hello.version == PROTOCOL_VERSION => None,
            Ok(hello) => Some(CtlError::new(
                ErrorCode::ProtocolMismatch,
                format!(
                    "this agent speaks {PROTOCOL} v{PROTOCOL_VERSION}, the client {} v{}; use a symphony-ctl of the same version",
                    hello.protocol, hello.version
                ),
            )),
            Err(_) => Some(CtlError::new(
                ErrorCode::ProtocolMismatch,
                format!("the first frame was not a {PROTOCOL} hello"),
            )),
        },
        Err(error) if frame::is_frame_too_large(&error) => Some(too_large()),
        Err(_) => return,
    };
    let reply = HelloReply {
        protocol: PROTOCOL.to_string(),
        version: PROTOCOL_VERSION,
        node_id: node.identity().node_id,
        agent_version: crate::VERSION.to_string(),
        accepted: refusal.clone().map_or(Ok(()), Err),
    };
    if send(&mut framed, &reply).await.is_err() || refusal.is_some() {
        return;
    }

    let (sink, requests) = framed.split();
    crate::pipeline::serve(requests, sink, MAX_IN_FLIGHT, |item| {
        let body = match item {
            Ok(body) => body,
            // A length prefix over the limit: the rest of the stream can no longer be framed,
            // so say why and close. Any other read error just closes.
            Err(error) => {
                let last = frame::is_frame_too_large(&error)
                    .then(|| encode_response(&error_frame(0, too_large())))
                    .flatten();
                return Step::Close(last);
            }
        };
        let (id, request) = match parse_request(&body) {
            Ok(frame) => (frame.id, frame.request),
            Err(response) => return encode_response(&response).map_or(Step::Nothing, Step::Reply),
        };
        let node = node.clone();
        Step::Spawn(async move {
            let name = request.name();
            let body = match node.handle(request).await {
                Ok(response) => ResponseBody::Reply(response),
                Err(error) => {
                    tracing::debug!(request = name, code = %error.code, %error, "control request failed");
                    ResponseBody::Error(error)
                }
            };
            encode_response(&ResponseFrame { id, body })
        })
    })
    .await;
}

/// Encodes a response; one too large for a frame becomes an error that says so, under the
/// same id, so the client is answered instead of left waiting.
fn encode_response(response: &ResponseFrame) -> Option<Bytes> {
    let encoded = frame::encode_within(response, MAX_FRAME_LEN, |size| {
        error_frame(
            response.id,
            CtlError::new(
                ErrorCode::BadRequest,
                format!(
                    "the answer would be {size} bytes, over the {MAX_FRAME_LEN}-byte frame limit; ask for less (for `kv ls`, a longer prefix)"
                ),
            ),
        )
    });
    match encoded {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::error!(%error, "a control response could not be encoded");
            None
        }
    }
}

/// Decodes a request frame, or builds the error response that explains why it cannot be.
fn parse_request(body: &[u8]) -> Result<RequestFrame, ResponseFrame> {
    match frame::decode::<RequestFrame>(body) {
        Ok(frame) => Ok(frame),
        Err(error) => {
            let message = error.to_string();
            Err(match frame::decode::<RequestId>(body) {
                Ok(RequestId { id }) if message.contains("unknown variant") => error_frame(
                    id,
                    CtlError::new(
                        ErrorCode::UnknownRequest,
                        format!(
                            "this agent does not know that request ({message}); is symphony-ctl newer than the agent?"
                        ),
                    ),
                ),
                Ok(RequestId { id }) => error_frame(
                    id,
                    CtlError::new(
                        ErrorCode::BadRequest,
                        format!("malformed request: {message}"),
                    ),
                ),
                Err(_) => error_frame(
                    0,
                    CtlError::new(
                        ErrorCode::BadRequest,
                        format!("undecodable frame: {message}"),
                    ),
                ),
            })
        }
    }
}

fn error_frame(id: u64, error: CtlError) -> ResponseFrame {
    ResponseFrame {
        id,
        body: ResponseBody::Error(error),
    }
}

fn too_large() -> CtlError {
    CtlError::new(
        ErrorCode::FrameTooLarge,
        format!("a frame was larger than {MAX_FRAME_LEN} bytes; the connection is closed"),
    )
}

async fn send<S>(
    framed: &mut frame::FramedStream<S>,
    message: &HelloReply,
) -> Result<(), std::io::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bytes = frame::encode(message).map_err(std::io::Error::other)?;
    framed.send(bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use symphony_ctl::proto::{ReadConsistency, Request};

    #[test]
    fn unknown_and_malformed_requests_get_typed_errors_under_their_id() {
        #[derive(serde::Serialize)]
        enum Newer {
            Teleport { to: String },
        }
        #[derive(serde::Serialize)]
        struct NewerFrame {
            id: u64,
            request: Newer,
        }
        let unknown = frame::encode(&NewerFrame {
            id: 5,
            request: Newer::Teleport { to: "mars".into() },
        })
        .unwrap();
        let response = parse_request(&unknown).unwrap_err();
        assert_eq!(response.id, 5);
        assert!(
            matches!(response.body, ResponseBody::Error(ref e) if e.code == ErrorCode::UnknownRequest)
        );

        #[derive(serde::Serialize)]
        struct WrongType {
            id: u64,
            request: bool,
        }
        let malformed = frame::encode(&WrongType {
            id: 6,
            request: true,
        })
        .unwrap();
        let response = parse_request(&malformed).unwrap_err();
        assert_eq!(response.id, 6);
        assert!(
            matches!(response.body, ResponseBody::Error(ref e) if e.code == ErrorCode::BadRequest)
        );

        let garbage = b"\xc1\xc1\xc1";
        let response = parse_request(garbage).unwrap_err();
        assert_eq!(response.id, 0);

        let good = frame::encode(&RequestFrame {
            id: 9,
            request: Request::KvGet {
                key: "k".into(),
                consistency: ReadConsistency::Stale,
            },
        })
        .unwrap();
        assert_eq!(parse_request(&good).unwrap().id, 9);
    }
}
