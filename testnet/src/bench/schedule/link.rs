//! The one place a simulated worker's links to the managers are made, wrapped as a real
//! worker's are: mutual TLS once it holds its certificate. Before that it asks for the CA
//! bundle over TLS that trusts no server yet ([`As::Discovery`]), and sends its join with the
//! token over TLS that trusts only that bundle, checked against the token ([`As::Newcomer`]).

use std::time::Duration;

use symphony_agent::remote::proto::Remote;
use symphony_pki::CaBundle;
use symphony_wire::tls::{ClientAuth, TlsMaterial, TlsTransport};
use symphony_wire::{Dialer, LocalHello, Mux, Protocol, Transport};

use super::error::SimError;

/// How long connecting and the hello may take (the agents' own remote pool allows as much).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Who a simulated worker dials as.
#[derive(Clone, Copy)]
pub enum As<'a> {
    /// Knowing nothing yet: only the CA bundle may be asked for.
    Discovery,
    /// Trusting the bundle it checked, without a certificate: to join.
    Newcomer(&'a CaBundle),
    /// With the certificate it was issued and its key.
    Member(&'a TlsMaterial),
}

/// How a simulated worker's links are wrapped, as who it dials as.
pub fn transport(who: As<'_>) -> Result<Transport, SimError> {
    let tls = match who {
        As::Discovery => TlsTransport::discovery(),
        As::Newcomer(bundle) => TlsTransport::newcomer(bundle.clone(), None),
        As::Member(material) => TlsTransport::new(material, ClientAuth::Optional),
    }
    .map_err(|error| SimError::Unexpected(format!("cannot set up TLS: {error}")))?;
    Ok(Transport::tls(tls))
}

/// A multiplexed connection to the node-to-node API at `addr`, as node `node_id` (0 before a
/// node id is known to the cluster: the hello's id is informational).
pub async fn dial(addr: &str, node_id: u64, who: As<'_>) -> Result<Mux<Remote>, SimError> {
    let dialer = Dialer {
        protocol: Remote::ID,
        transport: transport(who)?,
        local: LocalHello {
            node_id,
            agent_version: symphony_agent::VERSION.to_string(),
        },
    };
    let connection = dialer.tcp(addr, None, CONNECT_TIMEOUT).await?;
    Ok(Mux::start(connection, addr))
}
