//! Mutual TLS for [`crate::Transport`] (rustls with the `ring` provider, TLS 1.3 only).
//!
//! Both sides verify by CA and URI SAN, not by host name: a peer's certificate must be issued
//! by a CA of the cluster's bundle, be valid now and name exactly one node of this cluster
//! (`symphony_pki::verify_peer`). The handshake fails on anything else — no certificate where
//! one is required, another CA's, another cluster's — and the accepted connection's
//! [`PeerInfo`](crate::PeerInfo) carries the identity the certificate proves, for each call to
//! check its role and the node it acts for.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use symphony_pki::{CaBundle, CertIdentity, PkiError};

/// The name a client puts in its hello: certificates carry no host names, so none is checked.
const SERVER_NAME: &str = "symphony.invalid";

/// Whether a listener requires a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client proves itself (Raft, the node-to-node API).
    Required,
    /// A client may come without one (a node that joins and has none yet); the protocol above
    /// must then serve it only what a newcomer may ask.
    Optional,
}

/// Why TLS could not be set up from the node's material.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("the node's TLS material does not read: {0}")]
    Pki(#[from] PkiError),
    #[error("rustls refused the configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{SERVER_NAME} is not a server name: {0}")]
    Name(#[from] rustls::pki_types::InvalidDnsNameError),
}

/// A check of the identity a valid certificate proves, beyond the CA and the cluster: `false`
/// refuses the peer in the handshake (as a revoked certificate). The protocol above decides
/// what it means (the agent refuses the nodes removed from its cluster); this crate only asks.
pub type PeerCheck = Arc<dyn Fn(&CertIdentity) -> bool + Send + Sync>;

/// What a node needs to speak TLS: its certificate and key, and whom it trusts.
#[derive(Clone)]
pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub bundle: CaBundle,
    pub cluster_id: String,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// Both sides' rustls configurations, built once.
pub struct TlsTransport {
    /// `None` for a newcomer, which has no certificate to serve with yet.
    pub(crate) server: Option<Arc<rustls::ServerConfig>>,
    pub(crate) client: Arc<rustls::ClientConfig>,
    pub(crate) name: ServerName<'static>,
    verifier: Arc<PeerVerifier>,
    /// A discovery client ([`TlsTransport::discovery`]) learns no identity from the server.
    pub(crate) discovery: bool,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("cluster_id", &self.verifier.cluster_id)
            .finish_non_exhaustive()
    }
}

impl TlsTransport {
    /// A node with its certificate: it serves (asking clients for theirs as `client_auth`
    /// says) and dials with it.
    pub fn new(material: &TlsMaterial, client_auth: ClientAuth) -> Result<Self, TlsSetupError> {
        Self::checked(material, client_auth, None)
    }

    /// Like [`TlsTransport::new`], refusing (both ways) every peer whose identity `check`
    /// refuses.
    pub fn checked(
        material: &TlsMaterial,
        client_auth: ClientAuth,
        check: Option<PeerCheck>,
    ) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PeerVerifier {
            bundle: material.bundle.clone(),
            cluster_id: Some(material.cluster_id.clone()),
            provider: provider.clone(),
            client_auth,
            peer_check: check,
        });
        // The node's certificate and what it is presented with (during a root rotation, the
        // new root cross-signed by the old).
        let chain: Vec<CertificateDer<'static>> = CaBundle::new(material.cert_pem.clone())
            .certificates_der()?
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(material.key_der.clone()));
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier.clone())
            .with_single_cert(chain.clone(), key())?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_auth_cert(chain, key())?;
        Ok(TlsTransport {
            server: Some(Arc::new(server)),
            client: Arc::new(client),
            name: ServerName::try_from(SERVER_NAME)?,
            verifier,
            discovery: false,
        })
    }

    /// A node that has no certificate yet (it is joining): it dials without one, trusting
    /// servers of `bundle` (which it checked against its token) of cluster `cluster_id`, and
    /// serves nothing.
    /// With `cluster_id` unknown (the joiner has only checked the bundle against its token),
    /// the server's cluster is whatever the bundle's CA issued it for: a bundle is one
    /// cluster's.
    pub fn newcomer(bundle: CaBundle, cluster_id: Option<String>) -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PeerVerifier {
            bundle,
            cluster_id,
            provider: provider.clone(),
            client_auth: ClientAuth::Required,
            peer_check: None,
        });
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Ok(TlsTransport {
            server: None,
            client: Arc::new(client),
            name: ServerName::try_from(SERVER_NAME)?,
            verifier,
            discovery: false,
        })
    }

    /// A node that knows nothing of the cluster yet, asking only for its CA bundle: it dials
    /// without a certificate and takes the server's as it comes (the handshake's signatures
    /// are still checked). Nothing that comes over it may be trusted until checked otherwise,
    /// as a joiner checks the bundle against its token's digest; nothing secret may be sent.
    pub fn discovery() -> Result<Self, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(PeerVerifier {
            bundle: CaBundle::new(String::new()),
            cluster_id: None,
            provider: provider.clone(),
            client_auth: ClientAuth::Required,
            peer_check: None,
        });
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer {
                signatures: verifier.clone(),
            }))
            .with_no_client_auth();
        Ok(TlsTransport {
            server: None,
            client: Arc::new(client),
            name: ServerName::try_from(SERVER_NAME)?,
            verifier,
            discovery: true,
        })
    }

    /// Who the certificate `der`, presented with `intermediates`, proves, as this side's
    /// verifier sees it.
    pub fn identify(&self, der: &[u8], intermediates: &[&[u8]]) -> Result<CertIdentity, PkiError> {
        self.verifier.check(der, intermediates, SystemTime::now())
    }
}

/// One verifier for both sides: the bundle, the cluster, the caller's own check, and rustls's
/// signature checks.
struct PeerVerifier {
    bundle: CaBundle,
    /// `None`: any cluster the bundle's CAs issued for (a newcomer's view).
    cluster_id: Option<String>,
    provider: Arc<CryptoProvider>,
    client_auth: ClientAuth,
    peer_check: Option<PeerCheck>,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("cluster_id", &self.cluster_id)
            .field("client_auth", &self.client_auth)
            .field("checked", &self.peer_check.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a peer's certificate was refused.
enum Refusal {
    Pki(PkiError),
    /// Valid, but the check refused the identity it proves.
    Checked,
}

impl PeerVerifier {
    fn check(
        &self,
        der: &[u8],
        intermediates: &[&[u8]],
        now: SystemTime,
    ) -> Result<CertIdentity, PkiError> {
        match &self.cluster_id {
            Some(cluster_id) => symphony_pki::verify::verify_peer_with(
                der,
                intermediates,
                &self.bundle,
                cluster_id,
                now,
            ),
            None => symphony_pki::verify::verify_chain_with(der, intermediates, &self.bundle, now),
        }
    }

    fn admit(
        &self,
        der: &[u8],
        intermediates: &[&[u8]],
        now: SystemTime,
    ) -> Result<CertIdentity, Refusal> {
        let identity = self.check(der, intermediates, now).map_err(Refusal::Pki)?;
        match &self.peer_check {
            Some(check) if !check(&identity) => Err(Refusal::Checked),
            _ => Ok(identity),
        }
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs());
        let intermediates: Vec<&[u8]> = intermediates.iter().map(AsRef::as_ref).collect();
        self.admit(end_entity.as_ref(), &intermediates, now)
            .map(|_| ())
            .map_err(|refusal| {
                rustls::Error::InvalidCertificate(match refusal {
                    Refusal::Pki(PkiError::UnknownIssuer) => CertificateError::UnknownIssuer,
                    Refusal::Pki(PkiError::Expired { .. }) => CertificateError::Expired,
                    Refusal::Pki(PkiError::Malformed { .. }) => CertificateError::BadEncoding,
                    Refusal::Pki(_) => CertificateError::ApplicationVerificationFailure,
                    Refusal::Checked => CertificateError::Revoked,
                })
            })
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for PeerVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.client_auth == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, now)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

/// The discovery client's verifier: any server certificate, with valid handshake signatures
/// (checked as the cluster's verifier checks them).
#[derive(Debug)]
struct AnyServer {
    signatures: Arc<PeerVerifier>,
}

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(&*self.signatures, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(&*self.signatures, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(&*self.signatures)
    }
}
