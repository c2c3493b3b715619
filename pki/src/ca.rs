//! The cluster's root CA: created at `init`, kept in the replicated cluster state (so only
//! managers hold its key), and issuing node certificates.
//!
//! A certificate is issued for the identity the manager decided — the node id, role and
//! cluster from its own records — and carries it as the one URI SAN. Whatever the request
//! asked for (names, extensions, CA rights) is ignored; only its public key is used, and only
//! once its signature shows the requester holds the private key.

use std::time::{Duration, SystemTime};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::bundle::CaBundle;
use crate::error::PkiError;
use crate::identity::CertIdentity;

/// How long the root is valid.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node certificate is valid unless the cluster says otherwise (`init
/// --cert-expiry`, `cluster update --cert-expiry`): every node renews its own well before the
/// end, so a short life costs nothing and bounds how long a stolen key is worth anything.
pub const DEFAULT_NODE_CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// The shortest lifetime a cluster may set: renewal starts at half of it, and a node needs a
/// few seconds to ask; tests use lifetimes not much longer.
pub const MIN_NODE_CERT_LIFETIME: Duration = Duration::from_secs(30);
/// The longest: a node certificate must end well before the root it chains to (renewing the
/// root is an operator's rotation, not something a node does).
pub const MAX_NODE_CERT_LIFETIME: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// Checks a node certificate lifetime an operator asked for.
pub fn check_lifetime(lifetime: Duration) -> Result<Duration, PkiError> {
    if lifetime < MIN_NODE_CERT_LIFETIME || lifetime > MAX_NODE_CERT_LIFETIME {
        return Err(PkiError::Lifetime {
            asked_s: lifetime.as_secs(),
            min_s: MIN_NODE_CERT_LIFETIME.as_secs(),
            max_s: MAX_NODE_CERT_LIFETIME.as_secs(),
        });
    }
    Ok(lifetime)
}

/// The root CA: its certificate and its private key, both PEM. The key is a secret of the
/// managers.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

/// A new root, and its certificate signed by the root it replaces ([`ClusterCa::rotate`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Rotated {
    pub ca: ClusterCa,
    pub cross_signed_pem: String,
}

/// A certificate a manager issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    pub cert_pem: String,
}

impl ClusterCa {
    /// A new root for cluster `cluster_id`, valid from an hour ago.
    pub fn generate(cluster_id: &str) -> Result<ClusterCa, PkiError> {
        Self::generate_at(cluster_id, SystemTime::now())
    }

    pub fn generate_at(cluster_id: &str, now: SystemTime) -> Result<ClusterCa, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(PkiError::generate("make the CA key"))?;
        let cert = root_params(&format!("symphony cluster {cluster_id} root"), now)
            .self_signed(&key)
            .map_err(PkiError::generate("sign the CA certificate"))?;
        Ok(ClusterCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The root that replaces this one in a rotation (`ca rotate`), with its certificate
    /// cross-signed by this root: the same name and key, issued by this root's. Certificates
    /// the new root issues are sent with the cross-signed one while nodes move over, so a node
    /// that still trusts only this root takes them through it.
    pub fn rotate(&self, cluster_id: &str, now: SystemTime) -> Result<Rotated, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(PkiError::generate("make the new CA key"))?;
        // A name of its own, so that a chain never confuses the two roots.
        let since = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let name = format!("symphony cluster {cluster_id} root {since}");
        let cert = root_params(&name, now)
            .self_signed(&key)
            .map_err(PkiError::generate("sign the new CA certificate"))?;
        let old_key = KeyPair::from_pem(&self.key_pem)
            .map_err(|error| PkiError::malformed("CA key", error))?;
        let old = Issuer::from_ca_cert_pem(&self.cert_pem, old_key)
            .map_err(|error| PkiError::malformed("CA certificate", error))?;
        let cross = root_params(&name, now)
            .signed_by(&key, &old)
            .map_err(PkiError::generate("cross-sign the new CA certificate"))?;
        Ok(Rotated {
            ca: ClusterCa {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            cross_signed_pem: cross.pem(),
        })
    }

    /// The certificates a node trusts (today: this root alone).
    pub fn bundle(&self) -> CaBundle {
        CaBundle::new(self.cert_pem.clone())
    }

    /// Issues a certificate for `identity` to the key of `request_pem`, valid from an hour
    /// before `now` for [`DEFAULT_NODE_CERT_LIFETIME`]. The request must be signed by the key
    /// it carries.
    pub fn issue(
        &self,
        request_pem: &str,
        identity: &CertIdentity,
        now: SystemTime,
    ) -> Result<IssuedCert, PkiError> {
        self.issue_valid_for(request_pem, identity, now, DEFAULT_NODE_CERT_LIFETIME)
    }

    /// Like [`ClusterCa::issue`], valid until `now + lifetime` (and from an hour before `now`).
    pub fn issue_valid_for(
        &self,
        request_pem: &str,
        identity: &CertIdentity,
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<IssuedCert, PkiError> {
        let request = read_request(request_pem)?;
        let key = KeyPair::from_pem(&self.key_pem)
            .map_err(|error| PkiError::malformed("CA key", error))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key)
            .map_err(|error| PkiError::malformed("CA certificate", error))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            format!("symphony {} {}", identity.role, identity.node_id),
        );
        name.push(DnType::OrganizationName, "symphony");
        params.distinguished_name = name;
        let uri = identity
            .uri()
            .try_into()
            .map_err(PkiError::generate("name the node in its certificate"))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Every node is both: it serves its listeners and dials its peers.
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, now, lifetime);
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&request.public_key, &issuer)
            .map_err(PkiError::generate("sign the node certificate"))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
        })
    }
}

/// Reads a certificate request, checks it is signed by the key it carries, and returns that
/// key's digest (as [`crate::NodeKey::public_key_digest`] computes it).
pub fn request_key_digest(request_pem: &str) -> Result<String, PkiError> {
    use rcgen::PublicKeyData;
    let request = read_request(request_pem)?;
    Ok(crate::bundle::hex_digest(request.public_key.der_bytes()))
}

fn read_request(request_pem: &str) -> Result<CertificateSigningRequestParams, PkiError> {
    CertificateSigningRequestParams::from_pem(request_pem).map_err(|error| match error {
        rcgen::Error::InvalidCertificationRequestSignature => PkiError::BadRequestSignature,
        other => PkiError::malformed("certificate request", other),
    })
}

/// A root CA certificate named `name`, valid from an hour before `now` for [`CA_LIFETIME`]:
/// it may sign node certificates and nothing that signs further.
fn root_params(name: &str, now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "symphony");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, now, CA_LIFETIME);
    params.serial_number = Some(random_serial());
    params
}

fn set_validity(params: &mut CertificateParams, now: SystemTime, lifetime: Duration) {
    let now = OffsetDateTime::from(now);
    params.not_before = now - crate::BACKDATE;
    params.not_after = now + lifetime;
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // Positive, as DER integers of serial numbers should be.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::identity::CertRole;
    use crate::node_key::NodeKey;
    use crate::verify::verify_peer;

    fn identity(role: CertRole, node_id: u64) -> CertIdentity {
        CertIdentity {
            cluster_id: "c0ffee".into(),
            role,
            node_id,
        }
    }

    #[test]
    fn issued_certificates_name_what_the_manager_decided() {
        let ca = ClusterCa::generate("c0ffee").unwrap();
        let key = NodeKey::generate().unwrap();
        let request = key.request("a name the requester chose").unwrap();
        let issued = ca
            .issue(&request, &identity(CertRole::Worker, 42), SystemTime::now())
            .unwrap();
        let der = crate::verify::first_der(&issued.cert_pem).unwrap();
        let got = verify_peer(&der, &ca.bundle(), "c0ffee", SystemTime::now()).unwrap();
        assert_eq!(got, identity(CertRole::Worker, 42));
    }

    #[test]
    fn a_request_asking_for_more_gets_only_the_identity() {
        // A request with a manager URI, a DNS name and CA rights: none of it is kept.
        let key = NodeKey::generate().unwrap();
        let mut params = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        params.subject_alt_names.push(SanType::URI(
            identity(CertRole::Manager, 1).uri().try_into().unwrap(),
        ));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let request = params
            .serialize_request(key.key_pair())
            .unwrap()
            .pem()
            .unwrap();
        let ca = ClusterCa::generate("c0ffee").unwrap();
        let issued = ca
            .issue(&request, &identity(CertRole::Worker, 9), SystemTime::now())
            .unwrap();
        let der = crate::verify::first_der(&issued.cert_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
        let names: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|name| name.to_string())
            .collect();
        assert_eq!(names, vec!["URI(symphony://c0ffee/worker/9)".to_string()]);
    }

    #[test]
    fn certificates_live_as_long_as_asked_backdated_an_hour() {
        let ca = ClusterCa::generate("c0ffee").unwrap();
        let key = NodeKey::generate().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let issued = ca
            .issue_valid_for(
                &key.request("n").unwrap(),
                &identity(CertRole::Worker, 4),
                now,
                Duration::from_secs(40),
            )
            .unwrap();
        let validity = crate::verify::validity_of(&issued.cert_pem).unwrap();
        assert_eq!(validity.not_before, now - crate::BACKDATE);
        assert_eq!(validity.not_after, now + Duration::from_secs(40));
        assert_eq!(validity.issued_at(), now);
        assert_eq!(
            crate::verify::public_key_digest(&issued.cert_pem).unwrap(),
            key.public_key_digest(),
            "the certificate carries the request's key"
        );
        assert_eq!(
            request_key_digest(&key.request("again").unwrap()).unwrap(),
            key.public_key_digest()
        );
        let other = NodeKey::generate().unwrap();
        assert_ne!(other.public_key_digest(), key.public_key_digest());
    }

    #[test]
    fn absurd_lifetimes_are_refused() {
        for (seconds, ok) in [
            (0, false),
            (29, false),
            (30, true),
            (90 * 24 * 3600, true),
            (5 * 365 * 24 * 3600, true),
            (5 * 365 * 24 * 3600 + 1, false),
        ] {
            let checked = check_lifetime(Duration::from_secs(seconds));
            assert_eq!(checked.is_ok(), ok, "{seconds}");
            if !ok {
                assert!(matches!(
                    checked,
                    Err(PkiError::Lifetime { asked_s, min_s: 30, .. }) if asked_s == seconds
                ));
            }
        }
    }

    #[test]
    fn garbage_and_forged_requests_are_refused() {
        let ca = ClusterCa::generate("c0ffee").unwrap();
        let who = identity(CertRole::Worker, 3);
        assert!(matches!(
            ca.issue("not a request", &who, SystemTime::now()),
            Err(PkiError::Malformed { .. })
        ));
        // A request whose signature was tampered with.
        let key = NodeKey::generate().unwrap();
        let request = key.request("x").unwrap();
        let block = x509_parser::pem::parse_x509_pem(request.as_bytes())
            .unwrap()
            .1;
        let mut der = block.contents.clone();
        let last = der.len() - 1;
        der[last] ^= 1;
        let tampered = pem_block("CERTIFICATE REQUEST", &der);
        assert!(ca.issue(&tampered, &who, SystemTime::now()).is_err());
    }

    fn pem_block(label: &str, der: &[u8]) -> String {
        let encoded = base64_encode(der);
        format!("-----BEGIN {label}-----\n{encoded}\n-----END {label}-----\n")
    }

    fn base64_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
