//! The node-to-node API on `--listen-remote-addr`: joins, and control requests forwarded to the
//! leader by the other managers.
//!
//! - [`proto`]: the messages;
//! - [`server`]: the listener, answering with [`crate::node::Node`];
//! - [`client`]: a multiplexed connection to one node, and a pool of them.
//!
//! It uses the same framing as every Symphony connection (hello with version, request ids,
//! typed errors); the byte stream is generic so TLS can wrap it later.

pub mod client;
pub mod proto;
pub mod server;

pub use client::{RemoteClient, RemotePool};
