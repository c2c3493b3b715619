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

/// The git revision these binaries were built from (`git rev-parse --short HEAD` at build time,
/// `unknown` outside a checkout): see `build.rs`.
pub const GIT_REVISION: &str = env!("SYMPHONY_GIT_REVISION");

/// What `--version` prints after a binary's name, on every Symphony binary: the package version
/// and the revision, e.g. `0.1.0 (git 9dd6416)`.
pub const VERSION_WITH_REVISION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("SYMPHONY_GIT_REVISION"),
    ")"
);

/// The agent's config dir when it is started without `--config-dir` (or
/// `SYMPHONY_CONFIG_DIR`). Defined here, where both the agent and the CLI can see it, so that the
/// two defaults cannot drift apart.
pub const DEFAULT_CONFIG_DIR: &str = ".symphony";

/// The default control socket path when neither `--socket` nor `SYMPHONY_SOCKET` is given: the
/// socket an agent started without `--config-dir` serves, so that `symphony-agent &` followed
/// by `symphony-ctl status` in the same directory find each other.
pub const DEFAULT_SOCKET: &str = ".symphony/control.sock";

/// The control socket's name inside an agent's config dir.
pub const CONTROL_SOCKET: &str = "control.sock";
