//! Serving a pipelined connection, after its hello: requests are read as they arrive, each is
//! answered on its own task, and replies go out as they are ready (coalesced into few writes).
//! The control socket and the node-to-node API both work this way; only what a frame means
//! differs, and that is the `dispatch` function they pass in.

use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{Sink, Stream, StreamExt};
use symphony_ctl::frame;
use tokio::sync::{Semaphore, mpsc};

/// What to do with one incoming frame.
pub enum Step<Work> {
    /// Send this reply at once (e.g. an error for a frame that could not be decoded).
    Reply(Bytes),
    /// Nothing to send; read on.
    Nothing,
    /// Send this last reply, if any, then close the connection.
    Close(Option<Bytes>),
    /// Run this on its own task; it yields the encoded reply, if there is one to send.
    Spawn(Work),
}

/// Serves `requests` until the peer closes, `dispatch` says to close, or writing fails. At most
/// `max_in_flight` requests are handled at once; past that the connection is not read until one
/// finishes, so a fast client meets backpressure instead of growing the agent's memory.
pub async fn serve<St, Si, Dispatch, Work>(
    mut requests: St,
    mut sink: Si,
    max_in_flight: usize,
    mut dispatch: Dispatch,
) where
    St: Stream<Item = std::io::Result<BytesMut>> + Unpin,
    Si: Sink<Bytes, Error = std::io::Error> + Unpin + Send + 'static,
    Dispatch: FnMut(std::io::Result<BytesMut>) -> Step<Work>,
    Work: Future<Output = Option<Bytes>> + Send + 'static,
{
    let (replies, outgoing) = mpsc::channel::<Bytes>(max_in_flight);
    let mut writer = tokio::spawn(async move {
        let _ = frame::pump(outgoing, &mut sink).await;
    });
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
    loop {
        let item = tokio::select! {
            item = requests.next() => item,
            // The writer only stops when the socket fails: nothing more can be answered.
            _ = &mut writer => return,
        };
        let Some(item) = item else {
            break;
        };
        match dispatch(item) {
            Step::Reply(bytes) => {
                if replies.send(bytes).await.is_err() {
                    break;
                }
            }
            Step::Nothing => {}
            Step::Close(last) => {
                if let Some(bytes) = last {
                    let _ = replies.send(bytes).await;
                }
                break;
            }
            Step::Spawn(work) => {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break;
                };
                let replies = replies.clone();
                tokio::spawn(async move {
                    if let Some(bytes) = work.await {
                        let _ = replies.send(bytes).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(replies);
    let _ = writer.await;
}
