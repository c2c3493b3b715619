//! The control socket: a Unix socket in the config dir (mode 0600) that speaks the protocol of
//! `symphony_ctl::proto` to `symphony-ctl`, testnet and scripts.
//!
//! - [`listener`]: binding the socket safely and accepting connections within a limit;
//! - [`connection`]: one connection — hello, then pipelined requests answered by id.

pub mod connection;
pub mod listener;

pub use listener::{BindError, bind, serve};
