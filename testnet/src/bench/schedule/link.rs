//! The one place a simulated worker's links to the managers are made.
//!
//! Every dial goes through [`transport`], which today is `Transport::plain()`, as the agents'
//! own node-to-node links are. When those links move to mutual TLS, this function is the only
//! one to change: a worker that has not joined yet dials as a newcomer (no certificate,
//! trusting the CA bundle it checked against its token), a joined one with the certificate
//! it was issued and its key, both of which [`join`](super::join) keeps in a [`TlsMaterial`]
//! for exactly that.

use std::time::Duration;

use symphony_agent::remote::proto::Remote;
use symphony_wire::tls::TlsMaterial;
use symphony_wire::{Dialer, LocalHello, Mux, Protocol, Transport};

use super::error::SimError;

/// How long connecting and the hello may take (the agents' own remote pool allows as much).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How a simulated worker's links are wrapped: `None` before it joined (it holds no
/// certificate yet), its issued certificate and key after.
pub fn transport(_material: Option<&TlsMaterial>) -> Transport {
    Transport::plain()
}

/// A multiplexed connection to the node-to-node API at `addr`, as node `node_id` (0 before a
/// node id is known to the cluster: the hello's id is informational).
pub async fn dial(
    addr: &str,
    node_id: u64,
    material: Option<&TlsMaterial>,
) -> Result<Mux<Remote>, SimError> {
    let dialer = Dialer {
        protocol: Remote::ID,
        transport: transport(material),
        local: LocalHello {
            node_id,
            agent_version: symphony_agent::VERSION.to_string(),
        },
    };
    let connection = dialer.tcp(addr, None, CONNECT_TIMEOUT).await?;
    Ok(Mux::start(connection, addr))
}
