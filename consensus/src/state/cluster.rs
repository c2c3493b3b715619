//! The `cluster` table: the cluster's identity and the secrets that admit new nodes.

use std::io;

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
    }
    changes.touch(TABLE, ROW.to_vec());
    CommandResult::Done
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
