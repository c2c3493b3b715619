//! Raft RPCs between managers over TCP, with the framing every Symphony connection uses.
//!
//! - [`rpc`]: the messages;
//! - [`client`]: the [`RaftNetworkFactory`](openraft::RaftNetworkFactory) openraft calls out
//!   with, one long-lived connection per peer and purpose;
//! - `connection`: one established connection (TCP, hello, framed requests and replies);
//! - `pipeline`: pipelined AppendEntries, several in flight on one connection;
//! - `append_frames`: splitting an AppendEntries too large for one frame;
//! - [`snapshot_sender`] and [`snapshot_receiver`]: snapshots in bounded, acknowledged chunks;
//! - [`backoff`]: how an unreachable peer is retried;
//! - [`error`]: why a call failed, and what openraft should make of it;
//! - [`server`]: the listener, and `session`, one incoming connection served in order.
//!
//! The code is written over generic byte streams where it touches the socket, so that mutual TLS
//! can wrap the TCP stream later without changing the protocol.

mod append_frames;
pub mod backoff;
pub mod client;
mod connection;
pub mod error;
mod pipeline;
pub mod rpc;
pub mod server;
mod session;
pub mod snapshot_receiver;
pub mod snapshot_sender;

pub use client::{NetworkFactory, identify};
pub use error::CallError;
pub use rpc::{LocalIdentity, PeerIdentity};
pub use server::serve;
