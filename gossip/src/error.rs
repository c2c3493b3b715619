//! Errors of the gossip handle.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GossipError {
    #[error("cannot bind the gossip socket to {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// The driver has stopped (left, cancelled, or every handle dropped).
    #[error("gossip has stopped")]
    Stopped,
    #[error("foca: {0}")]
    Foca(#[from] foca::Error),
}
