//! The one place a connected byte stream is wrapped before the hello.
//!
//! A transport is plain (the control socket; a node's links while it has no certificate) or
//! mutual TLS
//! ([`crate::tls`]), whose `server` and `client` run the handshake and whose [`PeerInfo`] names
//! the peer its certificate proves. Everything above — hello, framing, protocols — sees only a
//! [`BoxStream`] and a [`PeerInfo`].

use std::net::SocketAddr;
use std::sync::Arc;

use symphony_pki::CertIdentity;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::tls::TlsTransport;

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
    /// Who the peer's certificate proves it is; `None` on a plain link, or from a TLS client
    /// that showed no certificate to a listener that lets newcomers in.
    pub identity: Option<CertIdentity>,
}

/// How connections are wrapped; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Transport {
    mode: Mode,
}

#[derive(Debug, Clone, Default)]
enum Mode {
    #[default]
    Plain,
    Tls(Arc<TlsTransport>),
    /// Whatever the channel holds when a connection starts: a node's links follow its
    /// certificate (none while it has none yet, then the one it was issued, then its renewal)
    /// without anyone rebuilding listeners or dialers.
    Live(watch::Receiver<Option<Arc<TlsTransport>>>),
}

impl Transport {
    /// Bytes go as they are.
    pub fn plain() -> Transport {
        Transport::default()
    }

    /// Mutual TLS.
    pub fn tls(tls: TlsTransport) -> Transport {
        Transport {
            mode: Mode::Tls(Arc::new(tls)),
        }
    }

    /// Plain while `current` holds `None`, TLS with what it holds otherwise, read afresh for
    /// each connection.
    pub fn live(current: watch::Receiver<Option<Arc<TlsTransport>>>) -> Transport {
        Transport {
            mode: Mode::Live(current),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.current().is_some()
    }

    /// What a connection started now is wrapped in.
    fn current(&self) -> Option<Arc<TlsTransport>> {
        match &self.mode {
            Mode::Plain => None,
            Mode::Tls(tls) => Some(tls.clone()),
            Mode::Live(current) => current.borrow().clone(),
        }
    }

    /// Wraps a connection this side accepted.
    pub async fn server<S: AsyncStream>(
        &self,
        stream: S,
        addr: PeerAddr,
    ) -> std::io::Result<(BoxStream, PeerInfo)> {
        let Some(tls) = self.current() else {
            return Ok((
                Box::new(stream),
                PeerInfo {
                    addr,
                    identity: None,
                },
            ));
        };
        let Some(config) = &tls.server else {
            return Err(std::io::Error::other(
                "this node has no certificate to serve TLS with yet",
            ));
        };
        let stream = tokio_rustls::TlsAcceptor::from(config.clone())
            .accept(stream)
            .await?;
        let identity = peer_identity(&tls, stream.get_ref().1.peer_certificates())?;
        Ok((Box::new(stream), PeerInfo { addr, identity }))
    }

    /// Wraps a connection this side dialled to `_addr`; returns who the server's certificate
    /// proves it is (on TLS).
    pub async fn client<S: AsyncStream>(
        &self,
        stream: S,
        _addr: &str,
    ) -> std::io::Result<(BoxStream, Option<CertIdentity>)> {
        let Some(tls) = self.current() else {
            return Ok((Box::new(stream), None));
        };
        let stream = tokio_rustls::TlsConnector::from(tls.client.clone())
            .connect(tls.name.clone(), stream)
            .await?;
        let identity = peer_identity(&tls, stream.get_ref().1.peer_certificates())?;
        Ok((Box::new(stream), identity))
    }
}

/// The identity of the first certificate a verified handshake saw (the verifier already
/// refused every other).
fn peer_identity(
    tls: &TlsTransport,
    certificates: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> std::io::Result<Option<CertIdentity>> {
    if tls.discovery {
        return Ok(None);
    }
    certificates
        .and_then(|certificates| certificates.split_first())
        .map(|(certificate, rest)| {
            let rest: Vec<&[u8]> = rest.iter().map(AsRef::as_ref).collect();
            tls.identify(certificate.as_ref(), &rest)
        })
        .transpose()
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
}

#[cfg(test)]
mod tests;
