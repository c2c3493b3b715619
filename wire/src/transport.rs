//! The one place a connected byte stream is wrapped before the hello.
//!
//! A transport is plain (the control socket; every TCP link today) or mutual TLS
//! ([`crate::tls`]), whose `server` and `client` run the handshake and whose [`PeerInfo`] names
//! the peer its certificate proves. Everything above — hello, framing, protocols — sees only a
//! [`BoxStream`] and a [`PeerInfo`].

use std::net::SocketAddr;
use std::sync::Arc;

use symphony_pki::CertIdentity;
use tokio::io::{AsyncRead, AsyncWrite};

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
    tls: Option<Arc<TlsTransport>>,
}

impl Transport {
    /// Bytes go as they are.
    pub fn plain() -> Transport {
        Transport::default()
    }

    /// Mutual TLS.
    pub fn tls(tls: TlsTransport) -> Transport {
        Transport {
            tls: Some(Arc::new(tls)),
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Wraps a connection this side accepted.
    pub async fn server<S: AsyncStream>(
        &self,
        stream: S,
        addr: PeerAddr,
    ) -> std::io::Result<(BoxStream, PeerInfo)> {
        let Some(tls) = &self.tls else {
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
        let identity = peer_identity(tls, stream.get_ref().1.peer_certificates())?;
        Ok((Box::new(stream), PeerInfo { addr, identity }))
    }

    /// Wraps a connection this side dialled to `_addr`; returns who the server's certificate
    /// proves it is (on TLS).
    pub async fn client<S: AsyncStream>(
        &self,
        stream: S,
        _addr: &str,
    ) -> std::io::Result<(BoxStream, Option<CertIdentity>)> {
        let Some(tls) = &self.tls else {
            return Ok((Box::new(stream), None));
        };
        let stream = tokio_rustls::TlsConnector::from(tls.client.clone())
            .connect(tls.name.clone(), stream)
            .await?;
        let identity = peer_identity(tls, stream.get_ref().1.peer_certificates())?;
        Ok((Box::new(stream), identity))
    }
}

/// The identity of the first certificate a verified handshake saw (the verifier already
/// refused every other).
fn peer_identity(
    tls: &TlsTransport,
    certificates: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> std::io::Result<Option<CertIdentity>> {
    certificates
        .and_then(|certificates| certificates.first())
        .map(|certificate| tls.identify(certificate.as_ref()))
        .transpose()
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))
}

#[cfg(test)]
mod tests;
