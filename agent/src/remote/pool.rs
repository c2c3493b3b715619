//! Connections to other nodes' remote API: one multiplexed connection per node, opened on first
//! use and replaced when it breaks.
//!
//! Many calls share one connection (the wire crate's [`Mux`]), so forwarded writes from many
//! control clients pipeline to the leader instead of queueing behind each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use symphony_ctl::proto::{CtlError, ErrorCode};
use symphony_wire::tls::TlsTransport;
use symphony_wire::{CallError, Dialer, LocalHello, Mux, Protocol, Transport};
use tokio::sync::watch;

use super::proto::{Remote, RemoteCall, RemoteReply, RemoteRequest};

/// How long connecting and the hello may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// One connection to a node's remote API.
#[derive(Debug, Clone)]
pub struct RemoteClient {
    addr: String,
    mux: Mux<Remote>,
}

impl RemoteClient {
    /// Connects to `addr` over `transport` and exchanges hellos, as node `local_node_id`.
    pub async fn connect(
        addr: &str,
        local_node_id: u64,
        transport: Transport,
    ) -> Result<RemoteClient, CtlError> {
        let dialer = Dialer {
            protocol: Remote::ID,
            transport,
            local: LocalHello {
                node_id: local_node_id,
                agent_version: crate::VERSION.to_string(),
            },
        };
        let connection = dialer
            .tcp(addr, None, CONNECT_TIMEOUT)
            .await
            .map_err(|error| unreachable(addr, &error).not_applied())?;
        Ok(RemoteClient {
            addr: addr.to_string(),
            mux: Mux::start(connection, addr),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.mux.is_closed()
    }

    /// Sends `request` and waits for its reply, at most `timeout`.
    pub async fn call(
        &self,
        request: RemoteRequest,
        timeout: Duration,
    ) -> Result<RemoteReply, CtlError> {
        self.send(
            RemoteCall {
                request,
                forwarded: false,
            },
            timeout,
        )
        .await
    }

    /// Sends a stream request; its answers come from the returned stream.
    pub async fn stream(
        &self,
        request: RemoteRequest,
    ) -> Result<symphony_wire::ReplyStream<Remote>, CtlError> {
        let call = RemoteCall {
            request,
            forwarded: false,
        };
        self.mux.stream(&call).await.map_err(|error| match error {
            CallError::Remote(error) => error,
            other => unreachable(&self.addr, &other).not_applied(),
        })
    }

    /// Sends `call` and waits for its reply, at most `timeout`.
    pub async fn send(&self, call: RemoteCall, timeout: Duration) -> Result<RemoteReply, CtlError> {
        self.mux
            .call(&call, Some(timeout))
            .await
            .map_err(|error| match error {
                CallError::Remote(error) => error,
                other if other.never_sent() => unreachable(&self.addr, &other).not_applied(),
                other => unreachable(&self.addr, &other),
            })
    }
}

/// The node at `addr` could not be asked, or did not answer; whether the request may have
/// been acted on is the caller's to mark.
fn unreachable(addr: &str, why: &dyn std::fmt::Display) -> CtlError {
    CtlError::new(
        ErrorCode::Unavailable,
        format!("cannot reach the node at {addr}: {why}"),
    )
}

/// Connections to other nodes by address.
#[derive(Debug)]
pub struct RemotePool {
    local_node_id: u64,
    transport: Transport,
    clients: tokio::sync::Mutex<Clients>,
}

#[derive(Debug)]
struct Clients {
    by_addr: HashMap<String, RemoteClient>,
    /// The node's TLS: when it changes (the node was issued its certificate, or a renewal),
    /// connections made before are dropped, so that no call goes out as the node was then
    /// (a newcomer without a certificate, say).
    tls: watch::Receiver<Option<Arc<TlsTransport>>>,
}

impl Clients {
    fn live(&mut self) -> &mut HashMap<String, RemoteClient> {
        if self.tls.has_changed().unwrap_or(false) {
            self.tls.borrow_and_update();
            self.by_addr.clear();
        }
        &mut self.by_addr
    }
}

impl RemotePool {
    pub fn new(
        local_node_id: u64,
        transport: Transport,
        tls: watch::Receiver<Option<Arc<TlsTransport>>>,
    ) -> RemotePool {
        RemotePool {
            local_node_id,
            transport,
            clients: tokio::sync::Mutex::new(Clients {
                by_addr: HashMap::new(),
                tls,
            }),
        }
    }

    /// A live connection to `addr`.
    pub async fn client(&self, addr: &str) -> Result<RemoteClient, CtlError> {
        if let Some(client) = self.clients.lock().await.live().get(addr)
            && !client.is_closed()
        {
            return Ok(client.clone());
        }
        // Connect without holding the pool: a node that does not answer (paused, cut off)
        // must not hold up calls to every other node for the connect timeout.
        let client =
            RemoteClient::connect(addr, self.local_node_id, self.transport.clone()).await?;
        let mut clients = self.clients.lock().await;
        let clients = clients.live();
        match clients.get(addr) {
            // Another call connected meanwhile: keep one connection per node.
            Some(existing) if !existing.is_closed() => Ok(existing.clone()),
            _ => {
                clients.insert(addr.to_string(), client.clone());
                Ok(client)
            }
        }
    }

    /// Sends one request to `addr` over the pooled connection.
    pub async fn call(
        &self,
        addr: &str,
        request: RemoteRequest,
        timeout: Duration,
    ) -> Result<RemoteReply, CtlError> {
        self.client(addr).await?.call(request, timeout).await
    }

    /// Opens a stream to `addr` over the pooled connection.
    pub async fn stream(
        &self,
        addr: &str,
        request: RemoteRequest,
    ) -> Result<symphony_wire::ReplyStream<Remote>, CtlError> {
        self.client(addr).await?.stream(request).await
    }

    /// Passes `request` on to the leader at `addr`, which will not pass it on again.
    pub async fn forward(
        &self,
        addr: &str,
        request: RemoteRequest,
        timeout: Duration,
    ) -> Result<RemoteReply, CtlError> {
        let call = RemoteCall {
            request,
            forwarded: true,
        };
        self.client(addr).await?.send(call, timeout).await
    }
}
