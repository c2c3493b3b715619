//! The server side of a request/response protocol, after the hello: requests are read as they
//! arrive, each is answered on its own task, and replies go out as they are ready, coalesced
//! into few writes.
//!
//! Whatever a peer sends, it gets a typed error frame where one can still be sent, and at worst
//! this one connection is closed: a frame that is no request gets the protocol's `Malformed`
//! error, a request of a kind this side does not know gets `UnknownRequest`, a frame over the
//! size limit gets `FrameTooLarge` and the connection closes (the byte stream can no longer be
//! framed), and an answer too large for a frame becomes an error under the same id.
//!
//! At most `max_in_flight` requests are handled at once; past that the connection is not read
//! until one finishes, so a fast client meets backpressure instead of growing the server's
//! memory. A plain request runs to its end even if the client goes away (it may be a membership
//! change half done); a stream stops when the client cancels it or the connection closes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::envelope::{Body, RequestFrame, RequestId, ResponseFrame};
use crate::frame::{self, MAX_FRAME_LEN};
use crate::hello::Hello;
use crate::listen::Connection;
use crate::protocol::{Fault, FaultKind, Protocol};
use crate::transport::PeerInfo;

/// Who sent a request: what the transport and the hello said about the peer.
#[derive(Debug, Clone)]
pub struct Caller {
    pub peer: PeerInfo,
    pub hello: Hello,
}

/// A handler's answer: one reply, or a stream of them.
pub enum Reply<P: Protocol> {
    One(Result<P::Response, P::Error>),
    /// Items until the sender is dropped (then the stream's end frame goes out) or an error
    /// (sent, and the stream ends there).
    Stream(mpsc::Receiver<Result<P::Response, P::Error>>),
}

impl<P: Protocol> From<Result<P::Response, P::Error>> for Reply<P> {
    fn from(result: Result<P::Response, P::Error>) -> Self {
        Reply::One(result)
    }
}

/// Serves `connection` until the peer closes it or writing fails.
pub async fn serve<P, H, Fut>(connection: Connection, max_in_flight: usize, handler: H)
where
    P: Protocol,
    H: Fn(Arc<Caller>, P::Request) -> Fut,
    Fut: Future<Output = Reply<P>> + Send + 'static,
{
    let caller = Arc::new(Caller {
        peer: connection.peer,
        hello: connection.hello,
    });
    let (mut sink, mut requests) = connection.framed.split();
    let (replies, outgoing) = mpsc::channel::<Bytes>(max_in_flight.max(1));
    let mut writer = tokio::spawn(async move {
        let _ = frame::pump(outgoing, &mut sink).await;
    });
    let in_flight = Arc::new(Semaphore::new(max_in_flight.max(1)));
    // Streams stop with the connection, or one by one when the client cancels them.
    let closed = CancellationToken::new();
    let streams: Arc<Mutex<HashMap<u64, CancellationToken>>> = Arc::default();
    loop {
        let item = tokio::select! {
            item = requests.next() => item,
            // The writer only stops when the socket fails: nothing more can be answered.
            _ = &mut writer => break,
        };
        let Some(item) = item else {
            break;
        };
        let body = match item {
            Ok(body) => body,
            Err(error) => {
                // A length prefix over the limit: the rest of the stream can no longer be
                // framed, so say why and close. Any other read error just closes.
                if frame::is_frame_too_large(&error) {
                    let fault = Fault {
                        kind: FaultKind::FrameTooLarge,
                        message: format!(
                            "a frame was larger than {MAX_FRAME_LEN} bytes; the connection is closed"
                        ),
                    };
                    if let Some(bytes) = encode_error::<P>(0, fault) {
                        let _ = replies.send(bytes).await;
                    }
                }
                break;
            }
        };
        let frame = match decode_request::<P>(&body) {
            Ok(frame) => frame,
            Err((id, fault)) => {
                if let Some(bytes) = encode_error::<P>(id, fault)
                    && replies.send(bytes).await.is_err()
                {
                    break;
                }
                continue;
            }
        };
        let id = frame.id;
        let Some(request) = frame.request else {
            if let Some(stream) = lock(&streams).remove(&id) {
                stream.cancel();
            }
            continue;
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let work = handler(caller.clone(), request);
        let replies = replies.clone();
        let closed = closed.clone();
        let streams = streams.clone();
        tokio::spawn(async move {
            let reply = work.await;
            drop(permit);
            match reply {
                Reply::One(result) => {
                    let body = match result {
                        Ok(response) => Body::Reply(response),
                        Err(error) => Body::Error(error),
                    };
                    if let Some(bytes) = encode::<P>(&ResponseFrame { id, body }) {
                        let _ = replies.send(bytes).await;
                    }
                }
                Reply::Stream(items) => {
                    let cancel = closed.child_token();
                    lock(&streams).insert(id, cancel.clone());
                    forward_stream::<P>(id, items, &replies, &cancel).await;
                    lock(&streams).remove(&id);
                }
            }
        });
    }
    closed.cancel();
    drop(replies);
    let _ = writer.await;
}

/// Sends a stream's items under `id`, then its end; stops early when `cancel` fires.
async fn forward_stream<P: Protocol>(
    id: u64,
    mut items: mpsc::Receiver<Result<P::Response, P::Error>>,
    replies: &mpsc::Sender<Bytes>,
    cancel: &CancellationToken,
) {
    loop {
        let item = tokio::select! {
            () = cancel.cancelled() => return,
            item = items.recv() => item,
        };
        let (body, last) = match item {
            Some(Ok(response)) => (Body::Item(response), false),
            Some(Err(error)) => (Body::Error(error), true),
            None => (Body::End, true),
        };
        let Some(bytes) = encode::<P>(&ResponseFrame { id, body }) else {
            return;
        };
        if replies.send(bytes).await.is_err() || last {
            return;
        }
    }
}

/// Decodes a received request frame, or says why it cannot be and under which id to say it:
/// what the serve loop does with every frame after the hello (public for the fuzz targets,
/// which feed it arbitrary bytes).
pub fn decode_request<P: Protocol>(body: &[u8]) -> Result<RequestFrame<P::Request>, (u64, Fault)> {
    let error = match frame::decode::<RequestFrame<P::Request>>(body) {
        Ok(frame) if frame.request.is_some() || frame.cancel => return Ok(frame),
        Ok(frame) => {
            return Err((
                frame.id,
                Fault {
                    kind: FaultKind::Malformed,
                    message: "malformed request: a frame without a request".to_string(),
                },
            ));
        }
        Err(error) => error,
    };
    let id = frame::decode::<RequestId>(body).map_or(0, |frame| frame.id);
    let unknown = crate::variants::requested_variant(body)
        .filter(|name| !crate::variants::is_variant_of::<P::Request>(name));
    let fault = match unknown {
        Some(name) => Fault {
            kind: FaultKind::UnknownRequest,
            message: format!("this side does not know the request {name:?}"),
        },
        None => Fault {
            kind: FaultKind::Malformed,
            message: format!("malformed request: {error}"),
        },
    };
    Err((id, fault))
}

/// Encodes a response; one too large for a frame becomes an error under the same id, so the
/// client is answered instead of left waiting.
fn encode<P: Protocol>(response: &ResponseFrame<P::Response, P::Error>) -> Option<Bytes> {
    match frame::encode(response) {
        Ok(bytes) if bytes.len() <= MAX_FRAME_LEN => Some(bytes),
        Ok(bytes) => encode_error::<P>(
            response.id,
            Fault {
                kind: FaultKind::ReplyTooLarge,
                message: format!(
                    "the answer would be {} bytes, over the {MAX_FRAME_LEN}-byte frame limit; ask for less",
                    bytes.len()
                ),
            },
        ),
        Err(error) => {
            tracing::error!(%error, "a response could not be encoded");
            None
        }
    }
}

fn encode_error<P: Protocol>(id: u64, fault: Fault) -> Option<Bytes> {
    let frame = ResponseFrame::<P::Response, P::Error> {
        id,
        body: Body::Error(P::Error::from(fault)),
    };
    match frame::encode(&frame) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::error!(%error, "an error response could not be encoded");
            None
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
