//! Reassembling a snapshot sent in chunks: the server side of a snapshot transfer.
//!
//! The sender announces the exact length first. Lengths over [`MAX_SNAPSHOT_LEN`] are refused
//! before anything is allocated, chunks must arrive in order and may not run past the announced
//! length, and the buffer grows with what actually arrived (a peer that announces a large
//! snapshot and sends nothing costs little memory).

use super::rpc::RaftRequest;
use crate::types::{Snapshot, SnapshotMeta, Vote};

/// The largest snapshot a node accepts: 4 GiB.
pub const MAX_SNAPSHOT_LEN: u64 = 4 * 1024 * 1024 * 1024;
/// The most memory reserved up front for an announced snapshot.
const MAX_PREALLOCATION: usize = 64 * 1024 * 1024;

/// Why a snapshot transfer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotReceiveError {
    #[error("a snapshot of {len} bytes is over the {MAX_SNAPSHOT_LEN}-byte limit")]
    TooLarge { len: u64 },
    #[error("a snapshot of {len} bytes does not fit in this node's memory space")]
    Unaddressable { len: u64 },
    #[error("a snapshot chunk or end arrived with no transfer begun")]
    NotBegun,
    #[error("a snapshot chunk at offset {got} arrived where offset {expected} was due")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("a snapshot chunk runs past the announced length of {total_len} bytes")]
    PastEnd { total_len: u64 },
    #[error("the snapshot ended after {received} of its {total_len} bytes")]
    Incomplete { received: u64, total_len: u64 },
}

/// A transfer in progress on one connection.
pub(crate) struct SnapshotReceiver {
    vote: Vote,
    meta: SnapshotMeta,
    total_len: u64,
    data: Vec<u8>,
}

impl SnapshotReceiver {
    pub(crate) fn begin(
        vote: Vote,
        meta: SnapshotMeta,
        total_len: u64,
    ) -> Result<SnapshotReceiver, SnapshotReceiveError> {
        if total_len > MAX_SNAPSHOT_LEN {
            return Err(SnapshotReceiveError::TooLarge { len: total_len });
        }
        let len = usize::try_from(total_len)
            .map_err(|_| SnapshotReceiveError::Unaddressable { len: total_len })?;
        Ok(SnapshotReceiver {
            vote,
            meta,
            total_len,
            data: Vec::with_capacity(len.min(MAX_PREALLOCATION)),
        })
    }

    /// Appends the chunk at `offset`; returns how many bytes are held now.
    pub(crate) fn chunk(&mut self, offset: u64, chunk: &[u8]) -> Result<u64, SnapshotReceiveError> {
        let received = self.received();
        if offset != received {
            return Err(SnapshotReceiveError::OutOfOrder {
                expected: received,
                got: offset,
            });
        }
        if received.saturating_add(chunk.len() as u64) > self.total_len {
            return Err(SnapshotReceiveError::PastEnd {
                total_len: self.total_len,
            });
        }
        self.data.extend_from_slice(chunk);
        Ok(self.received())
    }

    /// The complete snapshot and the vote it was sent under.
    pub(crate) fn finish(self) -> Result<(Vote, Snapshot), SnapshotReceiveError> {
        let received = self.received();
        if received != self.total_len {
            return Err(SnapshotReceiveError::Incomplete {
                received,
                total_len: self.total_len,
            });
        }
        Ok((
            self.vote,
            Snapshot {
                meta: self.meta,
                snapshot: self.data,
            },
        ))
    }

    fn received(&self) -> u64 {
        self.data.len() as u64
    }
}

/// The snapshot transfer state of one connection, driven by its requests in order.
#[derive(Default)]
pub struct SnapshotSlot {
    current: Option<SnapshotReceiver>,
}

/// What the connection does after a snapshot request.
#[derive(Debug)]
pub enum SnapshotStep {
    /// Acknowledge this many bytes held.
    Ack(u64),
    /// Install this snapshot, sent under this vote.
    Install(Vote, Box<Snapshot>),
}

impl SnapshotSlot {
    /// Handles a snapshot request; an error abandons the transfer in progress.
    pub fn handle(&mut self, request: RaftRequest) -> Result<SnapshotStep, SnapshotReceiveError> {
        let result = self.step(request);
        if result.is_err() {
            self.current = None;
        }
        result
    }

    fn step(&mut self, request: RaftRequest) -> Result<SnapshotStep, SnapshotReceiveError> {
        match request {
            RaftRequest::SnapshotBegin {
                vote,
                meta,
                total_len,
            } => {
                self.current = Some(SnapshotReceiver::begin(vote, meta, total_len)?);
                Ok(SnapshotStep::Ack(0))
            }
            RaftRequest::SnapshotChunk { offset, data } => {
                let receiver = self
                    .current
                    .as_mut()
                    .ok_or(SnapshotReceiveError::NotBegun)?;
                Ok(SnapshotStep::Ack(receiver.chunk(offset, &data)?))
            }
            RaftRequest::SnapshotEnd => {
                let receiver = self.current.take().ok_or(SnapshotReceiveError::NotBegun)?;
                let (vote, snapshot) = receiver.finish()?;
                Ok(SnapshotStep::Install(vote, Box::new(snapshot)))
            }
            _ => Err(SnapshotReceiveError::NotBegun),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn begin(total_len: u64) -> RaftRequest {
        RaftRequest::SnapshotBegin {
            vote: Vote::new(1, 1),
            meta: SnapshotMeta::default(),
            total_len,
        }
    }

    fn chunk(offset: u64, data: &[u8]) -> RaftRequest {
        RaftRequest::SnapshotChunk {
            offset,
            data: data.to_vec(),
        }
    }

    #[test]
    fn chunks_reassemble_into_the_snapshot() {
        let mut slot = SnapshotSlot::default();
        assert!(matches!(slot.handle(begin(5)), Ok(SnapshotStep::Ack(0))));
        assert!(matches!(
            slot.handle(chunk(0, b"abc")),
            Ok(SnapshotStep::Ack(3))
        ));
        assert!(matches!(
            slot.handle(chunk(3, b"de")),
            Ok(SnapshotStep::Ack(5))
        ));
        match slot.handle(RaftRequest::SnapshotEnd) {
            Ok(SnapshotStep::Install(_, snapshot)) => assert_eq!(snapshot.snapshot, b"abcde"),
            _ => panic!("expected an install"),
        }
    }

    #[test]
    fn absurd_lengths_are_refused_before_allocating() {
        let mut slot = SnapshotSlot::default();
        let error = slot.handle(begin(u64::MAX)).err().unwrap();
        assert_eq!(error, SnapshotReceiveError::TooLarge { len: u64::MAX });
        assert!(error.to_string().contains("limit"), "{error}");
    }

    #[test]
    fn bad_chunks_abandon_the_transfer() {
        let mut slot = SnapshotSlot::default();
        assert_eq!(
            slot.handle(chunk(0, b"x")).err(),
            Some(SnapshotReceiveError::NotBegun)
        );
        slot.handle(begin(4)).unwrap();
        assert_eq!(
            slot.handle(chunk(1, b"x")).err(),
            Some(SnapshotReceiveError::OutOfOrder {
                expected: 0,
                got: 1
            })
        );
        // The failed chunk abandoned the transfer.
        assert_eq!(
            slot.handle(chunk(0, b"x")).err(),
            Some(SnapshotReceiveError::NotBegun)
        );
        slot.handle(begin(2)).unwrap();
        assert_eq!(
            slot.handle(chunk(0, b"xyz")).err(),
            Some(SnapshotReceiveError::PastEnd { total_len: 2 })
        );
        slot.handle(begin(2)).unwrap();
        slot.handle(chunk(0, b"x")).unwrap();
        assert_eq!(
            slot.handle(RaftRequest::SnapshotEnd).err(),
            Some(SnapshotReceiveError::Incomplete {
                received: 1,
                total_len: 2
            })
        );
    }
}
