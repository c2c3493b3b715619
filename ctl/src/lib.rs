//! Symphony's control protocol, its async client and the `symphony-ctl` command line.
//!
//! Module map:
//! - [`proto`]: every request, response and error that crosses a control socket;
//! - [`frame`]: the length-prefixed MessagePack framing all Symphony connections share;
//! - [`client`]: the async [`Client`] that the CLI, testnet and the tests use;
//! - [`cli`]: the `symphony-ctl` commands and their table / JSON output.
//!
//! The agent serves this protocol; nothing else defines it.

pub mod cli;
pub mod client;
pub mod frame;
pub mod proto;

pub use client::{Client, ClientError};

/// The default control socket path when neither `--socket` nor `SYMPHONY_SOCKET` is given.
pub const DEFAULT_SOCKET: &str = "./control.sock";
