//! Target `cert`: what a peer presents about its certificates, read as a node reads it. The
//! first byte picks what the rest is:
//! - `0`: a certificate (DER), as a TLS handshake hands it to [`verify_peer`] (the fixture's
//!   bundle, at the fixture's time);
//! - `1`: a CA bundle (PEM), as a joining node fetches it (`CaBundle`) and checks its digest
//!   against the token's; it is then used to check the fixture's node certificate;
//! - `2`: a certificate chain (PEM: the certificate, then what it is presented with, as a
//!   root rotation's cross-signed root) in a join's reply, as `keep_certificate` reads and
//!   checks it;
//! - `3`: a URI SAN, as [`CertIdentity::from_uri`] reads the identity in a certificate.
//!
//! Checked: a bundle matches its own digest (in either case); whatever bundle a peer hands
//! over, the fixture's certificate names its own node or nothing; an identity read from a URI
//! names a node (id not 0) and is written back as the same URI.

use symphony_pki::{CaBundle, CertIdentity, verify, verify_peer};

use crate::fixture;

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let pki = fixture::pki();
    match mode % 4 {
        0 => {
            if let Ok(identity) =
                verify_peer(rest, &pki.ca.bundle(), fixture::CLUSTER_ID, fixture::now())
            {
                assert_eq!(identity.cluster_id, fixture::CLUSTER_ID);
            }
        }
        1 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let bundle = CaBundle::new(text);
            if let Ok(digest) = bundle.digest() {
                assert_eq!(bundle.matches_digest(&digest).ok(), Some(true));
                assert_eq!(
                    bundle.matches_digest(&digest.to_uppercase()).ok(),
                    Some(true)
                );
            }
            let der = verify::first_der(&pki.node_cert_pem).expect("the fixture's certificate");
            if let Ok(identity) = verify_peer(&der, &bundle, fixture::CLUSTER_ID, fixture::now()) {
                assert_eq!(identity, fixture::node_identity());
            }
        }
        2 => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(identity) = verify::verify_pem(
                text,
                &pki.ca.bundle(),
                Some(fixture::CLUSTER_ID),
                fixture::now(),
            ) {
                assert_eq!(identity.cluster_id, fixture::CLUSTER_ID);
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(identity) = CertIdentity::from_uri(text) {
                assert_ne!(identity.node_id, 0);
                assert_eq!(CertIdentity::from_uri(&identity.uri()).ok(), Some(identity));
            }
        }
    }
}
