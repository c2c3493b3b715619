//! The one place a connected byte stream is wrapped before the hello.
//!
//! Today every link is plain; mutual TLS will be another [`Transport`] whose `server` and
//! `client` run the handshake and whose [`PeerInfo`] names the peer its certificate proves.
//! Everything above — hello, framing, protocols — sees only a [`BoxStream`] and a [`PeerInfo`].

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream a connection can run over: a Unix socket, TCP, TLS over TCP, or an in-memory
/// pipe in tests.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> AsyncStream for T {}

/// A wrapped stream, whatever is underneath.
pub type BoxStream = Box<dyn AsyncStream>;

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddr {
    Tcp(SocketAddr),
    /// The local control socket (a Unix socket in the config dir).
    Local,
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => write!(f, "{addr}"),
            PeerAddr::Local => f.write_str("the local control socket"),
        }
    }
}

/// What the transport knows about the peer of an accepted connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub addr: PeerAddr,
}

/// How connections are wrapped; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    _plain: (),
}

impl Transport {
    /// Bytes go as they are.
    pub fn plain() -> Transport {
        Transport::default()
    }

    /// Wraps a connection this side accepted.
    pub async fn server<S: AsyncStream>(
        &self,
        stream: S,
        addr: PeerAddr,
    ) -> std::io::Result<(BoxStream, PeerInfo)> {
        Ok((Box::new(stream), PeerInfo { addr }))
    }

    /// Wraps a connection this side dialled to `_addr`.
    pub async fn client<S: AsyncStream>(
        &self,
        stream: S,
        _addr: &str,
    ) -> std::io::Result<BoxStream> {
        Ok(Box::new(stream))
    }
}
