//! Sending a snapshot in bounded chunks: the client side of a snapshot transfer.
//!
//! A snapshot can be far larger than a frame, and larger than anything worth sending under one
//! deadline. It goes as `SnapshotBegin`, chunks of at most [`MAX_CHUNK`] bytes and
//! `SnapshotEnd`. Every chunk is acknowledged; up to [`CHUNK_WINDOW`] may await their
//! acknowledgement, which keeps the link busy without letting the sender run ahead of a slow
//! receiver. Each acknowledgement has its own deadline, so a large snapshot on a slow link
//! takes as long as it needs while a stalled one fails within one chunk's deadline. The final
//! install, which decodes and persists the whole state, gets a deadline scaled by its size.

use std::time::Duration;

use openraft::raft::SnapshotResponse;

use super::connection::Connection;
use super::error::CallError;
use super::rpc::{RaftReply, RaftRequest, RaftRequestRef};
use crate::types::{Snapshot, TypeConfig, Vote};

/// The largest chunk sent, whatever openraft suggests: well under the frame limit, and small
/// enough that one chunk's deadline is meaningful.
pub const MAX_CHUNK: usize = 1024 * 1024;
/// The smallest chunk sent, so a tiny suggestion does not turn a transfer into a flood.
const MIN_CHUNK: usize = 16 * 1024;
/// How many chunks may await their acknowledgement.
pub const CHUNK_WINDOW: usize = 4;
/// The least time one chunk's acknowledgement is given, whatever openraft's timeout (its
/// default, 200 ms, is meant for one small RPC, not a megabyte on a loaded machine).
const MIN_CHUNK_TIMEOUT: Duration = Duration::from_secs(5);
/// The time the receiver is given to install, on top of [`INSTALL_TIME_PER_MIB`] per MiB.
const INSTALL_BASE_TIMEOUT: Duration = Duration::from_secs(10);
const INSTALL_TIME_PER_MIB: Duration = Duration::from_millis(500);

/// How a transfer is paced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkPlan {
    pub chunk_size: usize,
    pub chunk_timeout: Duration,
}

impl ChunkPlan {
    /// The plan for openraft's suggested chunk size and per-RPC timeout.
    pub(crate) fn new(suggested_chunk: Option<usize>, rpc_timeout: Duration) -> ChunkPlan {
        ChunkPlan {
            chunk_size: suggested_chunk
                .unwrap_or(MAX_CHUNK)
                .clamp(MIN_CHUNK, MAX_CHUNK),
            chunk_timeout: rpc_timeout.max(MIN_CHUNK_TIMEOUT),
        }
    }

    fn install_timeout(total_len: usize) -> Duration {
        let mib = u32::try_from(total_len / (1024 * 1024)).unwrap_or(u32::MAX);
        INSTALL_BASE_TIMEOUT.saturating_add(INSTALL_TIME_PER_MIB.saturating_mul(mib))
    }
}

/// Sends `snapshot` over `connection` and waits for the receiver to install it. On any error the
/// connection is in an unknown state and must be dropped.
pub(crate) async fn send_snapshot(
    connection: &mut Connection,
    vote: Vote,
    snapshot: Snapshot,
    plan: ChunkPlan,
) -> Result<SnapshotResponse<TypeConfig>, CallError> {
    crate::failpoint::check("snapshot.send")?;
    let data = snapshot.snapshot;
    let total_len = data.len();
    let begin = RaftRequest::SnapshotBegin {
        vote,
        meta: snapshot.meta,
        total_len: total_len as u64,
    };
    expect_ack(connection.call(&begin, plan.chunk_timeout).await?, 0)?;

    let mut sent = 0usize;
    let mut acked = 0usize;
    // The end offset of each chunk awaiting its acknowledgement, oldest first.
    let mut awaiting = std::collections::VecDeque::with_capacity(CHUNK_WINDOW);
    while acked < total_len {
        if sent < total_len && awaiting.len() < CHUNK_WINDOW {
            let end = (sent + plan.chunk_size).min(total_len);
            let chunk = RaftRequestRef::SnapshotChunk {
                offset: sent as u64,
                data: &data[sent..end],
            };
            tokio::time::timeout(plan.chunk_timeout, connection.send(&chunk))
                .await
                .map_err(|_| CallError::Timeout(plan.chunk_timeout))??;
            awaiting.push_back(end);
            sent = end;
            continue;
        }
        let reply = tokio::time::timeout(plan.chunk_timeout, connection.recv())
            .await
            .map_err(|_| CallError::Timeout(plan.chunk_timeout))??;
        let Some(end) = awaiting.pop_front() else {
            return Err(CallError::UnexpectedReply(
                "an acknowledgement of nothing".into(),
            ));
        };
        expect_ack(reply, end)?;
        acked = end;
    }

    let install_timeout = ChunkPlan::install_timeout(total_len);
    match connection
        .call(&RaftRequest::SnapshotEnd, install_timeout)
        .await?
    {
        RaftReply::Snapshot(response) => Ok(response),
        other => Err(CallError::UnexpectedReply(format!(
            "{other:?} to the end of a snapshot"
        ))),
    }
}

fn expect_ack(reply: RaftReply, expected: usize) -> Result<(), CallError> {
    match reply {
        RaftReply::SnapshotAck { received } if received == expected as u64 => Ok(()),
        other => Err(CallError::UnexpectedReply(format!(
            "{other:?} where an acknowledgement of {expected} snapshot bytes was due"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_bounded_whatever_openraft_suggests() {
        let plan = ChunkPlan::new(Some(3 * 1024 * 1024), Duration::from_millis(200));
        assert_eq!(plan.chunk_size, MAX_CHUNK);
        assert_eq!(plan.chunk_timeout, MIN_CHUNK_TIMEOUT);
        assert_eq!(
            ChunkPlan::new(Some(1), Duration::ZERO).chunk_size,
            MIN_CHUNK
        );
        assert_eq!(
            ChunkPlan::new(None, Duration::from_secs(9)).chunk_timeout,
            Duration::from_secs(9)
        );
    }

    #[test]
    fn the_install_deadline_grows_with_the_snapshot() {
        assert_eq!(ChunkPlan::install_timeout(0), INSTALL_BASE_TIMEOUT);
        assert_eq!(
            ChunkPlan::install_timeout(40 * 1024 * 1024),
            INSTALL_BASE_TIMEOUT + INSTALL_TIME_PER_MIB * 40
        );
    }
}
