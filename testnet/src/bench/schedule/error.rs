//! What can stop a simulated worker, typed: the bench reports it with the worker's name and
//! fails, since a worker that cannot join or follow its assignments makes every figure wrong.

use symphony_ctl::proto::CtlError;
use symphony_pki::PkiError;
use symphony_wire::{CallError, DialError};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    Dial(#[from] DialError),
    /// A call got no answer, or the manager's typed refusal.
    #[error("{0}")]
    Call(#[from] CallError<CtlError>),
    /// The node asked for its CA bundle sent none, or one the token does not pin: nothing
    /// secret was sent to it (as a real worker's join stops).
    #[error("the node at {addr} is not trusted: {why}")]
    UntrustedCa { addr: String, why: String },
    /// Making the key or the certificate request, or checking the issued certificate.
    #[error("{what}: {source}")]
    Pki {
        what: &'static str,
        source: PkiError,
    },
    /// The join token does not read.
    #[error("the worker token does not read: {0}")]
    Token(#[from] symphony_pki::TokenError),
    /// The cluster answered, but not as a worker's join, session or stream expects.
    #[error("{0}")]
    Unexpected(String),
}
