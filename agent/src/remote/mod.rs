//! The node-to-node API on `--listen-remote-addr`: joins, requests forwarded to the leader,
//! workers' sessions and leave notices.
//!
//! - [`proto`]: the messages, and where each is answered;
//! - [`server`]: the listener and the routing of each call;
//! - [`authorize`]: who may make which call, from the caller's certificate;
//! - [`forward`]: finding the leader and passing a call on to it, once;
//! - [`pool`]: multiplexed connections to other nodes.
//!
//! Framing, hello, request ids and the transport are the wire crate's.

pub mod authorize;
pub mod forward;
pub mod pool;
pub mod proto;
pub mod server;

pub use pool::{RemoteClient, RemotePool};
