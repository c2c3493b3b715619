//! Join tokens: `SYMTKN-1-<role>-<CA digest>-<secret>`.
//!
//! - `role` is `M` or `W`: the joining node needs it to know whether it will serve Raft
//!   before it asks (the leader decides by the secret alone);
//! - the CA digest ([`crate::CaBundle::digest`], 64 hex digits) pins the cluster's CA: a
//!   joining node fetches the bundle from the node it was pointed at and stops unless the
//!   digest matches, before it sends anything secret;
//! - the secret is 256 random bits as 64 hex digits; only it admits, and it is compared in
//!   constant time.

use std::fmt;

use rand::RngCore;
use subtle::ConstantTimeEq;

use crate::bundle::hex;
use crate::identity::CertRole;

const PREFIX: &str = "SYMTKN-1-";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub role: CertRole,
    /// The digest of the CA bundle, lowercase hex.
    pub ca_digest: String,
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("role", &self.role)
            .field("ca_digest", &self.ca_digest)
            .finish_non_exhaustive()
    }
}

/// Why a token does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a join token starts with SYMTKN-1-")]
    Prefix,
    #[error("a join token has four parts after SYMTKN-1: role, CA digest, secret")]
    Shape,
    #[error("a join token's role is M (manager) or W (worker)")]
    Role,
    #[error("a join token's CA digest is 64 hex digits")]
    Digest,
    #[error("a join token's secret is 64 hex digits")]
    Secret,
}

impl JoinToken {
    /// A new token for `role` pinning the CA whose bundle has `ca_digest`.
    pub fn generate(role: CertRole, ca_digest: &str) -> JoinToken {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        JoinToken {
            role,
            ca_digest: ca_digest.to_ascii_lowercase(),
            secret: hex(&secret),
        }
    }

    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        let rest = text.trim().strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
        let mut parts = rest.split('-');
        let (Some(role), Some(digest), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Shape);
        };
        let role = match role {
            "M" => CertRole::Manager,
            "W" => CertRole::Worker,
            _ => return Err(TokenError::Role),
        };
        let hex64 = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit());
        if !hex64(digest) {
            return Err(TokenError::Digest);
        }
        if !hex64(secret) {
            return Err(TokenError::Secret);
        }
        Ok(JoinToken {
            role,
            ca_digest: digest.to_ascii_lowercase(),
            secret: secret.to_ascii_lowercase(),
        })
    }

    /// Whether `other` carries the same secret and role, in time independent of where they
    /// differ.
    pub fn admits(&self, other: &JoinToken) -> bool {
        self.role == other.role && secrets_equal(self.secret.as_bytes(), other.secret.as_bytes())
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = match self.role {
            CertRole::Manager => "M",
            CertRole::Worker => "W",
        };
        write!(f, "{PREFIX}{role}-{}-{}", self.ca_digest, self.secret)
    }
}

/// Compares secrets in constant time (for equal lengths; lengths are not secret).
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const DIGEST: &str = "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12";

    #[test]
    fn tokens_round_trip_and_differ() {
        let token = JoinToken::generate(CertRole::Worker, DIGEST);
        let text = token.to_string();
        assert!(text.starts_with(&format!("SYMTKN-1-W-{DIGEST}-")));
        assert_eq!(JoinToken::parse(&text).unwrap(), token);
        let other = JoinToken::generate(CertRole::Worker, DIGEST);
        assert_ne!(token.secret, other.secret);
        assert!(token.admits(&JoinToken::parse(&text).unwrap()));
        assert!(!token.admits(&other));
        let mut as_manager = token.clone();
        as_manager.role = CertRole::Manager;
        assert!(!token.admits(&as_manager));
    }

    #[test]
    fn malformed_tokens_say_why() {
        let secret = "cd".repeat(32);
        assert_eq!(JoinToken::parse("x"), Err(TokenError::Prefix));
        assert_eq!(JoinToken::parse("SYMTKN-1-W-abc"), Err(TokenError::Shape));
        assert_eq!(
            JoinToken::parse(&format!("SYMTKN-1-X-{DIGEST}-{secret}")),
            Err(TokenError::Role)
        );
        assert_eq!(
            JoinToken::parse(&format!("SYMTKN-1-W-{}-{secret}", &DIGEST[1..])),
            Err(TokenError::Digest)
        );
        assert_eq!(
            JoinToken::parse(&format!("SYMTKN-1-W-{DIGEST}-{}", &secret[2..])),
            Err(TokenError::Secret)
        );
        // The old format (role, cluster prefix, secret) is refused, not misread.
        assert_eq!(
            JoinToken::parse(&format!("SYMTKN-1-W-0123abcd-{secret}")),
            Err(TokenError::Digest)
        );
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(secrets_equal(b"abc", b"abc"));
        assert!(!secrets_equal(b"abc", b"abd"));
        assert!(!secrets_equal(b"abc", b"ab"));
        assert!(!secrets_equal(b"", b"x"));
    }
}
