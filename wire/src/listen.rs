//! The accept loop every listener runs: caps on connections, a deadline on the handshake, the
//! transport's wrapping and the hello, then the connection handed to the protocol's handler.
//!
//! A connection counts against the caps from accept until its handler returns. One that has not
//! finished its handshake (transport and hello) by the deadline is dropped, so idle or slow
//! connections cannot hold slots for ever; one over a cap is closed at once. A failed accept
//! (usually: out of file descriptors) pauses the loop briefly instead of spinning.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

use crate::frame::{FramedStream, MAX_FRAME_LEN, framed};
use crate::hello::{self, Hello, LocalHello, ProtocolId};
use crate::transport::{AsyncStream, BoxStream, PeerAddr, PeerInfo, Transport};

/// How long the loop pauses after a failed accept.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// A socket that accepts connections.
pub trait Listener: Send + Sync + 'static {
    type Io: AsyncStream;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Io, PeerAddr)>> + Send;
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<(Self::Io, PeerAddr)> {
        let (stream, addr) = TcpListener::accept(self).await?;
        // Requests and replies are small and latency-bound.
        let _ = stream.set_nodelay(true);
        Ok((stream, PeerAddr::Tcp(addr)))
    }
}

impl Listener for UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&self) -> std::io::Result<(Self::Io, PeerAddr)> {
        let (stream, _) = UnixListener::accept(self).await?;
        Ok((stream, PeerAddr::Local))
    }
}

impl<L: Listener> Listener for Arc<L> {
    type Io = L::Io;

    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Io, PeerAddr)>> + Send {
        L::accept(self)
    }
}

/// The caps and the deadline of one listener.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once, in total.
    pub max_connections: usize,
    /// Connections open at once from one IP address (not applied to the local socket).
    pub max_per_peer: usize,
    /// How long the transport handshake and the hello may take together.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            max_per_peer: 4096,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// What a listener speaks and how.
#[derive(Clone)]
pub struct ServerConfig {
    pub protocol: ProtocolId,
    pub transport: Transport,
    pub limits: Limits,
    /// What this side says in its hello; asked for each connection, since a node's ids can
    /// change while it runs (a manager that leaves gets a new Raft id).
    pub local: Arc<dyn Fn() -> LocalHello + Send + Sync>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("protocol", &self.protocol)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A connection past its handshake: framed, with the peer's hello.
pub struct Connection {
    pub framed: FramedStream<BoxStream>,
    pub peer: PeerInfo,
    /// The peer's hello (on a dialled connection: the server's answer).
    pub hello: Hello,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .field("hello", &self.hello)
            .finish_non_exhaustive()
    }
}

/// Accepts connections on `listener` until `shutdown`, handing each one that completes its
/// handshake to `handler` on its own task. A connection's task ends with its handler, or at
/// `shutdown`.
pub async fn serve<L, H, Fut>(
    listener: L,
    config: ServerConfig,
    shutdown: CancellationToken,
    handler: H,
) where
    L: Listener,
    H: Fn(Connection) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    let slots = Arc::new(Slots::new(config.limits));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(protocol = config.protocol.name, %error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(slot) = slots.take(addr) else {
            tracing::warn!(protocol = config.protocol.name, peer = %addr, "too many connections; closing a new one");
            continue;
        };
        let config = config.clone();
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let connection = tokio::select! {
                () = shutdown.cancelled() => return,
                connection = tokio::time::timeout(
                    config.limits.handshake_timeout,
                    handshake(stream, addr, &config),
                ) => connection,
            };
            let connection = match connection {
                Ok(Ok(connection)) => connection,
                Ok(Err(error)) => {
                    tracing::debug!(protocol = config.protocol.name, peer = %addr, %error, "handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(protocol = config.protocol.name, peer = %addr, "handshake timed out");
                    return;
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = handler(connection) => {}
            }
            drop(slot);
        });
    }
}

/// Wraps the stream and exchanges hellos.
async fn handshake<S: AsyncStream>(
    stream: S,
    addr: PeerAddr,
    config: &ServerConfig,
) -> Result<Connection, hello::HelloError> {
    let (stream, peer) = config.transport.server(stream, addr).await?;
    let mut framed = framed(stream, MAX_FRAME_LEN);
    let local = (config.local)();
    let hello = hello::exchange_as_server(&mut framed, config.protocol, &local).await?;
    Ok(Connection {
        framed,
        peer,
        hello,
    })
}

/// Connection counts, in total and per IP address.
struct Slots {
    limits: Limits,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// One connection's place under the caps, given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    ip: Option<IpAddr>,
}

impl Slots {
    fn new(limits: Limits) -> Slots {
        Slots {
            limits,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn take(self: &Arc<Self>, addr: PeerAddr) -> Option<Slot> {
        let ip = match addr {
            PeerAddr::Tcp(addr) => Some(addr.ip()),
            PeerAddr::Local => None,
        };
        let mut counts = self.lock();
        if counts.total >= self.limits.max_connections {
            return None;
        }
        if let Some(ip) = ip {
            let count = counts.per_peer.entry(ip).or_default();
            if *count >= self.limits.max_per_peer {
                return None;
            }
            *count += 1;
        }
        counts.total += 1;
        Some(Slot {
            slots: self.clone(),
            ip,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(count) = counts.per_peer.get_mut(&ip)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.per_peer.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tcp(ip: [u8; 4], port: u16) -> PeerAddr {
        PeerAddr::Tcp((ip, port).into())
    }

    #[test]
    fn caps_count_in_total_and_per_peer_and_free_on_drop() {
        let slots = Arc::new(Slots::new(Limits {
            max_connections: 3,
            max_per_peer: 2,
            handshake_timeout: Duration::from_secs(1),
        }));
        let a1 = slots.take(tcp([127, 0, 0, 1], 1)).unwrap();
        let _a2 = slots.take(tcp([127, 0, 0, 1], 2)).unwrap();
        assert!(slots.take(tcp([127, 0, 0, 1], 3)).is_none(), "per-peer cap");
        let b1 = slots.take(tcp([127, 0, 0, 2], 1)).unwrap();
        assert!(slots.take(PeerAddr::Local).is_none(), "total cap");
        drop(a1);
        let _a3 = slots.take(tcp([127, 0, 0, 1], 3)).unwrap();
        drop(b1);
        let _local = slots.take(PeerAddr::Local).unwrap();
        assert_eq!(slots.lock().total, 3);
    }
}
