//! Connecting to a peer: the socket, the transport's wrapping and the hello, all within one
//! deadline. Retrying is the caller's decision; [`crate::backoff`] has the delays.

use std::path::Path;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use crate::frame::{MAX_FRAME_LEN, framed};
use crate::hello::{self, HelloError, LocalHello, ProtocolId};
use crate::listen::Connection;
use crate::transport::{AsyncStream, PeerAddr, PeerInfo, Transport};

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connecting to {addr} timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("{addr}: {source}")]
    Hello { addr: String, source: HelloError },
    /// The peer answered as another node than the one we meant to reach.
    #[error("{addr} is node {got}, not {expected}")]
    WrongPeer {
        addr: String,
        expected: u64,
        got: u64,
    },
}

impl DialError {
    /// Whether the peer refused us or answered in another protocol: it is there, but will not
    /// talk, and retrying at once will not change that.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            DialError::Hello {
                source: HelloError::Refused(_) | HelloError::Mismatch { .. },
                ..
            } | DialError::WrongPeer { .. }
        )
    }
}

/// How this side dials: which protocol, as whom, over what transport.
#[derive(Debug, Clone)]
pub struct Dialer {
    pub protocol: ProtocolId,
    pub transport: Transport,
    pub local: LocalHello,
}

impl Dialer {
    pub fn new(protocol: ProtocolId, local: LocalHello) -> Dialer {
        Dialer {
            protocol,
            transport: Transport::plain(),
            local,
        }
    }

    /// Connects to `addr` (`host:port`) over TCP; with `expect` set, the peer must say it is
    /// that node in its hello.
    pub async fn tcp(
        &self,
        addr: &str,
        expect: Option<u64>,
        timeout: Duration,
    ) -> Result<Connection, DialError> {
        let attempt = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|source| DialError::Connect {
                    addr: addr.to_string(),
                    source,
                })?;
            let _ = stream.set_nodelay(true);
            let peer = stream.peer_addr().map_or(PeerAddr::Local, PeerAddr::Tcp);
            self.handshake(stream, addr, peer, expect).await
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| DialError::Timeout {
                addr: addr.to_string(),
                after: timeout,
            })?
    }

    /// Connects to the Unix socket at `path`.
    pub async fn unix(&self, path: &Path, timeout: Duration) -> Result<Connection, DialError> {
        let addr = path.display().to_string();
        let attempt = async {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|source| DialError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
            self.handshake(stream, &addr, PeerAddr::Local, None).await
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| DialError::Timeout {
                addr: addr.clone(),
                after: timeout,
            })?
    }

    /// Wraps an already connected stream and exchanges hellos (tests use in-memory pipes).
    pub async fn handshake<S: AsyncStream>(
        &self,
        stream: S,
        addr: &str,
        peer: PeerAddr,
        expect: Option<u64>,
    ) -> Result<Connection, DialError> {
        let hello_error = |source| DialError::Hello {
            addr: addr.to_string(),
            source,
        };
        let (stream, identity) = self
            .transport
            .client(stream, addr)
            .await
            .map_err(|error| hello_error(HelloError::Io(error)))?;
        let mut framed = framed(stream, MAX_FRAME_LEN);
        let hello = hello::exchange_as_client(&mut framed, self.protocol, &self.local)
            .await
            .map_err(hello_error)?;
        if let Some(expected) = expect
            && hello.node_id != expected
        {
            return Err(DialError::WrongPeer {
                addr: addr.to_string(),
                expected,
                got: hello.node_id,
            });
        }
        Ok(Connection {
            framed,
            peer: PeerInfo {
                addr: peer,
                identity,
            },
            hello,
        })
    }
}
