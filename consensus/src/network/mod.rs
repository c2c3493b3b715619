//! Raft RPCs between managers over TCP, with the framing every Symphony connection uses.
//!
//! - [`rpc`]: the messages;
//! - [`client`]: the [`RaftNetworkFactory`](openraft::RaftNetworkFactory) openraft calls out with;
//! - [`server`]: the listener that hands incoming RPCs to the local Raft node.
//!
//! The code is written over generic byte streams where it touches the socket, so that mutual TLS
//! can wrap the TCP stream later without changing the protocol.

pub mod client;
pub mod rpc;
pub mod server;

pub use client::{NetworkFactory, identify};
pub use rpc::{LocalIdentity, PeerIdentity};
pub use server::serve;
