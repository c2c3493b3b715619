//! The `nodes` table: every node of the cluster, manager or worker.
//!
//! Every change to a record is a command applied here as a merge into the record the log has
//! built, never a whole record read from a replica and proposed back: two changes proposed at
//! once (a label added while the leader marks the node down) both take effect.

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

use super::CommandResult;
use super::table::{Changes, Table, key_u64, u64_key};
use crate::codec::{decode, encode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    Manager,
    Worker,
}

/// What the leader last decided about a node's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Ready,
    Down,
    Left,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Ready => "ready",
            NodeStatus::Down => "down",
            NodeStatus::Left => "left",
        }
    }
}

/// Whether the scheduler may place work on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    Active,
    Pause,
    Drain,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpus: u32,
    pub memory_bytes: u64,
    /// The version of the node's Docker engine, when one answered as the node started (or
    /// joined): only then does it take docker tasks.
    #[serde(default)]
    pub docker: Option<String>,
}

/// One node of the cluster, manager or worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: u64,
    /// Set for managers: their id in the Raft group.
    pub raft_node_id: Option<u64>,
    pub role: NodeRole,
    pub hostname: String,
    pub remote_addr: String,
    pub raft_addr: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub availability: Availability,
    pub status: NodeStatus,
    pub resources: Resources,
    pub agent_version: String,
    pub joined_at_ms: u64,
    pub status_changed_at_ms: u64,
    /// A manager an operator demoted: the leader does not promote it back by itself.
    #[serde(default)]
    pub demoted: bool,
    /// Where the node gossips (UDP), as it told the cluster when it joined.
    #[serde(default)]
    pub gossip_addr: Option<String>,
    /// A worker's own secret, handed out when it joined: it proves a later session or leave
    /// notice comes from that worker. Managers prove themselves with the manager secret.
    #[serde(default)]
    pub node_secret: Option<String>,
    /// The certificate last issued to the node, as the issuing manager recorded it; `None`
    /// for a node admitted before certificates were recorded.
    #[serde(default)]
    pub certificate: Option<NodeCertificate>,
}

/// What the cluster remembers of a certificate it issued: which key it was for (a node that
/// joins again under this id must prove it holds that key), when it ends, and which root
/// signed it (what a CA rotation will count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertificate {
    /// SHA-256 (hex) of the certificate's public key.
    pub key_digest: String,
    /// Its end, in milliseconds since the epoch.
    pub not_after_ms: u64,
    /// The digest of the CA bundle that issued it (as join tokens pin it).
    pub root_digest: String,
}

/// What a joining node reports about itself, and what the leader hands it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeJoin {
    pub node_id: u64,
    pub raft_node_id: Option<u64>,
    pub role: NodeRole,
    pub hostname: String,
    pub remote_addr: String,
    pub raft_addr: Option<String>,
    pub gossip_addr: Option<String>,
    pub resources: Resources,
    pub agent_version: String,
    /// Labels the node reports; added to those its record has.
    pub labels: BTreeMap<String, String>,
    /// A worker's secret, new at every join.
    pub node_secret: Option<String>,
    /// The certificate the leader issued with this join, if the join asked for one. Boxed:
    /// rarely read, and it would make every `NodeCommand` as large as a join.
    #[serde(default)]
    pub certificate: Option<Box<NodeCertificate>>,
}

/// Changes to the nodes table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeCommand {
    /// A node joins, or joins again: a record is created, or the one it had is merged with what
    /// it reports (its labels are added; availability, join time and demotion are kept), and it
    /// is `ready`. Refused when the node id belongs to another node: a worker's id held by a
    /// manager, or a manager's by a node of another Raft id that has not left (a copied
    /// config dir clones its identity).
    Join { node: NodeJoin, at_ms: u64 },
    /// The leader's liveness decision, or a leave. A node that left stays `left`: only a new
    /// join brings it back.
    SetStatus {
        node_id: u64,
        status: NodeStatus,
        at_ms: u64,
    },
    /// Changes availability and labels in one step.
    Update {
        node_id: u64,
        availability: Option<Availability>,
        label_add: BTreeMap<String, String>,
        label_rm: Vec<String>,
    },
    /// An operator demoted (or promoted) a manager.
    SetDemoted { node_id: u64, demoted: bool },
    /// A node reports what it has, as it found it at its (re)start: its resources (CPUs,
    /// memory, whether a Docker engine answers) and its agent's version replace those recorded.
    SetResources {
        node_id: u64,
        resources: Resources,
        agent_version: String,
    },
    /// Forgets a node, and denies its id for good (`ClusterInfo::removed_nodes`).
    Remove { node_id: u64 },
    /// A manager issued the node a new certificate (a renewal): recorded in place of the one
    /// before.
    SetCertificate {
        node_id: u64,
        certificate: NodeCertificate,
    },
}

/// The name of this table (its rows on disk, its change watch).
pub const TABLE: &str = "sm_nodes";

/// The nodes table: read as a map; changed only by its commands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeTable(BTreeMap<u64, NodeRecord>);

impl std::ops::Deref for NodeTable {
    type Target = BTreeMap<u64, NodeRecord>;
    fn deref(&self) -> &BTreeMap<u64, NodeRecord> {
        &self.0
    }
}

impl NodeTable {
    /// Puts a whole record in place, outside the log: only for offline tools that build a
    /// state from scratch (`snapshot restore`, `recover --force-new-cluster`) and for the
    /// bootstrap.
    pub fn seed(&mut self, record: NodeRecord) {
        self.0.insert(record.node_id, record);
    }

    pub(super) fn bootstrap(&mut self, node: &NodeRecord, changes: &mut Changes) {
        self.0.insert(node.node_id, node.clone());
        changes.touch(TABLE, u64_key(node.node_id));
    }

    pub(super) fn apply(&mut self, command: &NodeCommand, changes: &mut Changes) -> CommandResult {
        match command {
            NodeCommand::Join { node, at_ms } => {
                if let Some(refusal) = self.clash(node) {
                    return refusal;
                }
                let record = match self.0.remove(&node.node_id) {
                    Some(existing) => merge_join(existing, node, *at_ms),
                    None => new_record(node, *at_ms),
                };
                self.0.insert(node.node_id, record);
                changes.touch(TABLE, u64_key(node.node_id));
                CommandResult::Done
            }
            NodeCommand::SetStatus {
                node_id,
                status,
                at_ms,
            } => {
                let Some(node) = self.0.get_mut(node_id) else {
                    return no_such_node(*node_id);
                };
                if node.status == *status {
                    return CommandResult::Done;
                }
                if node.status == NodeStatus::Left {
                    return CommandResult::Rejected {
                        reason: format!("node {node_id} has left the cluster"),
                    };
                }
                node.status = *status;
                node.status_changed_at_ms = *at_ms;
                changes.touch(TABLE, u64_key(*node_id));
                CommandResult::Done
            }
            NodeCommand::Update {
                node_id,
                availability,
                label_add,
                label_rm,
            } => {
                let Some(node) = self.0.get_mut(node_id) else {
                    return no_such_node(*node_id);
                };
                if let Some(availability) = availability {
                    node.availability = *availability;
                }
                for key in label_rm {
                    node.labels.remove(key);
                }
                node.labels.extend(label_add.clone());
                changes.touch(TABLE, u64_key(*node_id));
                CommandResult::Done
            }
            NodeCommand::SetDemoted { node_id, demoted } => {
                let Some(node) = self.0.get_mut(node_id) else {
                    return no_such_node(*node_id);
                };
                if node.demoted != *demoted {
                    node.demoted = *demoted;
                    changes.touch(TABLE, u64_key(*node_id));
                }
                CommandResult::Done
            }
            NodeCommand::SetResources {
                node_id,
                resources,
                agent_version,
            } => {
                let Some(node) = self.0.get_mut(node_id) else {
                    return no_such_node(*node_id);
                };
                if node.resources != *resources || node.agent_version != *agent_version {
                    node.resources = resources.clone();
                    node.agent_version = agent_version.clone();
                    changes.touch(TABLE, u64_key(*node_id));
                }
                CommandResult::Done
            }
            NodeCommand::SetCertificate {
                node_id,
                certificate,
            } => {
                let Some(node) = self.0.get_mut(node_id) else {
                    return no_such_node(*node_id);
                };
                if node.certificate.as_ref() != Some(certificate) {
                    node.certificate = Some(certificate.clone());
                    changes.touch(TABLE, u64_key(*node_id));
                }
                CommandResult::Done
            }
            NodeCommand::Remove { node_id } => {
                if self.0.remove(node_id).is_some() {
                    changes.touch(TABLE, u64_key(*node_id));
                }
                CommandResult::Done
            }
        }
    }

    /// Why `join` may not take its node id, if it may not.
    fn clash(&self, join: &NodeJoin) -> Option<CommandResult> {
        let existing = self.0.get(&join.node_id)?;
        let reason = match join.role {
            NodeRole::Worker if existing.role == NodeRole::Manager => format!(
                "node id {} belongs to a manager of this cluster; copying a config dir clones its identity",
                join.node_id
            ),
            // A manager that left comes back under a new Raft id; any other change of Raft id
            // is a clone.
            NodeRole::Manager
                if existing.raft_node_id != join.raft_node_id
                    && existing.status != NodeStatus::Left =>
            {
                format!(
                    "node id {} is already taken by another node; copying a config dir clones its identity",
                    join.node_id
                )
            }
            _ => return None,
        };
        Some(CommandResult::Rejected { reason })
    }
}

fn new_record(join: &NodeJoin, at_ms: u64) -> NodeRecord {
    NodeRecord {
        node_id: join.node_id,
        raft_node_id: join.raft_node_id,
        role: join.role,
        hostname: join.hostname.clone(),
        remote_addr: join.remote_addr.clone(),
        raft_addr: join.raft_addr.clone(),
        labels: join.labels.clone(),
        availability: Availability::Active,
        status: NodeStatus::Ready,
        resources: join.resources.clone(),
        agent_version: join.agent_version.clone(),
        joined_at_ms: at_ms,
        status_changed_at_ms: at_ms,
        demoted: false,
        gossip_addr: join.gossip_addr.clone(),
        node_secret: join.node_secret.clone(),
        certificate: join.certificate.as_deref().cloned(),
    }
}

/// What a node that joins again keeps of its record, and what its join replaces.
fn merge_join(mut existing: NodeRecord, join: &NodeJoin, at_ms: u64) -> NodeRecord {
    let kept = (
        existing.labels.clone(),
        existing.availability,
        existing.joined_at_ms,
        existing.demoted,
    );
    // A join that brought no certificate (a registration without a request) keeps the record
    // of the one the node holds.
    let certificate = existing.certificate.take();
    existing = new_record(join, at_ms);
    if existing.certificate.is_none() {
        existing.certificate = certificate;
    }
    let (mut labels, availability, joined_at_ms, demoted) = kept;
    labels.extend(join.labels.clone());
    existing.labels = labels;
    existing.availability = availability;
    existing.joined_at_ms = joined_at_ms;
    existing.demoted = demoted;
    existing
}

fn no_such_node(node_id: u64) -> CommandResult {
    CommandResult::Rejected {
        reason: format!("no node {node_id} in this cluster"),
    }
}

impl Table for NodeTable {
    fn name(&self) -> &'static str {
        TABLE
    }

    fn row_keys(&self) -> Vec<Vec<u8>> {
        self.0.keys().map(|id| u64_key(*id)).collect()
    }

    fn encode_row(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        self.0.get(&key_u64(key)?).map(encode).transpose()
    }

    fn load_row(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.0.insert(key_u64(key)?, decode(value)?);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::super::tests::{bootstrap, node};
    use super::super::{ClusterState, Command};
    use super::*;

    pub(crate) fn joining(id: u64, role: NodeRole, raft_node_id: Option<u64>) -> NodeJoin {
        NodeJoin {
            node_id: id,
            raft_node_id,
            role,
            hostname: "new-host".into(),
            remote_addr: "127.0.0.1:9".into(),
            raft_addr: None,
            gossip_addr: None,
            resources: Resources {
                cpus: 4,
                memory_bytes: 8,
                docker: None,
            },
            agent_version: "0.2.0".into(),
            labels: BTreeMap::from([("zone".to_string(), "b".to_string())]),
            node_secret: Some("s".into()),
            certificate: None,
        }
    }

    fn apply(state: &mut ClusterState, command: NodeCommand) -> CommandResult {
        state.apply(&Command::Node(Box::new(command)), &mut Changes::default())
    }

    #[test]
    fn a_rejoin_merges_into_the_record_the_log_built() {
        let mut state = ClusterState::default();
        bootstrap(&mut state, "c", 1);
        let join = |at_ms| NodeCommand::Join {
            node: joining(5, NodeRole::Worker, None),
            at_ms,
        };
        assert_eq!(apply(&mut state, join(10)), CommandResult::Done);
        // Meanwhile an operator drains it and labels it, and the leader marks it down.
        apply(
            &mut state,
            NodeCommand::Update {
                node_id: 5,
                availability: Some(Availability::Drain),
                label_add: BTreeMap::from([("disk".to_string(), "ssd".to_string())]),
                label_rm: vec![],
            },
        );
        apply(
            &mut state,
            NodeCommand::SetStatus {
                node_id: 5,
                status: NodeStatus::Down,
                at_ms: 15,
            },
        );
        assert_eq!(apply(&mut state, join(20)), CommandResult::Done);
        let record = &state.nodes[&5];
        assert_eq!(record.status, NodeStatus::Ready);
        assert_eq!(record.availability, Availability::Drain, "kept");
        assert_eq!(record.joined_at_ms, 10, "kept");
        assert_eq!(record.status_changed_at_ms, 20);
        assert_eq!(
            record.labels,
            BTreeMap::from([
                ("disk".to_string(), "ssd".to_string()),
                ("zone".to_string(), "b".to_string())
            ])
        );
        assert_eq!(record.resources.cpus, 4, "what the node reports replaces");
    }

    #[test]
    fn a_join_cannot_take_another_nodes_id() {
        let mut state = ClusterState::default();
        bootstrap(&mut state, "c", 1);
        // node(1) is a manager with Raft id 2.
        let worker = NodeCommand::Join {
            node: joining(1, NodeRole::Worker, None),
            at_ms: 1,
        };
        assert!(matches!(
            apply(&mut state, worker),
            CommandResult::Rejected { .. }
        ));
        let clone = NodeCommand::Join {
            node: joining(1, NodeRole::Manager, Some(99)),
            at_ms: 1,
        };
        assert!(matches!(
            apply(&mut state, clone.clone()),
            CommandResult::Rejected { .. }
        ));
        assert_eq!(state.nodes[&1].hostname, "host", "nothing was written");
        // Once it has left, a manager comes back under a new Raft id.
        apply(
            &mut state,
            NodeCommand::SetStatus {
                node_id: 1,
                status: NodeStatus::Left,
                at_ms: 2,
            },
        );
        assert_eq!(apply(&mut state, clone), CommandResult::Done);
        assert_eq!(state.nodes[&1].raft_node_id, Some(99));
    }

    #[test]
    fn node_update_changes_availability_and_labels() {
        let mut state = ClusterState::default();
        bootstrap(&mut state, "c", 1);
        let update = NodeCommand::Update {
            node_id: 1,
            availability: Some(Availability::Drain),
            label_add: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            label_rm: vec![],
        };
        assert_eq!(apply(&mut state, update), CommandResult::Done);
        let remove = NodeCommand::Update {
            node_id: 1,
            availability: None,
            label_add: BTreeMap::from([("disk".to_string(), "ssd".to_string())]),
            label_rm: vec!["zone".to_string()],
        };
        apply(&mut state, remove);
        let node = &state.nodes[&1];
        assert_eq!(node.availability, Availability::Drain);
        assert_eq!(
            node.labels,
            BTreeMap::from([("disk".to_string(), "ssd".to_string())])
        );
        let missing = NodeCommand::Update {
            node_id: 9,
            availability: None,
            label_add: BTreeMap::new(),
            label_rm: vec![],
        };
        assert!(matches!(
            apply(&mut state, missing),
            CommandResult::Rejected { .. }
        ));
    }

    #[test]
    fn liveness_decisions_change_status_but_never_undo_a_leave() {
        let mut state = ClusterState::default();
        bootstrap(&mut state, "c", 1);
        let set = |status, at_ms| {
            Command::Node(Box::new(NodeCommand::SetStatus {
                node_id: 1,
                status,
                at_ms,
            }))
        };
        let mut changes = Changes::default();
        assert_eq!(
            state.apply(&set(NodeStatus::Down, 50), &mut changes),
            CommandResult::Done
        );
        assert!(changes.contains(TABLE, &u64_key(1)));
        assert_eq!(state.nodes[&1].status, NodeStatus::Down);
        assert_eq!(state.nodes[&1].status_changed_at_ms, 50);
        // The same decision again touches nothing, and keeps the time of the change.
        let mut changes = Changes::default();
        state.apply(&set(NodeStatus::Down, 60), &mut changes);
        assert!(changes.is_empty());
        assert_eq!(state.nodes[&1].status_changed_at_ms, 50);
        state.apply(&set(NodeStatus::Left, 70), &mut Changes::default());
        assert!(matches!(
            state.apply(&set(NodeStatus::Ready, 80), &mut Changes::default()),
            CommandResult::Rejected { .. }
        ));
        assert_eq!(state.nodes[&1].status, NodeStatus::Left);
        let missing = NodeCommand::SetStatus {
            node_id: 9,
            status: NodeStatus::Down,
            at_ms: 1,
        };
        assert!(matches!(
            apply(&mut state, missing),
            CommandResult::Rejected { .. }
        ));
    }

    #[test]
    fn demotion_and_removal() {
        let mut state = ClusterState::default();
        bootstrap(&mut state, "c", 1);
        apply(
            &mut state,
            NodeCommand::SetDemoted {
                node_id: 1,
                demoted: true,
            },
        );
        assert!(state.nodes[&1].demoted);
        let mut changes = Changes::default();
        state.apply(
            &Command::Node(Box::new(NodeCommand::SetResources {
                node_id: 1,
                resources: Resources {
                    cpus: 2,
                    memory_bytes: 3,
                    docker: Some("20.10.24".into()),
                },
                agent_version: "0.3.0".into(),
            })),
            &mut changes,
        );
        assert_eq!(
            state.nodes[&1].resources.docker.as_deref(),
            Some("20.10.24")
        );
        assert_eq!(state.nodes[&1].agent_version, "0.3.0");
        assert!(changes.contains(TABLE, &u64_key(1)));
        let mut changes = Changes::default();
        state.apply(
            &Command::Node(Box::new(NodeCommand::Remove { node_id: 1 })),
            &mut changes,
        );
        assert!(state.nodes.is_empty());
        assert_eq!(state.nodes.encode_row(&u64_key(1)).unwrap(), None);
        assert!(changes.contains(TABLE, &u64_key(1)));
        let _ = node(1);
    }
}
