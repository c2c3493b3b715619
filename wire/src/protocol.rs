//! What a request/response protocol built on this crate declares: its name and version, its
//! request, response and error types, and how a frame fault becomes one of its errors.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::hello::ProtocolId;

/// A request/response protocol over [`crate::mux`] and [`crate::serve`].
pub trait Protocol: Send + Sync + 'static {
    const ID: ProtocolId;
    type Request: Serialize + DeserializeOwned + Send + Sync + 'static;
    type Response: Serialize + DeserializeOwned + Send + 'static;
    /// The protocol's typed error; the serve loop builds one from each [`Fault`].
    type Error: Serialize + DeserializeOwned + Send + 'static + From<Fault>;
}

/// Something wrong with a frame itself, found before any handler saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The frame decodes, but not as a request of this protocol (a wrong field, a wrong type).
    Malformed,
    /// The request names a kind this side does not know (a newer peer?).
    UnknownRequest,
    /// The frame was over the size limit; the connection is closed.
    FrameTooLarge,
    /// The answer would be over the size limit.
    ReplyTooLarge,
}
