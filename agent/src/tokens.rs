//! Cluster ids and join tokens, from the operating system's CSPRNG (through `rand`'s
//! `ThreadRng`, a ChaCha generator seeded from the OS).
//!
//! A token reads `SYMTKN-1-<role>-<cluster id prefix>-<64 hex digits>`: the prefix lets an
//! operator see which cluster and role a token belongs to; the 256 random bits are the secret.

use rand::RngCore;
use symphony_consensus::{KeySecret, NodeRole};
use symphony_ctl::proto::CtlError;

/// A new cluster id: 128 random bits as 32 hex digits.
pub fn cluster_id() -> String {
    random_hex(16)
}

/// A new join token for `role` in the cluster `cluster_id`.
pub fn join_token(cluster_id: &str, role: NodeRole) -> String {
    let role = match role {
        NodeRole::Manager => "M",
        NodeRole::Worker => "W",
    };
    let prefix: String = cluster_id.chars().take(8).collect();
    format!("SYMTKN-1-{role}-{prefix}-{}", random_hex(32))
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
    token.starts_with("SYMTKN-1-W-")
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Compares secrets in time independent of where they differ, so response times do not leak
/// how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn tokens_carry_role_and_cluster_and_differ() {
        let id = cluster_id();
        assert_eq!(id.len(), 32);
        let worker = join_token(&id, NodeRole::Worker);
        let manager = join_token(&id, NodeRole::Manager);
        assert!(worker.starts_with(&format!("SYMTKN-1-W-{}-", &id[..8])));
        assert!(manager.starts_with(&format!("SYMTKN-1-M-{}-", &id[..8])));
        assert!(is_worker_token(&worker));
        assert!(!is_worker_token(&manager));
        assert!(!is_worker_token("garbage"));
        assert_ne!(worker, join_token(&id, NodeRole::Worker));
        let secret = worker.rsplit('-').next().unwrap();
        assert_eq!(secret.len(), 64);
        assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
