//! A node's own key: generated on the node (ECDSA P-256), kept in its config dir, never sent
//! anywhere; what travels is a certificate request signed with it.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use crate::error::PkiError;

/// A node's private key.
pub struct NodeKey {
    key: KeyPair,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").finish_non_exhaustive()
    }
}

impl NodeKey {
    pub fn generate() -> Result<NodeKey, PkiError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(PkiError::generate("make a node key"))?;
        Ok(NodeKey { key })
    }

    /// Reads a key written by [`NodeKey::pem`].
    pub fn from_pem(pem: &str) -> Result<NodeKey, PkiError> {
        let key = KeyPair::from_pem(pem).map_err(|error| PkiError::malformed("node key", error))?;
        Ok(NodeKey { key })
    }

    /// The key in PKCS#8 PEM, for the node's own disk only.
    pub fn pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// The key in PKCS#8 DER (what a TLS stack takes).
    pub fn der(&self) -> Vec<u8> {
        self.key.serialize_der()
    }

    /// The SHA-256 digest (hex) of this key's public half: what a certificate issued to it, or
    /// a request made with it, shows ([`crate::verify::public_key_digest`],
    /// [`crate::ca::request_key_digest`]).
    pub fn public_key_digest(&self) -> String {
        crate::bundle::hex_digest(self.key.public_key_raw())
    }

    /// A certificate request for this key. The common name is informational: the issuing
    /// manager ignores it.
    pub fn request(&self, common_name: &str) -> Result<String, PkiError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params
            .serialize_request(&self.key)
            .and_then(|request| request.pem())
            .map_err(PkiError::generate("make a certificate request"))
    }

    #[cfg(test)]
    pub(crate) fn key_pair(&self) -> &KeyPair {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_round_trip_through_pem() {
        let key = NodeKey::generate().unwrap();
        let again = NodeKey::from_pem(&key.pem()).unwrap();
        assert_eq!(key.der(), again.der());
        assert!(
            key.request("n")
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE REQUEST-----")
        );
        assert!(matches!(
            NodeKey::from_pem("garbage"),
            Err(PkiError::Malformed { .. })
        ));
    }
}
