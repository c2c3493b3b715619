//! The Raft port: where the other managers' Raft RPCs arrive.
//!
//! A manager serves it for as long as it is one. A fresh node serves it too, since `init
//! --peers` on another node reaches it there; its Raft node is started only when the first
//! connection arrives (it costs tens of MB, which a node that ends up a worker must not pay).
//! A worker serves none: its port is closed when it joins, which ends every connection it
//! accepted, and opened again when it leaves.

use std::net::SocketAddr;

use symphony_consensus::network::RAFT_PROTOCOL;
use symphony_ctl::proto::{CtlError, ErrorCode};
use symphony_wire::{Connection, Limits};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::NodeHandle;

/// Raft connections one address may hold: each peer opens a few per purpose (replication,
/// heartbeats, votes, snapshots), and managers on one machine share an address.
const RAFT_CONNECTIONS_PER_PEER: usize = 256;
/// How long a Raft connection has for its hello.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The Raft listener, open or closed.
pub struct RaftPort {
    addr: SocketAddr,
    running: Option<Running>,
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RaftPort {
    /// A closed port that will listen on `addr`.
    pub fn new(addr: SocketAddr) -> RaftPort {
        RaftPort {
            addr,
            running: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.running.is_some()
    }

    /// Binds the port and serves it.
    pub async fn open(&mut self, node: NodeHandle) -> Result<(), CtlError> {
        let addr = self.addr;
        let listener = TcpListener::bind(addr).await.map_err(|error| {
            CtlError::new(
                ErrorCode::Unavailable,
                format!(
                    "a manager serves Raft RPCs, and {addr} is not free ({error}); stop what uses it, or restart this agent with another --listen-raft-addr"
                ),
            )
        })?;
        self.open_with(listener, node);
        Ok(())
    }

    /// Serves the port on `listener`, already bound.
    pub fn open_with(&mut self, listener: TcpListener, node: NodeHandle) {
        let stop = CancellationToken::new();
        // The hello names this node's Raft id, which a leave renews.
        // Managers hold a few connections each; a flood from one address meets its cap long
        // before the process runs out of file descriptors.
        let cap = node.config().connection_cap;
        let limits = Limits {
            max_connections: cap,
            max_per_peer: cap.min(RAFT_CONNECTIONS_PER_PEER),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        };
        let transport = node.config().raft_transport.clone();
        let config = node.server_config(RAFT_PROTOCOL, transport, limits, |identity| {
            identity.raft_node_id
        });
        let task = tokio::spawn(symphony_wire::listen::serve(
            listener,
            config,
            stop.clone(),
            move |connection| serve(node.clone(), connection),
        ));
        if let Some(previous) = self.running.replace(Running { stop, task }) {
            previous.stop.cancel();
        }
    }

    /// Stops serving and frees the port; the connections it accepted end with it.
    pub async fn close(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.cancel();
            let _ = running.task.await;
        }
    }
}

/// Serves one Raft connection with this node's Raft node, starting it on a fresh node.
async fn serve(node: NodeHandle, connection: Connection) {
    if node.is_worker() {
        return;
    }
    let peer = connection.peer.addr;
    // Only managers speak Raft. The transport already refused a client without a certificate
    // of this cluster (once this node holds one); a worker's certificate is of this cluster
    // too, and must not reach openraft (Nomad's and Consul's CVE-2021-37218/37219).
    if let Some(identity) = &connection.peer.identity
        && identity.role != symphony_pki::CertRole::Manager
    {
        tracing::warn!(%peer, %identity, "a Raft connection from a node that is not a manager; closed");
        return;
    }
    match node.start_raft().await {
        Ok(consensus) => consensus.serve_connection(connection).await,
        Err(error) => {
            tracing::warn!(%peer, %error, "cannot start the Raft node for an incoming connection");
        }
    }
}
