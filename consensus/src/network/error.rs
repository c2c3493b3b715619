//! [`CallError`]: why an outgoing RPC got no usable reply, and how openraft should react.

use std::time::Duration;

use openraft::error::{NetworkError, RPCError, StreamingError, Unreachable};
use symphony_wire::frame;

use crate::types::TypeConfig;

/// Why a call did not get a reply.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection: the peer is down, unreachable, slow to answer the hello, refused us or
    /// is another node than the one meant.
    #[error("{0}")]
    Dial(#[from] symphony_wire::DialError),
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] frame::FrameError),
    #[error("the peer closed the connection")]
    Closed,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("the peer failed the request: {0}")]
    Remote(String),
    #[error("the peer sent an unexpected reply: {0}")]
    UnexpectedReply(String),
    /// One log entry encodes to more than a frame may hold; it can never be replicated.
    #[error("a log entry at index {index} encodes to {len} bytes, over the frame limit")]
    EntryTooLarge { index: u64, len: usize },
}

impl CallError {
    /// Whether the peer is unreachable (back off) rather than flaky (retry at once).
    fn is_unreachable(&self) -> bool {
        matches!(
            self,
            CallError::Dial(_)
                | CallError::Remote(_)
                | CallError::UnexpectedReply(_)
                | CallError::EntryTooLarge { .. }
        )
    }

    pub(crate) fn into_rpc_error(self) -> RPCError<TypeConfig> {
        if self.is_unreachable() {
            RPCError::Unreachable(Unreachable::new(&self))
        } else {
            RPCError::Network(NetworkError::new(&self))
        }
    }

    pub(crate) fn into_streaming_error(self) -> StreamingError<TypeConfig> {
        if self.is_unreachable() {
            StreamingError::Unreachable(Unreachable::new(&self))
        } else {
            StreamingError::Network(NetworkError::new(&self))
        }
    }
}
