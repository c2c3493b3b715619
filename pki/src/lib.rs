//! Symphony's PKI: pure code, no sockets, used by managers and workers alike.
//!
//! Module map:
//! - [`identity`]: who a certificate names — cluster, role, node id — and the URI SAN that
//!   carries it (`symphony://<cluster>/<role>/<node id>`);
//! - [`ca`]: the cluster's root CA (ECDSA P-256), created at `init`, kept in the replicated
//!   cluster state, and issuing node certificates from certificate requests;
//! - [`node_key`]: a node's own key, generated on the node and never sent anywhere, and the
//!   certificate request made with it;
//! - [`bundle`]: the CA certificates a node trusts and their digest, which join tokens pin;
//! - [`verify`]: a peer's certificate checked against the bundle and read into an identity;
//! - [`token`]: join tokens, `SYMTKN-1-<role>-<CA digest>-<secret>`, and the constant-time
//!   comparison of their secrets;
//! - [`error`]: what goes wrong, typed.

pub mod bundle;
pub mod ca;
pub mod error;
pub mod identity;
pub mod node_key;
pub mod token;
pub mod verify;

pub use bundle::CaBundle;
pub use ca::{ClusterCa, IssuedCert};
pub use error::PkiError;
pub use identity::{CertIdentity, CertRole};
pub use node_key::NodeKey;
pub use token::{JoinToken, TokenError, secrets_equal};
pub use verify::{Validity, verify_peer};

/// How long a certificate is backdated, so that a peer whose clock is a little behind the
/// issuer's accepts it at once.
pub const BACKDATE: std::time::Duration = std::time::Duration::from_secs(3600);
