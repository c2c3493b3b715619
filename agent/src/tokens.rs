//! Cluster ids, join tokens and secrets, from the operating system's CSPRNG (through `rand`'s
//! `ThreadRng`, a ChaCha generator seeded from the OS).
//!
//! A token reads `SYMTKN-1-<role>-<CA digest>-<64 hex digits>` ([`symphony_pki::JoinToken`]):
//! the role tells the joining node whether it will serve Raft, the digest pins the cluster's
//! CA (the joiner checks the CA bundle against it before it sends anything secret), and the
//! 256 random bits are the secret.

use rand::RngCore;
use symphony_consensus::{ClusterInfo, KeySecret, NodeRole};
use symphony_ctl::proto::{CtlError, ErrorCode};
use symphony_pki::{CaBundle, CertRole, JoinToken};

/// A new cluster id: 128 random bits as 32 hex digits.
pub fn cluster_id() -> String {
    random_hex(16)
}

/// A new join token for `role`, pinning the CA whose bundle has `ca_digest`.
pub fn join_token(ca_digest: &str, role: NodeRole) -> String {
    JoinToken::generate(cert_role(role), ca_digest).to_string()
}

/// A new join token for `role` of `cluster`, pinning the CA bundle its nodes trust (and
/// hand a joiner).
pub fn join_token_for(cluster: &ClusterInfo, role: NodeRole) -> Result<String, CtlError> {
    let bundle = cluster.trust_bundle().ok_or_else(no_ca)?;
    join_token_pinning(&bundle, role)
}

/// A new join token for `role`, pinning `bundle`.
pub fn join_token_pinning(bundle: &CaBundle, role: NodeRole) -> Result<String, CtlError> {
    let digest = bundle
        .digest()
        .map_err(|error| crate::errors::internal(format!("cannot read the cluster CA: {error}")))?;
    Ok(join_token(&digest, role))
}

/// The error of a cluster made before it had a CA.
pub fn no_ca() -> CtlError {
    CtlError::new(
        ErrorCode::Internal,
        "this cluster has no CA (it was made by an older version); tokens that pin a CA cannot be made",
    )
}

/// Reads a token given on a command line; a malformed one is an invalid token.
pub fn parse(token: &str) -> Result<JoinToken, CtlError> {
    JoinToken::parse(token).map_err(|error| {
        CtlError::new(
            ErrorCode::InvalidToken,
            format!("that is not a join token: {error}; get one with `symphony-ctl token show worker|manager` on a manager"),
        )
    })
}

/// The PKI's name for a role.
pub fn cert_role(role: NodeRole) -> CertRole {
    match role {
        NodeRole::Manager => CertRole::Manager,
        NodeRole::Worker => CertRole::Worker,
    }
}

/// A new secret shared by the managers: 256 random bits as 64 hex digits.
pub fn manager_secret() -> String {
    secret()
}

/// A new secret of one node (a worker's): 256 random bits as 64 hex digits.
pub fn secret() -> String {
    random_hex(32)
}

/// A new gossip key from the operating system's random number generator.
pub fn gossip_key() -> Result<KeySecret, CtlError> {
    symphony_gossip::GossipKey::generate()
        .map(|key| KeySecret(*key.expose()))
        .map_err(|error| crate::errors::internal(format!("cannot make a gossip key: {error}")))
}

/// Whether `token` reads as a worker token. Only the leader decides whether it is valid;
/// the joining node needs the role to know whether it will be a manager (and must serve
/// Raft) before it asks.
pub fn is_worker_token(token: &str) -> bool {
    JoinToken::parse(token).is_ok_and(|token| token.role == CertRole::Worker)
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether `secret` is this node's own secret — a worker's node secret, or a manager's shared
/// manager secret — which only the node and the cluster's managers hold: how a manager proves
/// itself when it asks a node for its task logs or its diagnostics.
pub fn is_own_secret(state: &crate::node::NodeState, secret: &str) -> bool {
    let expected = match &state.worker {
        Some(worker) => worker.node_secret.clone(),
        None => match state.cluster() {
            Some(cluster) => cluster.manager_secret,
            None => return false,
        },
    };
    !expected.is_empty() && constant_time_eq(expected.as_bytes(), secret.as_bytes())
}

/// Compares secrets in time independent of where they differ, so response times do not leak
/// how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    symphony_pki::secrets_equal(a, b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_carry_role_and_ca_digest_and_differ() {
        let digest = "0f".repeat(32);
        let worker = join_token(&digest, NodeRole::Worker);
        let manager = join_token(&digest, NodeRole::Manager);
        assert!(worker.starts_with(&format!("SYMTKN-1-W-{digest}-")));
        assert!(manager.starts_with(&format!("SYMTKN-1-M-{digest}-")));
        assert!(is_worker_token(&worker));
        assert!(!is_worker_token(&manager));
        assert!(!is_worker_token("garbage"));
        assert_ne!(worker, join_token(&digest, NodeRole::Worker));
        assert_eq!(parse(&worker).unwrap().ca_digest, digest);
        assert_eq!(parse("garbage").unwrap_err().code, ErrorCode::InvalidToken);
    }
}
