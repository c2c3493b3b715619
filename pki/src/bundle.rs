//! The CA certificates a node trusts, and their digest.
//!
//! The digest is SHA-256 over the DER of every certificate of the bundle in order, as 64
//! lowercase hex digits. A join token carries it, so a joining node can tell the bundle a
//! node hands it is this cluster's before it trusts that node or sends it anything secret.

use serde::{Deserialize, Serialize};
use x509_parser::pem::Pem;

use crate::error::PkiError;

/// CA certificates in PEM, one after another.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaBundle {
    pub pem: String,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("digest", &self.digest().ok())
            .finish()
    }
}

impl CaBundle {
    pub fn new(pem: impl Into<String>) -> CaBundle {
        CaBundle { pem: pem.into() }
    }

    /// The bundle of `roots` (PEM each), in order: the first is the root that issues
    /// certificates now, the others are still trusted (during a root rotation, the old root).
    pub fn of_roots(roots: &[&str]) -> CaBundle {
        let mut pem = String::new();
        for root in roots {
            pem.push_str(root.trim_end());
            pem.push('\n');
        }
        CaBundle { pem }
    }

    /// The bundle of one certificate, from its DER.
    pub fn of_der(der: &[u8]) -> CaBundle {
        CaBundle { pem: pem_of(der) }
    }

    /// The first certificate of the bundle (PEM): the root that issues certificates now.
    pub fn issuing_root(&self) -> Result<String, PkiError> {
        let der = self
            .certificates_der()?
            .into_iter()
            .next()
            .ok_or(PkiError::EmptyBundle)?;
        Ok(pem_of(&der))
    }

    /// The DER of each certificate, in order; refused if any block is no certificate, or if
    /// there is none.
    pub fn certificates_der(&self) -> Result<Vec<Vec<u8>>, PkiError> {
        let mut certificates = Vec::new();
        for block in Pem::iter_from_buffer(self.pem.as_bytes()) {
            let block = block.map_err(|error| PkiError::malformed("CA bundle", error))?;
            if block.label != "CERTIFICATE" {
                return Err(PkiError::malformed(
                    "CA bundle",
                    format!("a {} block where a certificate belongs", block.label),
                ));
            }
            block
                .parse_x509()
                .map_err(|error| PkiError::malformed("CA bundle", error))?;
            certificates.push(block.contents);
        }
        if certificates.is_empty() {
            return Err(PkiError::EmptyBundle);
        }
        Ok(certificates)
    }

    /// The digest a join token pins.
    pub fn digest(&self) -> Result<String, PkiError> {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        for der in self.certificates_der()? {
            context.update(&der);
        }
        Ok(hex(context.finish().as_ref()))
    }

    /// Whether this bundle's digest is `expected` (compared in constant time; a token's digest
    /// is no secret, but nothing is lost by it).
    pub fn matches_digest(&self, expected: &str) -> Result<bool, PkiError> {
        Ok(crate::token::secrets_equal(
            self.digest()?.as_bytes(),
            expected.to_ascii_lowercase().as_bytes(),
        ))
    }
}

/// A certificate's DER as PEM.
fn pem_of(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// SHA-256 of `bytes`, as lowercase hex.
pub(crate) fn hex_digest(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ClusterCa;

    #[test]
    fn digest_is_stable_and_differs_between_cas() {
        let a = ClusterCa::generate("c1").unwrap();
        let b = ClusterCa::generate("c1").unwrap();
        let digest = a.bundle().digest().unwrap();
        assert_eq!(digest.len(), 64);
        assert_eq!(digest, a.bundle().digest().unwrap());
        assert_ne!(digest, b.bundle().digest().unwrap());
        assert!(a.bundle().matches_digest(&digest).unwrap());
        assert!(a.bundle().matches_digest(&digest.to_uppercase()).unwrap());
        assert!(!b.bundle().matches_digest(&digest).unwrap());
    }

    #[test]
    fn garbage_bundles_are_refused() {
        assert!(matches!(
            CaBundle::new("").digest(),
            Err(PkiError::EmptyBundle)
        ));
        assert!(matches!(
            CaBundle::new("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .digest(),
            Err(PkiError::Malformed { .. })
        ));
        let key = crate::NodeKey::generate().unwrap();
        assert!(matches!(
            CaBundle::new(key.pem()).digest(),
            Err(PkiError::Malformed { .. })
        ));
    }
}
