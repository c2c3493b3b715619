//! The incoming side: one Raft connection, accepted (and its hello exchanged) by whoever owns the
//! Raft port, then requests answered strictly in order until the peer hangs up.
//!
//! Two halves run side by side. The reader decodes requests as they arrive, without waiting for
//! earlier ones to be answered: AppendEntries go into an openraft `stream_append` pipeline (so
//! the next batch reaches the Raft core while the previous one is still being written to disk),
//! everything else is handled on the spot. For each request the reader queues what its reply
//! will be; the writer sends the replies in that order, taking append results from the
//! pipeline as they complete.
//!
//! openraft's pipeline ends at the first rejected append (a conflict or a higher vote). A client
//! stops sending on such a rejection, so the writer marks the pipeline finished before sending
//! it, and a request read after that starts a new pipeline. Appends the client had already
//! pipelined behind the rejection get no reply: the writer closes the connection, which the
//! client expects after a rejection with requests in flight.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::{SinkExt, Stream, StreamExt};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::Fatal;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, StreamAppendResult};
use symphony_wire::{Connection, frame};
use tokio::sync::mpsc;

use super::guard::{self, Guard};
use super::pipeline::WINDOW;
use super::rpc::{LocalIdentity, PeerIdentity, RaftReply, RaftRequest};
use super::snapshot_receiver::{SnapshotSlot, SnapshotStep};
use crate::types::{Raft, TypeConfig};

/// How many requests the reader may be ahead of the writer.
const READ_AHEAD: usize = 2 * WINDOW;

#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] frame::FrameError),
    #[error("appends were pipelined behind a rejected one; closing the connection")]
    PipelineEnded,
}

type AppendResults =
    Pin<Box<dyn Stream<Item = Result<StreamAppendResult<TypeConfig>, Fatal<TypeConfig>>> + Send>>;

/// A reply the writer owes, in request order.
enum Owed {
    Reply(RaftReply),
    /// Append results come from this pipeline from now on.
    NewPipeline {
        results: AppendResults,
        ended: Arc<AtomicBool>,
    },
    /// The next result of the current pipeline.
    AppendResult,
}

/// The reader's end of the current append pipeline.
struct PipelineInput {
    requests: mpsc::Sender<AppendEntriesRequest<TypeConfig>>,
    ended: Arc<AtomicBool>,
}

/// Serves one connection's RPCs (its hello already exchanged) until the peer hangs up.
pub(crate) async fn serve_connection(
    connection: Connection,
    raft: &Raft,
    local_id: u64,
    identity: &LocalIdentity,
    guard: &Guard,
) -> Result<(), SessionError> {
    // The Raft id the caller named in its hello: requests must be in its own name.
    let caller = connection.hello.node_id;
    let stream = connection.framed;
    let (mut sink, mut source) = stream.split();
    let (owed_tx, mut owed_rx) = mpsc::channel::<Owed>(READ_AHEAD);
    let reader = async move {
        let mut pipeline: Option<PipelineInput> = None;
        let mut snapshot = SnapshotSlot::default();
        while let Some(body) = source.next().await {
            let owed = match guard::read(&body?, guard, caller, &local_state(raft)) {
                Err(refusal) => {
                    if matches!(refusal, guard::Unread::Refused(_)) {
                        tracing::warn!(caller, %refusal, "refused a Raft request");
                    }
                    Owed::Reply(RaftReply::Failed(refusal.to_string()))
                }
                Ok(RaftRequest::Append(rpc)) => {
                    let input = match pipeline.take() {
                        Some(input) if !input.ended.load(Ordering::Acquire) => input,
                        _ => {
                            let (input, results) = start_pipeline(raft);
                            owed_tx
                                .send(Owed::NewPipeline {
                                    results,
                                    ended: input.ended.clone(),
                                })
                                .await
                                .map_err(|_| SessionError::PipelineEnded)?;
                            input
                        }
                    };
                    if input.requests.send(rpc).await.is_err() {
                        // openraft dropped the pipeline: the writer will find it ended.
                        tracing::debug!("append pipeline closed under the reader");
                    }
                    pipeline = Some(input);
                    Owed::AppendResult
                }
                Ok(RaftRequest::Identify) => Owed::Reply(RaftReply::Identity(PeerIdentity {
                    raft_node_id: local_id,
                    node_id: identity.node_id,
                    remote_addr: identity.remote_addr.clone(),
                    initialised: raft.is_initialized().await.unwrap_or(false),
                })),
                Ok(request) => Owed::Reply(handle(raft, &mut snapshot, request).await),
            };
            if owed_tx.send(owed).await.is_err() {
                // The writer stopped; it reports why.
                break;
            }
        }
        Ok::<(), SessionError>(())
    };
    let writer = async move {
        let mut current: Option<(AppendResults, Arc<AtomicBool>)> = None;
        while let Some(owed) = owed_rx.recv().await {
            let reply = match owed {
                Owed::Reply(reply) => reply,
                Owed::NewPipeline { results, ended } => {
                    current = Some((results, ended));
                    continue;
                }
                Owed::AppendResult => {
                    let Some((results, ended)) = current.as_mut() else {
                        return Err(SessionError::PipelineEnded);
                    };
                    let Some(result) = results.next().await else {
                        return Err(SessionError::PipelineEnded);
                    };
                    let reply = append_reply(result);
                    if !matches!(reply, RaftReply::Append(AppendEntriesResponse::Success)) {
                        // Before the client can see the rejection and send anew.
                        ended.store(true, Ordering::Release);
                    }
                    reply
                }
            };
            sink.send(frame::encode(&reply)?).await?;
        }
        Ok::<(), SessionError>(())
    };
    tokio::pin!(reader, writer);
    tokio::select! {
        // The writer only stops early on an error; reading on would be pointless.
        written = &mut writer => written,
        read = &mut reader => {
            // The peer hung up (or sent garbage): answer what was read, then close.
            let written = writer.await;
            read.and(written)
        }
    }
}

/// What the guard checks a request against: this node's group and vote.
fn local_state(raft: &Raft) -> guard::Local {
    let metrics = raft.metrics();
    let metrics = metrics.borrow_watched();
    let membership = metrics.membership_config.membership();
    guard::Local {
        members: membership
            .voter_ids()
            .chain(membership.learner_ids())
            .collect(),
        vote: Some(metrics.vote),
    }
}

/// Starts an openraft append pipeline fed by the returned input.
fn start_pipeline(raft: &Raft) -> (PipelineInput, AppendResults) {
    let (requests, receiver) = mpsc::channel(WINDOW);
    let input = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let request = receiver.recv().await?;
        Some((request, receiver))
    });
    let results: AppendResults = Box::pin(raft.stream_append(input));
    let input = PipelineInput {
        requests,
        ended: Arc::new(AtomicBool::new(false)),
    };
    (input, results)
}

fn append_reply(result: Result<StreamAppendResult<TypeConfig>, Fatal<TypeConfig>>) -> RaftReply {
    match result {
        Ok(result) => RaftReply::Append(AppendEntriesResponse::from(result)),
        Err(fatal) => RaftReply::Failed(fatal.to_string()),
    }
}

async fn handle(raft: &Raft, snapshot: &mut SnapshotSlot, request: RaftRequest) -> RaftReply {
    match request {
        RaftRequest::Vote(rpc) => match raft.vote(rpc).await {
            Ok(reply) => RaftReply::Vote(reply),
            Err(error) => RaftReply::Failed(error.to_string()),
        },
        RaftRequest::PreVote(rpc) => match raft.pre_vote(rpc).await {
            Ok(reply) => RaftReply::Vote(reply),
            Err(error) => RaftReply::Failed(error.to_string()),
        },
        RaftRequest::TransferLeader(rpc) => match raft.handle_transfer_leader(rpc).await {
            Ok(reply) => RaftReply::TransferLeader(reply),
            Err(error) => RaftReply::Failed(error.to_string()),
        },
        request @ (RaftRequest::SnapshotBegin { .. }
        | RaftRequest::SnapshotChunk { .. }
        | RaftRequest::SnapshotEnd) => match snapshot.handle(request) {
            Ok(SnapshotStep::Ack(received)) => RaftReply::SnapshotAck { received },
            Ok(SnapshotStep::Install(vote, snapshot)) => {
                match raft.install_full_snapshot(vote, *snapshot).await {
                    Ok(reply) => RaftReply::Snapshot(reply),
                    Err(error) => RaftReply::Failed(error.to_string()),
                }
            }
            Err(error) => RaftReply::Failed(error.to_string()),
        },
        RaftRequest::Append(_) | RaftRequest::Identify => {
            RaftReply::Failed("this request is answered by the connection".into())
        }
    }
}
