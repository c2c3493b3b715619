//! The `cluster` table: the cluster's identity and the secrets that admit new nodes.

use std::collections::BTreeSet;
use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use symphony_pki::ClusterCa;

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
}

impl ClusterInfo {
    /// How long a node certificate issued now is valid.
    pub fn cert_lifetime(&self) -> Duration {
        self.cert_lifetime_s.map_or(
            symphony_pki::ca::DEFAULT_NODE_CERT_LIFETIME,
            Duration::from_secs,
        )
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
    }
    changes.touch(TABLE, ROW.to_vec());
    CommandResult::Done
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
        let rotate = Command::Cluster(ClusterCommand::RotateToken {
            role: NodeRole::Worker,
            token: "new".into(),
        });
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
        let set = |seconds| Command::Cluster(ClusterCommand::SetCertLifetime { seconds });
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
    fn bootstrap_once() {
        let mut state = ClusterState::default();
        let mut changes = Changes::default();
        bootstrap(&mut state, "c1", 9);
        let again = Command::Bootstrap {
            cluster: info("c2"),
            node: super::super::tests::node(10),
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
