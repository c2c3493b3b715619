//! The `cluster` table: the cluster's identity and the secrets that admit new nodes.

use std::collections::BTreeSet;
use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use symphony_pki::{CaBundle, ClusterCa};

use super::gossip_keys::{GossipKeyCommand, GossipKeyring};
use super::nodes::NodeRole;
use super::table::{Changes, Table};
use super::{CommandResult, not_initialised};
use crate::codec::{decode, encode};

/// The identity of the cluster and the secrets that admit new nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub cluster_id: String,
    pub created_at_ms: u64,
    pub manager_token: String,
    pub worker_token: String,
    /// A secret only managers hold: it proves a forwarded request comes from a manager of this
    /// cluster. Unlike the join tokens it is never shown or rotated.
    #[serde(default)]
    pub manager_secret: String,
    /// The keys gossip is sealed with ([`GossipKeyring`]).
    #[serde(default)]
    pub gossip_keys: GossipKeyring,
    /// The cluster's root CA, certificate and key: created at `init`, held only by managers
    /// (workers never receive the cluster state), used to issue every node's certificate.
    /// `None` only in a cluster made before the CA existed.
    #[serde(default)]
    pub ca: Option<ClusterCa>,
    /// How long the node certificates issued from now on are valid, in seconds (`init
    /// --cert-expiry`, `cluster update --cert-expiry`); `None`: the default
    /// ([`symphony_pki::ca::DEFAULT_NODE_CERT_LIFETIME`]).
    #[serde(default)]
    pub cert_lifetime_s: Option<u64>,
    /// The ids of the nodes `node rm` removed: every manager refuses their certificates, in
    /// the handshake and per call, and no join may take these ids again. Node ids are random
    /// 64-bit numbers drawn once per config dir, so a removed machine comes back with a fresh
    /// config dir, as a new node; its old id is never reused.
    #[serde(default)]
    pub removed_nodes: BTreeSet<u64>,
    /// A root rotation under way (`ca rotate`): `ca` is already the new root, which issues
    /// every certificate from the start; the old one is still trusted until every node holds
    /// a certificate of the new (the leader then ends the rotation).
    #[serde(default)]
    pub ca_rotation: Option<CaRotation>,
}

/// A root rotation under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaRotation {
    /// The certificate of the root being replaced (its key is dropped: it signs nothing more).
    pub old_root_pem: String,
    /// The new root's certificate signed by the old root: sent after every certificate the
    /// new root issues during the rotation, so that a node still trusting only the old root
    /// takes it.
    pub cross_signed_pem: String,
    pub started_ms: u64,
}

impl ClusterInfo {
    /// How long a node certificate issued now is valid.
    pub fn cert_lifetime(&self) -> Duration {
        self.cert_lifetime_s.map_or(
            symphony_pki::ca::DEFAULT_NODE_CERT_LIFETIME,
            Duration::from_secs,
        )
    }

    /// The CA certificates every node trusts: the current root, first, and during a
    /// rotation the old one. `None` in a cluster made before the CA existed.
    pub fn trust_bundle(&self) -> Option<CaBundle> {
        let ca = self.ca.as_ref()?;
        Some(match &self.ca_rotation {
            Some(rotation) => CaBundle::of_roots(&[&ca.cert_pem, &rotation.old_root_pem]),
            None => CaBundle::of_roots(&[&ca.cert_pem]),
        })
    }

    /// What is sent after a certificate issued now: the cross-signed new root during a
    /// rotation, nothing otherwise.
    pub fn issued_chain(&self) -> &str {
        self.ca_rotation
            .as_ref()
            .map_or("", |rotation| rotation.cross_signed_pem.as_str())
    }

    /// The digest of the root that issues certificates now (one certificate's bundle), as a
    /// node's record names the root of its certificate.
    pub fn root_digest(&self) -> Option<String> {
        root_digest_of(self.ca.as_ref()?)
    }

    /// Whether `node_id` was removed from the cluster (see [`ClusterInfo::removed_nodes`]).
    pub fn is_removed(&self, node_id: u64) -> bool {
        self.removed_nodes.contains(&node_id)
    }
}

/// The cluster table: one row, set by the bootstrap (`None` before).
pub type ClusterTable = Option<ClusterInfo>;

/// Changes to the cluster table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterCommand {
    /// Replaces a role's join token; the old one stops admitting nodes.
    RotateToken { role: NodeRole, token: String },
    /// Installs, uses or removes a gossip key.
    GossipKey(GossipKeyCommand),
    /// Sets how long node certificates issued from now on are valid; certificates issued
    /// before keep their end (each node renews its own in its time). Refused outside
    /// [`symphony_pki::ca::check_lifetime`]'s range.
    SetCertLifetime { seconds: u64 },
    /// Starts a root rotation: `ca` becomes the root that issues, the current one is kept as
    /// trusted until the rotation ends, and the join tokens are replaced by ones pinning the
    /// bundle of both. Refused while a rotation is under way, and unless the current root is
    /// the one of digest `from_root_digest` (the one `cross_signed_pem` was signed with).
    StartCaRotation {
        from_root_digest: String,
        ca: ClusterCa,
        cross_signed_pem: String,
        manager_token: String,
        worker_token: String,
        started_ms: u64,
    },
    /// Ends the rotation to the root of digest `root_digest`: the old root is trusted no more
    /// and the join tokens are replaced by ones pinning the new root alone. Refused unless
    /// that rotation is under way.
    FinishCaRotation {
        root_digest: String,
        manager_token: String,
        worker_token: String,
    },
}

/// The name of this table (its rows on disk, its change watch).
pub const TABLE: &str = "sm_cluster";
const ROW: &[u8] = b"info";

/// Sets the cluster up; refused once it is.
pub(super) fn bootstrap(
    table: &mut ClusterTable,
    cluster: &ClusterInfo,
    changes: &mut Changes,
) -> CommandResult {
    if let Some(existing) = table {
        return CommandResult::Rejected {
            reason: format!("cluster {} is already initialised", existing.cluster_id),
        };
    }
    *table = Some(cluster.clone());
    changes.touch(TABLE, ROW.to_vec());
    CommandResult::Done
}

pub(super) fn apply(
    table: &mut ClusterTable,
    command: &ClusterCommand,
    changes: &mut Changes,
) -> CommandResult {
    let Some(cluster) = table.as_mut() else {
        return not_initialised();
    };
    match command {
        ClusterCommand::RotateToken { role, token } => match role {
            NodeRole::Manager => cluster.manager_token.clone_from(token),
            NodeRole::Worker => cluster.worker_token.clone_from(token),
        },
        ClusterCommand::GossipKey(command) => {
            let result = cluster.gossip_keys.apply(command);
            if !matches!(result, CommandResult::Rejected { .. }) {
                changes.touch(TABLE, ROW.to_vec());
            }
            return result;
        }
        ClusterCommand::SetCertLifetime { seconds } => {
            // The proposer checked it; the log checks again, so no replica ever holds one
            // outside the range.
            if let Err(error) = symphony_pki::ca::check_lifetime(Duration::from_secs(*seconds)) {
                return CommandResult::Rejected {
                    reason: error.to_string(),
                };
            }
            cluster.cert_lifetime_s = Some(*seconds);
        }
        ClusterCommand::StartCaRotation {
            from_root_digest,
            ca,
            cross_signed_pem,
            manager_token,
            worker_token,
            started_ms,
        } => {
            if cluster.ca_rotation.is_some() {
                return rejected("a root rotation is already under way");
            }
            let Some(current) = cluster.ca.take() else {
                return rejected("this cluster has no CA to rotate");
            };
            if root_digest_of(&current).as_deref() != Some(from_root_digest.as_str()) {
                cluster.ca = Some(current);
                return rejected("the root changed since this rotation was asked for");
            }
            cluster.ca_rotation = Some(CaRotation {
                old_root_pem: current.cert_pem,
                cross_signed_pem: cross_signed_pem.clone(),
                started_ms: *started_ms,
            });
            cluster.ca = Some(ca.clone());
            cluster.manager_token.clone_from(manager_token);
            cluster.worker_token.clone_from(worker_token);
        }
        ClusterCommand::FinishCaRotation {
            root_digest,
            manager_token,
            worker_token,
        } => {
            if cluster.ca_rotation.is_none()
                || cluster.root_digest().as_deref() != Some(root_digest.as_str())
            {
                return rejected("no rotation to that root is under way");
            }
            cluster.ca_rotation = None;
            cluster.manager_token.clone_from(manager_token);
            cluster.worker_token.clone_from(worker_token);
        }
    }
    changes.touch(TABLE, ROW.to_vec());
    CommandResult::Done
}

fn rejected(reason: &str) -> CommandResult {
    CommandResult::Rejected {
        reason: reason.to_string(),
    }
}

/// The digest of `ca`'s root certificate alone.
fn root_digest_of(ca: &ClusterCa) -> Option<String> {
    CaBundle::of_roots(&[&ca.cert_pem]).digest().ok()
}

/// Records that `node_id` was removed: part of applying a `NodeCommand::Remove`, so the
/// removal and the refusal of its certificate are one entry of the log.
pub(super) fn deny(table: &mut ClusterTable, node_id: u64, changes: &mut Changes) {
    if let Some(cluster) = table.as_mut()
        && cluster.removed_nodes.insert(node_id)
    {
        changes.touch(TABLE, ROW.to_vec());
    }
}

impl Table for ClusterTable {
    fn name(&self) -> &'static str {
        TABLE
    }

    fn row_keys(&self) -> Vec<Vec<u8>> {
        self.iter().map(|_| ROW.to_vec()).collect()
    }

    fn encode_row(&self, _key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.as_ref().map(encode).transpose()
    }

    fn load_row(&mut self, _key: &[u8], value: &[u8]) -> io::Result<()> {
        *self = Some(decode(value)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::tests::{bootstrap, info};
    use super::super::{ClusterState, Command};
    use super::*;

    #[test]
    fn token_rotation_changes_only_its_role() {
        let mut state = ClusterState::default();
        let rotate = Command::Cluster(Box::new(ClusterCommand::RotateToken {
            role: NodeRole::Worker,
            token: "new".into(),
        }));
        assert!(matches!(
            state.apply(&rotate, &mut Changes::default()),
            CommandResult::Rejected { .. }
        ));
        bootstrap(&mut state, "c", 1);
        assert_eq!(
            state.apply(&rotate, &mut Changes::default()),
            CommandResult::Done
        );
        let cluster = state.cluster.as_ref().unwrap();
        assert_eq!(
            (
                cluster.worker_token.as_str(),
                cluster.manager_token.as_str()
            ),
            ("new", "m")
        );
    }

    #[test]
    fn the_certificate_lifetime_is_set_within_its_range() {
        let mut state = ClusterState::default();
        bootstrap(&mut state, "c", 1);
        let cluster = |state: &ClusterState| state.cluster.clone().unwrap();
        assert_eq!(
            cluster(&state).cert_lifetime(),
            symphony_pki::ca::DEFAULT_NODE_CERT_LIFETIME
        );
        let set = |seconds| Command::Cluster(Box::new(ClusterCommand::SetCertLifetime { seconds }));
        let mut changes = Changes::default();
        assert!(matches!(
            state.apply(&set(1), &mut changes),
            CommandResult::Rejected { .. }
        ));
        assert!(changes.is_empty());
        assert_eq!(state.apply(&set(45), &mut changes), CommandResult::Done);
        assert!(!changes.is_empty());
        assert_eq!(cluster(&state).cert_lifetime(), Duration::from_secs(45));
    }

    #[test]
    fn a_root_rotation_starts_from_the_current_root_once_and_ends_on_its_new_root() {
        let mut state = ClusterState::default();
        bootstrap(&mut state, "c", 1);
        let old = symphony_pki::ClusterCa::generate("c").unwrap();
        state.cluster.as_mut().unwrap().ca = Some(old.clone());
        let old_digest = state.cluster.as_ref().unwrap().root_digest().unwrap();
        let rotated = old.rotate("c", std::time::SystemTime::now()).unwrap();
        let start = |from: &str| {
            Command::Cluster(Box::new(ClusterCommand::StartCaRotation {
                from_root_digest: from.to_string(),
                ca: rotated.ca.clone(),
                cross_signed_pem: rotated.cross_signed_pem.clone(),
                manager_token: "m2".into(),
                worker_token: "w2".into(),
                started_ms: 5,
            }))
        };
        let finish = |root: &str| {
            Command::Cluster(Box::new(ClusterCommand::FinishCaRotation {
                root_digest: root.to_string(),
                manager_token: "m3".into(),
                worker_token: "w3".into(),
            }))
        };
        let mut changes = Changes::default();
        // Asked for from another root: refused, nothing changes.
        assert!(matches!(
            state.apply(&start("beef"), &mut changes),
            CommandResult::Rejected { .. }
        ));
        assert!(changes.is_empty());
        assert_eq!(state.cluster.as_ref().unwrap().ca.as_ref(), Some(&old));
        assert!(matches!(
            state.apply(&finish(&old_digest), &mut changes),
            CommandResult::Rejected { .. }
        ));

        assert_eq!(
            state.apply(&start(&old_digest), &mut changes),
            CommandResult::Done
        );
        let cluster = state.cluster.clone().unwrap();
        let new_digest = cluster.root_digest().unwrap();
        assert_ne!(new_digest, old_digest);
        assert_eq!(cluster.ca.as_ref(), Some(&rotated.ca));
        assert_eq!(cluster.issued_chain(), rotated.cross_signed_pem);
        assert_eq!(
            cluster
                .trust_bundle()
                .unwrap()
                .certificates_der()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            (
                cluster.manager_token.as_str(),
                cluster.worker_token.as_str()
            ),
            ("m2", "w2")
        );
        // Once under way, no second one.
        assert!(matches!(
            state.apply(&start(&new_digest), &mut changes),
            CommandResult::Rejected { .. }
        ));
        // Only the rotation to this root ends it.
        assert!(matches!(
            state.apply(&finish(&old_digest), &mut changes),
            CommandResult::Rejected { .. }
        ));
        assert_eq!(
            state.apply(&finish(&new_digest), &mut changes),
            CommandResult::Done
        );
        let cluster = state.cluster.clone().unwrap();
        assert!(cluster.ca_rotation.is_none());
        assert_eq!(cluster.issued_chain(), "");
        assert_eq!(
            cluster.trust_bundle().unwrap(),
            symphony_pki::CaBundle::of_roots(&[&rotated.ca.cert_pem])
        );
        assert_eq!(
            (
                cluster.manager_token.as_str(),
                cluster.worker_token.as_str()
            ),
            ("m3", "w3")
        );
        assert!(matches!(
            state.apply(&finish(&new_digest), &mut changes),
            CommandResult::Rejected { .. }
        ));
    }

    #[test]
    fn bootstrap_once() {
        let mut state = ClusterState::default();
        let mut changes = Changes::default();
        bootstrap(&mut state, "c1", 9);
        let again = Command::Bootstrap {
            cluster: Box::new(info("c2")),
            node: Box::new(super::super::tests::node(10)),
        };
        assert!(matches!(
            state.apply(&again, &mut changes),
            CommandResult::Rejected { .. }
        ));
        assert!(changes.is_empty(), "a refused bootstrap touches nothing");
        assert_eq!(state.cluster.as_ref().unwrap().cluster_id, "c1");
        assert_eq!(state.nodes.len(), 1);
    }
}
