//! Pipelined AppendEntries: the client side of `stream_append`.
//!
//! Up to [`WINDOW`] requests are in flight on one connection; the server answers them in order,
//! so the n-th reply belongs to the n-th request still in flight. Results are yielded in that
//! order, one per input request, with openraft's semantics (those of its sequential
//! `stream_append_sequential`): a conflict, a higher vote, a partial success or any error ends
//! the stream after being yielded.
//!
//! The replication stream's input can stay quiet for a long time (nothing new to replicate), so
//! the deadline applies to replies only: the oldest request in flight must be answered within
//! the reply timeout of the moment it became the oldest.
//!
//! The connection is only dialled once the first request has been taken from the input: openraft
//! sleeps its backoff inside the input's `next()`, so dialling first would retry an unreachable
//! peer in a hot loop.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use openraft::error::RPCError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, StreamAppendError, StreamAppendResult,
};
use tokio::time::Instant;

use super::append_frames::encode_append;
use super::connection::{Connection, Dial};
use super::error::CallError;
use super::rpc::RaftReply;
use crate::types::{LogId, TypeConfig};

/// How many AppendEntries frames may await their reply on one connection.
pub const WINDOW: usize = 16;

type Item = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// A frame sent and not yet answered.
struct InFlight {
    prev: Option<LogId>,
    last: Option<LogId>,
    /// Whether this is the last frame of its input request (an oversized request is split into
    /// several frames, and only the last one's success is the request's).
    completes_request: bool,
}

/// The state of one `stream_append` call.
pub(crate) struct Pipeline<'s, S> {
    /// Where the connection goes back when the stream ends with nothing in flight.
    home: &'s mut Option<Connection>,
    /// How to reach the peer when there is no idle connection.
    dial: Dial<'s>,
    connection: Option<Connection>,
    finished: bool,
    /// `None` once the input is exhausted.
    input: Option<S>,
    in_flight: VecDeque<InFlight>,
    reply_timeout: Duration,
    /// When the oldest frame in flight must be answered by.
    deadline: Instant,
}

impl<'s, S> Pipeline<'s, S>
where
    S: Stream<Item = AppendEntriesRequest<TypeConfig>> + Send + Unpin + 's,
{
    pub(crate) fn new(
        home: &'s mut Option<Connection>,
        dial: Dial<'s>,
        input: S,
        reply_timeout: Duration,
    ) -> Pipeline<'s, S> {
        let connection = home.take();
        Pipeline {
            home,
            dial,
            connection,
            finished: false,
            input: Some(input),
            in_flight: VecDeque::new(),
            reply_timeout,
            deadline: Instant::now() + reply_timeout,
        }
    }

    /// The results as a stream; it owns the pipeline and ends with it.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Item> + Send + 's {
        futures_util::stream::unfold(self, |mut pipeline| async move {
            let item = pipeline.next_result().await?;
            Some((item, pipeline))
        })
    }

    /// The next result, or `None` when the stream is over.
    async fn next_result(&mut self) -> Option<Item> {
        loop {
            if self.finished {
                return None;
            }
            let window_open = self.in_flight.len() < WINDOW;
            let step = match (&mut self.input, self.in_flight.is_empty()) {
                (None, true) => {
                    // Everything asked was answered: the connection is clean for the next call.
                    *self.home = self.connection.take();
                    self.finished = true;
                    return None;
                }
                (Some(input), true) => Step::Input(input.next().await),
                (input, false) => {
                    let Some(connection) = self.connection.as_mut() else {
                        return Some(self.fail(CallError::Closed));
                    };
                    let reply = tokio::time::timeout_at(self.deadline, connection.recv());
                    match input {
                        // Whichever comes first; both futures are cancel-safe.
                        Some(input) if window_open => tokio::select! {
                            biased;
                            reply = reply => Step::Reply(reply),
                            request = input.next() => Step::Input(request),
                        },
                        _ => Step::Reply(reply.await),
                    }
                }
            };
            match step {
                Step::Input(None) => self.input = None,
                Step::Input(Some(request)) => {
                    if let Err(error) = self.send(request).await {
                        return Some(self.fail(error));
                    }
                }
                Step::Reply(Err(_elapsed)) => {
                    return Some(self.fail(CallError::Timeout(self.reply_timeout)));
                }
                Step::Reply(Ok(Err(error))) => return Some(self.fail(error)),
                Step::Reply(Ok(Ok(reply))) => {
                    if let Some(item) = self.on_reply(reply) {
                        return Some(item);
                    }
                }
            }
        }
    }

    async fn send(&mut self, request: AppendEntriesRequest<TypeConfig>) -> Result<(), CallError> {
        let frames = encode_append(&request)?;
        if self.connection.is_none() {
            self.connection = Some(self.dial.open(self.reply_timeout).await?);
        }
        let connection = self.connection.as_mut().ok_or(CallError::Closed)?;
        let count = frames.len();
        for (i, frame) in frames.into_iter().enumerate() {
            if self.in_flight.is_empty() {
                self.deadline = Instant::now() + self.reply_timeout;
            }
            tokio::time::timeout(self.reply_timeout, connection.send_encoded(frame.body))
                .await
                .map_err(|_| CallError::Timeout(self.reply_timeout))??;
            self.in_flight.push_back(InFlight {
                prev: frame.prev,
                last: frame.last,
                completes_request: i + 1 == count,
            });
        }
        Ok(())
    }

    /// Turns the reply to the oldest frame in flight into a result to yield, if there is one.
    fn on_reply(&mut self, reply: RaftReply) -> Option<Item> {
        let Some(sent) = self.in_flight.pop_front() else {
            return Some(self.fail(CallError::UnexpectedReply(
                "a reply to no request".to_string(),
            )));
        };
        self.deadline = Instant::now() + self.reply_timeout;
        let response = match reply {
            RaftReply::Append(response) => response,
            other => {
                return Some(self.fail(CallError::UnexpectedReply(format!(
                    "{other:?} to an append"
                ))));
            }
        };
        match response {
            AppendEntriesResponse::Success if !sent.completes_request => None,
            AppendEntriesResponse::Success => Some(Ok(Ok(sent.last))),
            AppendEntriesResponse::PartialSuccess(matching)
                if matching >= sent.prev && matching <= sent.last =>
            {
                if matching != sent.last {
                    // Like openraft's sequential stream: what follows no longer chains on.
                    self.end();
                }
                Some(Ok(Ok(matching)))
            }
            AppendEntriesResponse::PartialSuccess(matching) => {
                Some(self.fail(CallError::UnexpectedReply(format!(
                    "partial success at {matching:?} outside the range sent"
                ))))
            }
            AppendEntriesResponse::Conflict => match sent.prev {
                Some(prev) => {
                    self.end();
                    Some(Ok(Err(StreamAppendError::Conflict(prev))))
                }
                // A request with no previous entry cannot conflict.
                None => Some(self.fail(CallError::UnexpectedReply(
                    "a conflict before the first log entry".to_string(),
                ))),
            },
            AppendEntriesResponse::HigherVote(vote) => {
                self.end();
                Some(Ok(Err(StreamAppendError::HigherVote(vote))))
            }
        }
    }

    /// Ends the stream after the result being yielded. Frames still in flight would be answered
    /// on the connection, so it is only kept when none are.
    fn end(&mut self) {
        self.input = None;
        self.finished = true;
        if self.in_flight.is_empty() {
            *self.home = self.connection.take();
        } else {
            self.connection = None;
        }
    }

    /// Ends the stream with `error`, dropping the connection whatever state it is in.
    fn fail(&mut self, error: CallError) -> Item {
        self.input = None;
        self.connection = None;
        self.finished = true;
        tracing::debug!(%error, "append stream failed");
        Err(error.into_rpc_error())
    }
}

enum Step<R> {
    Input(Option<AppendEntriesRequest<TypeConfig>>),
    Reply(Result<R, tokio::time::error::Elapsed>),
}
