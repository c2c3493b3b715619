//! Symphony's one transport layer: every framed link — the control socket, the node-to-node API
//! and Raft RPCs — goes through this crate, and it knows none of their message types.
//!
//! Module map:
//! - [`codec`]: the length prefix, with buffers that grow with what arrived and one memory
//!   budget for large frames still arriving;
//! - [`frame`]: MessagePack bodies in those frames, with a size limit, and the buffers given
//!   back after large frames;
//! - [`double_option`]: `Option<Option<T>>` fields ("leave", "clear", "set") that stay three
//!   things in MessagePack;
//! - [`hello`]: the first frame each way — protocol name, version, who is speaking — and the
//!   typed refusal a mismatched peer gets;
//! - [`transport`]: the one place a byte stream is wrapped before the hello (plain, or mutual
//!   TLS), and what is known about the peer (the identity its certificate proves);
//! - [`tls`]: mutual TLS with rustls (ring), verified by CA and URI SAN, not host names;
//! - [`listen`]: the accept loop, with a cap on connections in total and per peer address and a
//!   deadline on the handshake;
//! - [`dial`]: connecting to a peer and exchanging hellos within a deadline;
//! - [`backoff`]: the growing delays before retrying an unreachable peer;
//! - [`envelope`]: request and response frames — request ids, single replies, streams of many
//!   items under one id ending with an explicit end frame, and cancellation;
//! - [`protocol`]: what a protocol built on this crate declares (its name, version and types);
//! - [`mux`]: the client side: many calls and streams in flight on one connection;
//! - [`serve`]: the server side: requests answered concurrently, replies coalesced into few
//!   writes, malformed frames answered with typed errors, never a panic.
//!
//! Everything is written over any `AsyncRead + AsyncWrite`, so wrapping links in TLS changes
//! [`transport`] and nothing above it.

pub mod backoff;
pub mod codec;
pub mod dial;
pub mod double_option;
pub mod envelope;
pub mod frame;
pub mod hello;
pub mod listen;
pub mod mux;
pub mod protocol;
pub mod serve;
pub mod tls;
pub mod transport;

mod variants;

pub use dial::{DialError, Dialer};
pub use envelope::{Body, RequestFrame, RequestId, ResponseFrame};
pub use frame::{FrameError, FramedStream, MAX_FRAME_LEN};
pub use hello::{Hello, HelloError, LocalHello, ProtocolId, Refusal, RefusalReason};
pub use listen::{Connection, Limits, Listener, ServerConfig};
pub use mux::{CallError, Mux, ReplyStream};
pub use protocol::{Fault, FaultKind, Protocol};
pub use serve::{Caller, Reply};
pub use transport::{AsyncStream, BoxStream, PeerAddr, PeerInfo, Transport};
