//! Symphony's control protocol, its async client and the `symphony-ctl` command line.
//!
//! Module map:
//! - [`proto`]: every request, response and error that crosses a control socket, and where
//!   each request is answered;
//! - [`client`]: the async [`Client`] that the CLI, testnet and the tests use;
//! - [`cli`]: the `symphony-ctl` commands and their table / JSON output.
//!
//! The agent serves this protocol; nothing else defines it. The framing, hello and request
//! multiplexing underneath are `symphony-wire`'s, shared with every other link.

pub mod cli;
pub mod client;
pub mod proto;

pub use client::{Client, ClientError, ReplyStream};
/// The framing, re-exported for tests that speak to the socket byte by byte.
pub use symphony_wire::frame;

/// The default control socket path when neither `--socket` nor `SYMPHONY_SOCKET` is given.
pub const DEFAULT_SOCKET: &str = "./control.sock";
