//! What the agent's integration tests share.

use std::net::TcpListener;

/// The agent binary Cargo built for these tests.
pub const AGENT: &str = env!("CARGO_BIN_EXE_symphony-agent");

/// A port the OS just gave out and that is free again.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
