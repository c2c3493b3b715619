//! A peer's certificate checked against the bundle and read into the identity it proves.
//!
//! The check is by CA and URI SAN, not by host name: the certificate must be signed by a CA
//! of the bundle, be valid now, and name exactly one Symphony identity of this cluster. What
//! that identity may do is for each call to decide.

use std::time::SystemTime;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::bundle::CaBundle;
use crate::error::PkiError;
use crate::identity::{CertIdentity, SCHEME};

/// Checks `cert_der` against `bundle` at `now` and returns who it names, which must be a node
/// of `cluster_id`.
pub fn verify_peer(
    cert_der: &[u8],
    bundle: &CaBundle,
    cluster_id: &str,
    now: SystemTime,
) -> Result<CertIdentity, PkiError> {
    verify_peer_with(cert_der, &[], bundle, cluster_id, now)
}

/// Like [`verify_peer`], for a certificate presented with `intermediates` (the rest of the
/// peer's chain; see [`verify_chain_with`]).
pub fn verify_peer_with(
    cert_der: &[u8],
    intermediates: &[&[u8]],
    bundle: &CaBundle,
    cluster_id: &str,
    now: SystemTime,
) -> Result<CertIdentity, PkiError> {
    let identity = verify_chain_with(cert_der, intermediates, bundle, now)?;
    if identity.cluster_id != cluster_id {
        return Err(PkiError::WrongCluster {
            expected: cluster_id.to_string(),
            got: identity.cluster_id,
        });
    }
    Ok(identity)
}

/// Checks `cert_der` against `bundle` at `now` and returns who it names, of whatever cluster
/// (the bundle is one cluster's, so a caller that trusts the bundle learns the cluster).
pub fn verify_chain(
    cert_der: &[u8],
    bundle: &CaBundle,
    now: SystemTime,
) -> Result<CertIdentity, PkiError> {
    verify_chain_with(cert_der, &[], bundle, now)
}

/// How many presented intermediates are looked at; a chain is a leaf and at most one
/// cross-signed root, so anything longer is padding.
const MAX_INTERMEDIATES: usize = 4;

/// Like [`verify_chain`], for a certificate presented with `intermediates`. The certificate
/// must be signed by a CA of the bundle, or by one intermediate that is a CA certificate
/// signed by a CA of the bundle — during a root rotation, the new root cross-signed by the
/// old, which lets a node that trusts only the old root take certificates of the new. That
/// one step is allowed although the roots say they sign no CA (path length 0): the only CA
/// certificate a cluster root ever signs is its successor's, in `ca rotate`. No longer chain
/// is followed.
pub fn verify_chain_with(
    cert_der: &[u8],
    intermediates: &[&[u8]],
    bundle: &CaBundle,
    now: SystemTime,
) -> Result<CertIdentity, PkiError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|error| PkiError::malformed("certificate", error))?;
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        });
    let validity = cert.validity();
    if !valid_at(validity, now_s) {
        return Err(PkiError::Expired {
            not_before_s: validity.not_before.timestamp(),
            not_after_s: validity.not_after.timestamp(),
            now_s,
        });
    }
    let roots = bundle.certificates_der()?;
    let mut parsed = Vec::with_capacity(roots.len());
    for ca_der in &roots {
        let (_, ca) = X509Certificate::from_der(ca_der)
            .map_err(|error| PkiError::malformed("CA certificate", error))?;
        parsed.push(ca);
    }
    let by_root = |child: &X509Certificate<'_>| parsed.iter().any(|ca| signs(ca, child, now_s));
    let issued = by_root(&cert)
        || intermediates
            .iter()
            .take(MAX_INTERMEDIATES)
            .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, ca)| ca))
            .any(|ca| signs(&ca, &cert, now_s) && by_root(&ca));
    if !issued {
        return Err(PkiError::UnknownIssuer);
    }
    if cert.is_ca() {
        return Err(PkiError::NoIdentity {
            detail: "a CA certificate names no node".into(),
        });
    }
    identity_of(&cert)
}

/// Checks a certificate chain in PEM (the certificate first, then what it is presented with,
/// as a node keeps its own in `node.crt`) against `bundle` at `now`; with `cluster_id`, it
/// must name a node of that cluster.
pub fn verify_pem(
    chain_pem: &str,
    bundle: &CaBundle,
    cluster_id: Option<&str>,
    now: SystemTime,
) -> Result<CertIdentity, PkiError> {
    let chain = CaBundle::new(chain_pem).certificates_der()?;
    let (leaf, rest) = chain.split_first().ok_or(PkiError::EmptyBundle)?;
    let rest: Vec<&[u8]> = rest.iter().map(Vec::as_slice).collect();
    match cluster_id {
        Some(cluster_id) => verify_peer_with(leaf, &rest, bundle, cluster_id, now),
        None => verify_chain_with(leaf, &rest, bundle, now),
    }
}

/// Whether the certificate `cert_pem` (its first) was signed by the key of the CA
/// certificate `root_pem` (its first): which root a node's certificate comes from, for a
/// node deciding whether to renew onto the cluster's current root. Unchecked otherwise.
pub fn signed_by_key_of(cert_pem: &str, root_pem: &str) -> Result<bool, PkiError> {
    let cert_der = first_der(cert_pem)?;
    let root_der = first_der(root_pem)?;
    let (_, cert) = X509Certificate::from_der(&cert_der)
        .map_err(|error| PkiError::malformed("certificate", error))?;
    let (_, root) = X509Certificate::from_der(&root_der)
        .map_err(|error| PkiError::malformed("CA certificate", error))?;
    Ok(cert.verify_signature(Some(root.public_key())).is_ok())
}

/// Whether `ca` is a CA valid at `now_s` that issued `child`.
fn signs(ca: &X509Certificate<'_>, child: &X509Certificate<'_>, now_s: i64) -> bool {
    ca.is_ca()
        && valid_at(ca.validity(), now_s)
        && child.issuer() == ca.subject()
        && child.verify_signature(Some(ca.public_key())).is_ok()
}

/// Who a certificate names, unchecked: for a node reading its own certificate (which it
/// checked when it kept it) even when it has expired. Never for a peer's.
pub fn identity_of_der(cert_der: &[u8]) -> Result<CertIdentity, PkiError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|error| PkiError::malformed("certificate", error))?;
    identity_of(&cert)
}

fn identity_of(cert: &X509Certificate<'_>) -> Result<CertIdentity, PkiError> {
    let names = cert
        .subject_alternative_name()
        .map_err(|error| PkiError::malformed("certificate names", error))?
        .ok_or_else(|| PkiError::NoIdentity {
            detail: "no subject alternative names".into(),
        })?;
    let mut uris = names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) if uri.starts_with(SCHEME) => Some(*uri),
            _ => None,
        });
    let (Some(uri), None) = (uris.next(), uris.next()) else {
        return Err(PkiError::NoIdentity {
            detail: "not exactly one symphony:// name".into(),
        });
    };
    CertIdentity::from_uri(uri)
}

/// When a certificate is valid, as it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// When it was issued: its start is backdated by [`crate::BACKDATE`] (clamped to its end,
    /// for a certificate issued otherwise). Its lifetime counts from here.
    pub fn issued_at(&self) -> SystemTime {
        (self.not_before + crate::BACKDATE).min(self.not_after)
    }
}

/// The validity of the first certificate of `cert_pem`, unchecked (a node reading its own).
pub fn validity_of(cert_pem: &str) -> Result<Validity, PkiError> {
    let der = first_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|error| PkiError::malformed("certificate", error))?;
    let at = |timestamp: i64| {
        SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(u64::try_from(timestamp).unwrap_or(0))
    };
    Ok(Validity {
        not_before: at(cert.validity().not_before.timestamp()),
        not_after: at(cert.validity().not_after.timestamp()),
    })
}

/// The SHA-256 digest (hex) of the public key of the first certificate of `cert_pem`: which
/// key the certificate was issued to, comparable with [`crate::NodeKey::public_key_digest`].
pub fn public_key_digest(cert_pem: &str) -> Result<String, PkiError> {
    let der = first_der(cert_pem)?;
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|error| PkiError::malformed("certificate", error))?;
    Ok(crate::bundle::hex_digest(
        cert.public_key().subject_public_key.data.as_ref(),
    ))
}

/// How far ahead of this node's clock a certificate's start may be. Certificates are
/// backdated an hour when issued; a checker whose clock is behind the issuer's by more (a
/// manager a day off, which the clock faults test) would otherwise refuse every certificate
/// issued since. A certificate that starts in the future is no risk in itself (it is signed
/// by the CA all the same); only its end is held strictly.
pub const NOT_BEFORE_LEEWAY_S: i64 = 2 * 24 * 3600;

/// Whether `validity` holds at `now_s`, with [`NOT_BEFORE_LEEWAY_S`] on its start.
fn valid_at(validity: &x509_parser::certificate::Validity, now_s: i64) -> bool {
    validity.not_before.timestamp() <= now_s.saturating_add(NOT_BEFORE_LEEWAY_S)
        && now_s <= validity.not_after.timestamp()
}

/// The DER of the first certificate of a PEM text.
pub fn first_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    CaBundle::new(pem)
        .certificates_der()?
        .into_iter()
        .next()
        .ok_or(PkiError::EmptyBundle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::identity::CertRole;
    use crate::{ClusterCa, NodeKey};

    fn issue(ca: &ClusterCa, cluster: &str, at: SystemTime) -> Vec<u8> {
        let key = NodeKey::generate().unwrap();
        let identity = CertIdentity {
            cluster_id: cluster.into(),
            role: CertRole::Manager,
            node_id: 5,
        };
        let issued = ca.issue(&key.request("n").unwrap(), &identity, at).unwrap();
        first_der(&issued.cert_pem).unwrap()
    }

    #[test]
    fn a_certificate_of_another_ca_is_refused() {
        let ours = ClusterCa::generate("c").unwrap();
        let theirs = ClusterCa::generate("c").unwrap();
        let cert = issue(&theirs, "c", SystemTime::now());
        assert!(matches!(
            verify_peer(&cert, &ours.bundle(), "c", SystemTime::now()),
            Err(PkiError::UnknownIssuer)
        ));
        assert!(verify_peer(&cert, &theirs.bundle(), "c", SystemTime::now()).is_ok());
    }

    #[test]
    fn the_ca_itself_is_no_node() {
        let ca = ClusterCa::generate("c").unwrap();
        let der = first_der(&ca.cert_pem).unwrap();
        assert!(verify_peer(&der, &ca.bundle(), "c", SystemTime::now()).is_err());
    }

    #[test]
    fn another_cluster_and_other_times_are_refused() {
        let ca = ClusterCa::generate("c").unwrap();
        let now = SystemTime::now();
        let cert = issue(&ca, "d", now);
        assert!(matches!(
            verify_peer(&cert, &ca.bundle(), "c", now),
            Err(PkiError::WrongCluster { .. })
        ));
        let cert = issue(&ca, "c", now);
        // A checker whose clock is behind the issuer's by a day still takes it; by three days,
        // not.
        assert!(verify_peer(&cert, &ca.bundle(), "c", now - Duration::from_secs(1800)).is_ok());
        assert!(verify_peer(&cert, &ca.bundle(), "c", now - Duration::from_secs(86_400)).is_ok());
        assert!(matches!(
            verify_peer(
                &cert,
                &ca.bundle(),
                "c",
                now - Duration::from_secs(3 * 86_400)
            ),
            Err(PkiError::Expired { .. })
        ));
        assert!(matches!(
            verify_peer(
                &cert,
                &ca.bundle(),
                "c",
                now + crate::ca::DEFAULT_NODE_CERT_LIFETIME + Duration::from_secs(60)
            ),
            Err(PkiError::Expired { .. })
        ));
    }

    /// A leaf of `ca` for node 5 of cluster "c", as a node keeps it: the leaf, then the
    /// chain it is presented with.
    fn leaf_pem(ca: &ClusterCa, chain: &str) -> String {
        let key = NodeKey::generate().unwrap();
        let identity = CertIdentity {
            cluster_id: "c".into(),
            role: CertRole::Worker,
            node_id: 5,
        };
        let issued = ca
            .issue(&key.request("n").unwrap(), &identity, SystemTime::now())
            .unwrap();
        format!("{}{chain}", issued.cert_pem)
    }

    #[test]
    fn a_rotated_root_is_taken_through_its_cross_signature_by_nodes_of_the_old() {
        let now = SystemTime::now();
        let old = ClusterCa::generate("c").unwrap();
        let rotated = old.rotate("c", now).unwrap();
        let new = &rotated.ca;
        let old_only = old.bundle();
        let both = CaBundle::of_roots(&[&new.cert_pem, &old.cert_pem]);
        let new_only = new.bundle();
        assert_eq!(
            first_der(&both.issuing_root().unwrap()).unwrap(),
            first_der(&new.cert_pem).unwrap()
        );

        // Issued by the new root while nodes move over: with the cross-signed root, every
        // node takes it; alone, only nodes that trust the new root.
        let moving = leaf_pem(new, &rotated.cross_signed_pem);
        for bundle in [&old_only, &both, &new_only] {
            assert!(verify_pem(&moving, bundle, Some("c"), now).is_ok());
        }
        let bare = leaf_pem(new, "");
        assert!(matches!(
            verify_pem(&bare, &old_only, Some("c"), now),
            Err(PkiError::UnknownIssuer)
        ));
        assert!(verify_pem(&bare, &both, Some("c"), now).is_ok());
        // Issued by the old root: taken while both are trusted, refused once it is dropped.
        let before = leaf_pem(&old, "");
        assert!(verify_pem(&before, &both, Some("c"), now).is_ok());
        assert!(matches!(
            verify_pem(&before, &new_only, Some("c"), now),
            Err(PkiError::UnknownIssuer)
        ));
        // Which root a certificate comes from.
        assert!(signed_by_key_of(&moving, &new.cert_pem).unwrap());
        assert!(!signed_by_key_of(&moving, &old.cert_pem).unwrap());
        assert!(signed_by_key_of(&before, &old.cert_pem).unwrap());
        // The cross-signed root is a CA: it names no node.
        assert!(verify_pem(&rotated.cross_signed_pem, &old_only, Some("c"), now).is_err());
    }

    #[test]
    fn an_intermediate_not_signed_by_a_trusted_root_or_no_ca_lends_no_trust() {
        let now = SystemTime::now();
        let ours = ClusterCa::generate("c").unwrap();
        // Another CA's root "rotated" by itself: its cross-signature is by a root we do not
        // trust.
        let theirs = ClusterCa::generate("c").unwrap();
        let rotated = theirs.rotate("c", now).unwrap();
        let forged = leaf_pem(&rotated.ca, &rotated.cross_signed_pem);
        assert!(matches!(
            verify_pem(&forged, &ours.bundle(), Some("c"), now),
            Err(PkiError::UnknownIssuer)
        ));
        // A node certificate of ours is no intermediate: a leaf "issued" by its key is
        // refused even when presented with it.
        let node_key = NodeKey::generate().unwrap();
        let node_identity = CertIdentity {
            cluster_id: "c".into(),
            role: CertRole::Manager,
            node_id: 1,
        };
        let node_cert = ours
            .issue(&node_key.request("n").unwrap(), &node_identity, now)
            .unwrap();
        let as_ca = ClusterCa {
            cert_pem: node_cert.cert_pem.clone(),
            key_pem: node_key.pem(),
        };
        let other = NodeKey::generate().unwrap();
        let below = as_ca
            .issue(&other.request("n").unwrap(), &node_identity, now)
            .unwrap();
        let chained = format!("{}{}", below.cert_pem, node_cert.cert_pem);
        assert!(matches!(
            verify_pem(&chained, &ours.bundle(), Some("c"), now),
            Err(PkiError::UnknownIssuer)
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        let ca = ClusterCa::generate("c").unwrap();
        assert!(matches!(
            verify_peer(
                b"\x30\x03\x02\x01\x00",
                &ca.bundle(),
                "c",
                SystemTime::now()
            ),
            Err(PkiError::Malformed { .. })
        ));
        assert!(verify_peer(&[], &ca.bundle(), "c", SystemTime::now()).is_err());
    }
}
