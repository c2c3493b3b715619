//! The client side of a request/response protocol: many calls and streams in flight on one
//! connection.
//!
//! A writer task sends frames as they are submitted (whatever is queued at once goes out in one
//! write); a reader task hands each response to whoever waits for its id. A call cut short —
//! its deadline, or the caller dropping the future — forgets its id, so a late reply is
//! dropped rather than mistaken for another's. When the connection fails every waiter is told
//! at once instead of hanging.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::envelope::{Body, RequestFrame, RequestId, ResponseFrame};
use crate::frame::{self, FrameError, MAX_FRAME_LEN};
use crate::hello::Hello;
use crate::listen::Connection;
use crate::protocol::Protocol;

/// Frames queued for the writer at most; a caller past that waits.
const OUTGOING_QUEUE: usize = 1024;
/// Items of one stream buffered for a consumer that has not read them yet.
const STREAM_BUFFER: usize = 256;

/// Why a call got no answer from the peer's handler.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The peer answered with its typed error.
    #[error("{0}")]
    Remote(E),
    /// The connection closed before the answer came; the request may or may not have arrived.
    #[error("the connection to {peer} closed")]
    Closed { peer: String },
    /// No answer within the caller's deadline; the request may or may not have been acted on.
    #[error("{peer} did not answer within {after:?}")]
    Timeout { peer: String, after: Duration },
    /// The answer could not be read.
    #[error("{peer} sent an answer this side cannot read: {reason}")]
    Unreadable { peer: String, reason: String },
    /// The request was not sent: it encodes to more than a frame may hold.
    #[error("the request is {size} bytes, over the {MAX_FRAME_LEN}-byte frame limit")]
    TooLarge { size: usize },
    /// The request was not sent: it could not be encoded.
    #[error("{0}")]
    Encode(FrameError),
}

impl<E> CallError<E> {
    /// Whether the request certainly never left this side.
    pub fn never_sent(&self) -> bool {
        matches!(self, CallError::TooLarge { .. } | CallError::Encode(_))
    }
}

type Item<P> = Result<<P as Protocol>::Response, CallError<<P as Protocol>::Error>>;

enum Waiter<P: Protocol> {
    Call(oneshot::Sender<Item<P>>),
    Stream(mpsc::Sender<Item<P>>),
}

struct Shared<P: Protocol> {
    peer: String,
    hello: Hello,
    outgoing: mpsc::Sender<Bytes>,
    waiters: Mutex<HashMap<u64, Waiter<P>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
}

impl<P: Protocol> Shared<P> {
    fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter<P>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn closed_error(&self) -> CallError<P::Error> {
        CallError::Closed {
            peer: self.peer.clone(),
        }
    }
}

/// One multiplexed connection; clones share it.
pub struct Mux<P: Protocol> {
    shared: Arc<Shared<P>>,
}

impl<P: Protocol> Clone for Mux<P> {
    fn clone(&self) -> Self {
        Mux {
            shared: self.shared.clone(),
        }
    }
}

impl<P: Protocol> std::fmt::Debug for Mux<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux")
            .field("peer", &self.shared.peer)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl<P: Protocol> Mux<P> {
    /// Takes over `connection` (past its hello); `peer` names it in errors.
    pub fn start(connection: Connection, peer: impl Into<String>) -> Mux<P> {
        let (sink, mut replies) = connection.framed.split();
        let (outgoing, to_send) = mpsc::channel::<Bytes>(OUTGOING_QUEUE);
        let shared = Arc::new(Shared {
            peer: peer.into(),
            hello: connection.hello,
            outgoing,
            waiters: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        });
        let writer = shared.clone();
        tokio::spawn(async move {
            let mut sink = sink;
            let _ = frame::pump(to_send, &mut sink).await;
            writer.closed.store(true, Ordering::SeqCst);
            fail_all(&writer);
        });
        let reader = shared.clone();
        tokio::spawn(async move {
            while let Some(Ok(body)) = replies.next().await {
                if !deliver(&reader, &body).await {
                    break;
                }
            }
            reader.closed.store(true, Ordering::SeqCst);
            fail_all(&reader);
        });
        Mux { shared }
    }

    /// The peer's hello.
    pub fn peer_hello(&self) -> &Hello {
        &self.shared.hello
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst) || self.shared.outgoing.is_closed()
    }

    /// Sends `request` and waits for its answer, at most `timeout` when given.
    pub async fn call(
        &self,
        request: &P::Request,
        timeout: Option<Duration>,
    ) -> Result<P::Response, CallError<P::Error>> {
        let (id, bytes) = self.encode(request)?;
        let (reply, wait) = oneshot::channel();
        let forget = Forget {
            shared: &self.shared,
            id,
            cancel: false,
        };
        self.shared.waiters().insert(id, Waiter::Call(reply));
        self.send(bytes).await?;
        let answer = match timeout {
            Some(after) => match tokio::time::timeout(after, wait).await {
                Ok(answer) => answer,
                Err(_) => {
                    return Err(CallError::Timeout {
                        peer: self.shared.peer.clone(),
                        after,
                    });
                }
            },
            None => wait.await,
        };
        drop(forget);
        answer.unwrap_or_else(|_| Err(self.shared.closed_error()))
    }

    /// Sends `request` and returns the stream of its answers. Dropping the stream before its
    /// end cancels it on the peer.
    pub async fn stream(
        &self,
        request: &P::Request,
    ) -> Result<ReplyStream<P>, CallError<P::Error>> {
        let (id, bytes) = self.encode(request)?;
        let (items, receiver) = mpsc::channel(STREAM_BUFFER);
        self.shared.waiters().insert(id, Waiter::Stream(items));
        if let Err(error) = self.send(bytes).await {
            self.shared.waiters().remove(&id);
            return Err(error);
        }
        Ok(ReplyStream {
            shared: self.shared.clone(),
            id,
            receiver,
            ended: false,
        })
    }

    fn encode(&self, request: &P::Request) -> Result<(u64, Bytes), CallError<P::Error>> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = frame::encode(&RequestFrame::new(id, request)).map_err(CallError::Encode)?;
        if bytes.len() > MAX_FRAME_LEN {
            return Err(CallError::TooLarge { size: bytes.len() });
        }
        Ok((id, bytes))
    }

    async fn send(&self, bytes: Bytes) -> Result<(), CallError<P::Error>> {
        if self.is_closed() || self.shared.outgoing.send(bytes).await.is_err() {
            return Err(self.shared.closed_error());
        }
        Ok(())
    }
}

/// Removes a call's waiter when the call ends or is dropped.
struct Forget<'a, P: Protocol> {
    shared: &'a Shared<P>,
    id: u64,
    cancel: bool,
}

impl<P: Protocol> Drop for Forget<'_, P> {
    fn drop(&mut self) {
        self.shared.waiters().remove(&self.id);
        if self.cancel {
            cancel_on_peer(self.shared, self.id);
        }
    }
}

fn cancel_on_peer<P: Protocol>(shared: &Shared<P>, id: u64) {
    if let Ok(bytes) = frame::encode(&RequestFrame::<P::Request>::cancel(id)) {
        // Best effort: a full queue or a closed connection ends the stream anyway.
        let _ = shared.outgoing.try_send(bytes);
    }
}

/// The answers to one stream request, until its end.
pub struct ReplyStream<P: Protocol> {
    shared: Arc<Shared<P>>,
    id: u64,
    receiver: mpsc::Receiver<Item<P>>,
    ended: bool,
}

impl<P: Protocol> std::fmt::Debug for ReplyStream<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyStream")
            .field("id", &self.id)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl<P: Protocol> ReplyStream<P> {
    /// The next item; `None` once the stream has ended (an error is its last item).
    pub async fn next(&mut self) -> Option<Item<P>> {
        if self.ended {
            return None;
        }
        let item = self.receiver.recv().await;
        if !matches!(item, Some(Ok(_))) {
            self.ended = true;
        }
        item
    }
}

impl<P: Protocol> Drop for ReplyStream<P> {
    fn drop(&mut self) {
        let _ = Forget {
            shared: &*self.shared,
            id: self.id,
            cancel: !self.ended,
        };
    }
}

/// Removes the waiter of `id` (the lock is not held past this).
fn take<P: Protocol>(shared: &Shared<P>, id: u64) -> Option<Waiter<P>> {
    shared.waiters().remove(&id)
}

/// A response frame that did not decode: the id it names, if even that reads, and why.
#[derive(Debug)]
pub struct UnreadableResponse {
    pub id: Option<u64>,
    pub error: FrameError,
}

/// Decodes a received response frame: what the client's reader does with every frame after
/// the hello (public for the fuzz targets, which feed it arbitrary bytes).
pub fn decode_response<P: Protocol>(
    body: &[u8],
) -> Result<ResponseFrame<P::Response, P::Error>, UnreadableResponse> {
    frame::decode(body).map_err(|error| UnreadableResponse {
        id: frame::decode::<RequestId>(body).ok().map(|frame| frame.id),
        error,
    })
}

/// Hands one response frame to its waiter; `false` when the connection is unusable.
async fn deliver<P: Protocol>(shared: &Shared<P>, body: &[u8]) -> bool {
    let response = match decode_response::<P>(body) {
        Ok(response) => response,
        Err(UnreadableResponse { id, error }) => {
            let Some(id) = id else {
                tracing::debug!(peer = %shared.peer, %error, "an unreadable frame; closing the connection");
                return false;
            };
            let unreadable = CallError::Unreadable {
                peer: shared.peer.clone(),
                reason: error.to_string(),
            };
            match shared.waiters().remove(&id) {
                Some(Waiter::Call(reply)) => {
                    let _ = reply.send(Err(unreadable));
                }
                Some(Waiter::Stream(items)) => {
                    let _ = items.try_send(Err(unreadable));
                }
                None => {}
            }
            return true;
        }
    };
    let id = response.id;
    match response.body {
        Body::Reply(reply) => match take(shared, id) {
            Some(Waiter::Call(waiter)) => {
                let _ = waiter.send(Ok(reply));
            }
            // A single answer to a stream request is its only item; it waits for room like
            // any item, so that it is never lost behind a full buffer.
            Some(Waiter::Stream(items)) => {
                let _ = items.send(Ok(reply)).await;
            }
            None => {}
        },
        Body::Error(error) => match take(shared, id) {
            Some(Waiter::Call(waiter)) => {
                let _ = waiter.send(Err(CallError::Remote(error)));
            }
            // The error that ends a stream (e.g. where to resume a watch) comes after the
            // items the consumer has not read yet, never instead of them.
            Some(Waiter::Stream(items)) => {
                let _ = items.send(Err(CallError::Remote(error))).await;
            }
            None => {}
        },
        Body::Item(item) => {
            let items = match shared.waiters().get(&id) {
                Some(Waiter::Stream(items)) => items.clone(),
                _ => return true,
            };
            // Waiting here holds up the connection's other answers: a consumer that stops
            // reading a stream slows its own connection down, as TCP would.
            if items.send(Ok(item)).await.is_err() {
                shared.waiters().remove(&id);
            }
        }
        Body::End => {
            shared.waiters().remove(&id);
        }
    }
    true
}

fn fail_all<P: Protocol>(shared: &Shared<P>) {
    let waiters: Vec<Waiter<P>> = shared.waiters().drain().map(|(_, w)| w).collect();
    for waiter in waiters {
        match waiter {
            Waiter::Call(reply) => {
                let _ = reply.send(Err(shared.closed_error()));
            }
            Waiter::Stream(items) => {
                let _ = items.try_send(Err(shared.closed_error()));
            }
        }
    }
}
