//! Raft RPCs between managers, over `symphony-wire` connections (framing, hello, transport).
//!
//! - [`rpc`]: the messages;
//! - [`client`]: the [`RaftNetworkFactory`](openraft::RaftNetworkFactory) openraft calls out
//!   with, one long-lived connection per peer and purpose;
//! - `connection`: one dialled connection: framed requests and replies, in order;
//! - `pipeline`: pipelined AppendEntries, several in flight on one connection;
//! - `append_frames`: splitting an AppendEntries too large for one frame;
//! - [`snapshot_sender`] and [`snapshot_receiver`]: snapshots in bounded, acknowledged chunks;
//! - [`backoff`]: how an unreachable peer is retried (the wire crate's delays);
//! - [`error`]: why a call failed, and what openraft should make of it;
//! - [`guard`]: what an incoming request must pass before openraft sees it;
//! - `session`: one incoming connection served in order. Whoever owns the Raft port accepts
//!   connections (with `symphony-wire`'s accept loop and [`RAFT_PROTOCOL`]) and hands each to
//!   [`crate::Consensus::serve_connection`].
//!
//! Nothing here touches a socket type: the wire crate's transport wraps streams (TLS next).

mod append_frames;
pub mod backoff;
pub mod client;
mod connection;
pub mod error;
pub mod guard;
mod pipeline;
pub mod rpc;
pub(crate) mod session;
pub mod snapshot_receiver;
pub mod snapshot_sender;

pub use client::{NetworkFactory, identify};
pub use error::CallError;
pub use rpc::{LocalIdentity, PeerIdentity, RAFT_PROTOCOL};
