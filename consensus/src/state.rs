//! The replicated cluster state and the commands that change it.
//!
//! [`ClusterState::apply`] is the whole state machine: deterministic, no clocks, no randomness,
//! no I/O. Whatever varies (timestamps, ids, tokens) is chosen by the proposer and travels inside
//! the [`Command`]. Apply also records which rows it touched in [`Changes`], so the store can
//! persist exactly those rows in the same transaction as the last-applied log id.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

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
}

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
}

/// A key's value and its etcd-style revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvRecord {
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

/// Everything the managers agree on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// `None` until the bootstrap command is applied.
    pub cluster: Option<ClusterInfo>,
    pub nodes: BTreeMap<u64, NodeRecord>,
    pub kv: BTreeMap<String, KvRecord>,
    /// The KV store's global revision: bumped by every put and every effective delete.
    pub revision: u64,
}

/// A change to the cluster state: the payload of a Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates the cluster; the first command of every cluster's log.
    Bootstrap {
        cluster: ClusterInfo,
        node: NodeRecord,
    },
    KvPut {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        if_revision: Option<u64>,
    },
    KvDelete {
        key: String,
        if_revision: Option<u64>,
    },
    RotateToken {
        role: NodeRole,
        token: String,
    },
    /// Adds a node, or replaces its record (a rejoin, a change of address or status).
    UpsertNode {
        node: NodeRecord,
    },
    /// Forgets a node.
    RemoveNode {
        node_id: u64,
    },
    /// Changes a node's availability and labels in one step (a read-modify-write through the
    /// log, so concurrent updates of different labels do not overwrite each other).
    UpdateNode {
        node_id: u64,
        availability: Option<Availability>,
        label_add: BTreeMap<String, String>,
        label_rm: Vec<String>,
    },
    /// The leader's liveness decision about a node (from gossip), stamped by the proposer.
    /// A node that left stays `left`: only a new join brings it back.
    SetNodeStatus {
        node_id: u64,
        status: NodeStatus,
        at_ms: u64,
    },
}

impl fmt::Display for Command {
    // Shown in openraft's logs: names only, never values or tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Bootstrap { cluster, node } => {
                write!(
                    f,
                    "bootstrap({}, node {})",
                    cluster.cluster_id, node.node_id
                )
            }
            Command::KvPut { key, .. } => write!(f, "kv-put({key})"),
            Command::KvDelete { key, .. } => write!(f, "kv-delete({key})"),
            Command::RotateToken { role, .. } => write!(f, "rotate-token({role:?})"),
            Command::UpsertNode { node } => write!(f, "upsert-node({})", node.node_id),
            Command::RemoveNode { node_id } => write!(f, "remove-node({node_id})"),
            Command::UpdateNode { node_id, .. } => write!(f, "update-node({node_id})"),
            Command::SetNodeStatus {
                node_id, status, ..
            } => write!(f, "set-node-status({node_id}, {})", status.as_str()),
        }
    }
}

/// What applying a command produced; returned to the proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// Applied; nothing more to say (bootstrap, token rotation, blank and membership entries).
    Done,
    KvPut {
        revision: u64,
    },
    KvDelete {
        deleted: bool,
        revision: u64,
    },
    /// A compare-and-set found another revision; nothing was written.
    CompareFailed {
        key: String,
        expected: u64,
        actual: u64,
    },
    /// The command is not valid in the current state; nothing was written.
    Rejected {
        reason: String,
    },
}

/// The rows one or more applies touched; the store persists exactly these.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub kv: BTreeSet<String>,
    pub nodes: BTreeSet<u64>,
    pub cluster: bool,
    pub revision: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.kv.is_empty() && self.nodes.is_empty() && !self.cluster && !self.revision
    }
}

impl ClusterState {
    /// Applies one command, recording what it touched in `changes`.
    pub fn apply(&mut self, command: &Command, changes: &mut Changes) -> CommandResult {
        match command {
            Command::Bootstrap { cluster, node } => {
                if let Some(existing) = &self.cluster {
                    return CommandResult::Rejected {
                        reason: format!("cluster {} is already initialised", existing.cluster_id),
                    };
                }
                self.cluster = Some(cluster.clone());
                self.nodes.insert(node.node_id, node.clone());
                changes.cluster = true;
                changes.nodes.insert(node.node_id);
                CommandResult::Done
            }
            Command::KvPut {
                key,
                value,
                if_revision,
            } => {
                if let Some(failed) = self.compare(key, *if_revision) {
                    return failed;
                }
                self.revision += 1;
                let revision = self.revision;
                let record = match self.kv.remove(key) {
                    Some(old) => KvRecord {
                        value: value.clone(),
                        create_revision: old.create_revision,
                        mod_revision: revision,
                        version: old.version + 1,
                    },
                    None => KvRecord {
                        value: value.clone(),
                        create_revision: revision,
                        mod_revision: revision,
                        version: 1,
                    },
                };
                self.kv.insert(key.clone(), record);
                changes.kv.insert(key.clone());
                changes.revision = true;
                CommandResult::KvPut { revision }
            }
            Command::KvDelete { key, if_revision } => {
                if let Some(failed) = self.compare(key, *if_revision) {
                    return failed;
                }
                if self.kv.remove(key).is_none() {
                    return CommandResult::KvDelete {
                        deleted: false,
                        revision: self.revision,
                    };
                }
                self.revision += 1;
                changes.kv.insert(key.clone());
                changes.revision = true;
                CommandResult::KvDelete {
                    deleted: true,
                    revision: self.revision,
                }
            }
            Command::RotateToken { role, token } => {
                let Some(cluster) = self.cluster.as_mut() else {
                    return CommandResult::Rejected {
                        reason: "the cluster is not initialised".to_string(),
                    };
                };
                match role {
                    NodeRole::Manager => cluster.manager_token = token.clone(),
                    NodeRole::Worker => cluster.worker_token = token.clone(),
                }
                changes.cluster = true;
                CommandResult::Done
            }
            Command::UpsertNode { node } => {
                if self.cluster.is_none() {
                    return CommandResult::Rejected {
                        reason: "the cluster is not initialised".to_string(),
                    };
                }
                self.nodes.insert(node.node_id, node.clone());
                changes.nodes.insert(node.node_id);
                CommandResult::Done
            }
            Command::RemoveNode { node_id } => {
                if self.nodes.remove(node_id).is_some() {
                    changes.nodes.insert(*node_id);
                }
                CommandResult::Done
            }
            Command::UpdateNode {
                node_id,
                availability,
                label_add,
                label_rm,
            } => {
                let Some(node) = self.nodes.get_mut(node_id) else {
                    return no_such_node(*node_id);
                };
                if let Some(availability) = availability {
                    node.availability = *availability;
                }
                for key in label_rm {
                    node.labels.remove(key);
                }
                node.labels.extend(label_add.clone());
                changes.nodes.insert(*node_id);
                CommandResult::Done
            }
            Command::SetNodeStatus {
                node_id,
                status,
                at_ms,
            } => {
                let Some(node) = self.nodes.get_mut(node_id) else {
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
                changes.nodes.insert(*node_id);
                CommandResult::Done
            }
        }
    }

    /// The compare of a compare-and-set: `None` when `if_revision` is absent or matches the
    /// key's `mod_revision` (0 for a missing key), else the failure to return.
    fn compare(&self, key: &str, if_revision: Option<u64>) -> Option<CommandResult> {
        let expected = if_revision?;
        let actual = self.kv.get(key).map_or(0, |record| record.mod_revision);
        (expected != actual).then(|| CommandResult::CompareFailed {
            key: key.to_string(),
            expected,
            actual,
        })
    }

    pub fn kv_get(&self, key: &str) -> Option<&KvRecord> {
        self.kv.get(key)
    }

    /// The keys that start with `prefix`, in key order.
    pub fn kv_list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a KvRecord)> {
        self.kv
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(key, _)| key.starts_with(prefix))
    }
}

fn no_such_node(node_id: u64) -> CommandResult {
    CommandResult::Rejected {
        reason: format!("no node {node_id} in this cluster"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(
        state: &mut ClusterState,
        key: &str,
        value: &str,
        if_revision: Option<u64>,
    ) -> CommandResult {
        let command = Command::KvPut {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            if_revision,
        };
        state.apply(&command, &mut Changes::default())
    }

    fn delete(state: &mut ClusterState, key: &str, if_revision: Option<u64>) -> CommandResult {
        let command = Command::KvDelete {
            key: key.into(),
            if_revision,
        };
        state.apply(&command, &mut Changes::default())
    }

    fn node(id: u64) -> NodeRecord {
        NodeRecord {
            node_id: id,
            raft_node_id: Some(id + 1),
            role: NodeRole::Manager,
            hostname: "host".into(),
            remote_addr: "127.0.0.1:27242".into(),
            raft_addr: Some("127.0.0.1:15760".into()),
            labels: BTreeMap::new(),
            availability: Availability::Active,
            status: NodeStatus::Ready,
            resources: Resources::default(),
            agent_version: "0.1.0".into(),
            joined_at_ms: 1,
            status_changed_at_ms: 1,
            demoted: false,
            gossip_addr: None,
            node_secret: None,
        }
    }

    fn info(id: &str) -> ClusterInfo {
        ClusterInfo {
            cluster_id: id.into(),
            created_at_ms: 1,
            manager_token: "m".into(),
            worker_token: "w".into(),
            manager_secret: "s".into(),
        }
    }

    #[test]
    fn revisions_follow_etcd() {
        let mut state = ClusterState::default();
        assert_eq!(
            put(&mut state, "a", "1", None),
            CommandResult::KvPut { revision: 1 }
        );
        assert_eq!(
            put(&mut state, "b", "1", None),
            CommandResult::KvPut { revision: 2 }
        );
        assert_eq!(
            put(&mut state, "a", "2", None),
            CommandResult::KvPut { revision: 3 }
        );
        let a = state.kv_get("a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 3, 2));
        assert_eq!(a.value, b"2");
        assert_eq!(
            delete(&mut state, "a", None),
            CommandResult::KvDelete {
                deleted: true,
                revision: 4
            }
        );
        assert_eq!(
            delete(&mut state, "a", None),
            CommandResult::KvDelete {
                deleted: false,
                revision: 4
            }
        );
        assert_eq!(
            put(&mut state, "a", "3", None),
            CommandResult::KvPut { revision: 5 }
        );
        let a = state.kv_get("a").unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (5, 5, 1));
    }

    #[test]
    fn compare_and_set() {
        let mut state = ClusterState::default();
        assert_eq!(
            put(&mut state, "k", "v", Some(0)),
            CommandResult::KvPut { revision: 1 }
        );
        assert_eq!(
            put(&mut state, "k", "v", Some(0)),
            CommandResult::CompareFailed {
                key: "k".into(),
                expected: 0,
                actual: 1
            }
        );
        assert_eq!(
            put(&mut state, "k", "w", Some(7)),
            CommandResult::CompareFailed {
                key: "k".into(),
                expected: 7,
                actual: 1
            }
        );
        assert_eq!(state.revision, 1, "a failed compare writes nothing");
        assert_eq!(
            put(&mut state, "k", "w", Some(1)),
            CommandResult::KvPut { revision: 2 }
        );
        assert_eq!(
            delete(&mut state, "k", Some(1)),
            CommandResult::CompareFailed {
                key: "k".into(),
                expected: 1,
                actual: 2
            }
        );
        assert_eq!(
            delete(&mut state, "k", Some(2)),
            CommandResult::KvDelete {
                deleted: true,
                revision: 3
            }
        );
    }

    #[test]
    fn prefix_listing_is_ordered_and_bounded() {
        let mut state = ClusterState::default();
        for key in ["app/b", "app/a", "apple", "ap", "b"] {
            put(&mut state, key, "x", None);
        }
        let keys: Vec<&str> = state.kv_list("app/").map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["app/a", "app/b"]);
        let keys: Vec<&str> = state.kv_list("ap").map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["ap", "app/a", "app/b", "apple"]);
        assert_eq!(state.kv_list("").count(), 5);
    }

    #[test]
    fn bootstrap_once_and_changes_recorded() {
        let mut state = ClusterState::default();
        let mut changes = Changes::default();
        let bootstrap = Command::Bootstrap {
            cluster: info("c1"),
            node: node(9),
        };
        assert_eq!(state.apply(&bootstrap, &mut changes), CommandResult::Done);
        assert!(changes.cluster);
        assert!(changes.nodes.contains(&9));
        let again = Command::Bootstrap {
            cluster: info("c2"),
            node: node(10),
        };
        assert!(matches!(
            state.apply(&again, &mut Changes::default()),
            CommandResult::Rejected { .. }
        ));
        assert_eq!(state.cluster.as_ref().unwrap().cluster_id, "c1");
        assert_eq!(state.nodes.len(), 1);
    }

    #[test]
    fn node_update_changes_availability_and_labels() {
        let mut state = ClusterState::default();
        state.apply(
            &Command::Bootstrap {
                cluster: info("c"),
                node: node(1),
            },
            &mut Changes::default(),
        );
        let update = Command::UpdateNode {
            node_id: 1,
            availability: Some(Availability::Drain),
            label_add: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            label_rm: vec![],
        };
        assert_eq!(
            state.apply(&update, &mut Changes::default()),
            CommandResult::Done
        );
        let remove = Command::UpdateNode {
            node_id: 1,
            availability: None,
            label_add: BTreeMap::from([("disk".to_string(), "ssd".to_string())]),
            label_rm: vec!["zone".to_string()],
        };
        state.apply(&remove, &mut Changes::default());
        let node = &state.nodes[&1];
        assert_eq!(node.availability, Availability::Drain);
        assert_eq!(
            node.labels,
            BTreeMap::from([("disk".to_string(), "ssd".to_string())])
        );
        let missing = Command::UpdateNode {
            node_id: 9,
            availability: None,
            label_add: BTreeMap::new(),
            label_rm: vec![],
        };
        assert!(matches!(
            state.apply(&missing, &mut Changes::default()),
            CommandResult::Rejected { .. }
        ));
    }

    #[test]
    fn token_rotation_changes_only_its_role() {
        let mut state = ClusterState::default();
        let rotate = Command::RotateToken {
            role: NodeRole::Worker,
            token: "new".into(),
        };
        assert!(matches!(
            state.apply(&rotate, &mut Changes::default()),
            CommandResult::Rejected { .. }
        ));
        state.apply(
            &Command::Bootstrap {
                cluster: info("c"),
                node: node(1),
            },
            &mut Changes::default(),
        );
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
    fn liveness_decisions_change_status_but_never_undo_a_leave() {
        let mut state = ClusterState::default();
        state.apply(
            &Command::Bootstrap {
                cluster: info("c"),
                node: node(1),
            },
            &mut Changes::default(),
        );
        let set = |status, at_ms| Command::SetNodeStatus {
            node_id: 1,
            status,
            at_ms,
        };
        let mut changes = Changes::default();
        assert_eq!(
            state.apply(&set(NodeStatus::Down, 50), &mut changes),
            CommandResult::Done
        );
        assert!(changes.nodes.contains(&1));
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
        let missing = Command::SetNodeStatus {
            node_id: 9,
            status: NodeStatus::Down,
            at_ms: 1,
        };
        assert!(matches!(
            state.apply(&missing, &mut Changes::default()),
            CommandResult::Rejected { .. }
        ));
    }
}
