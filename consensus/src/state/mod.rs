//! The replicated cluster state and the commands that change it.
//!
//! [`ClusterState::apply`] is the whole state machine: deterministic, no clocks, no randomness,
//! no I/O. Whatever varies (timestamps, ids, tokens) is chosen by the proposer and travels inside
//! the [`Command`]. Apply also records which rows it touched in [`Changes`], so the store can
//! persist exactly those rows in the same transaction as the last-applied log id.
//!
//! The state is split by table, each in its own file with its records, its commands, its apply
//! and its rows:
//! - [`cluster`]: the cluster's identity, join tokens and gossip keyring ([`gossip_keys`]);
//! - [`nodes`]: every node, manager or worker;
//! - [`kv`]: the key-value store with etcd's revisions, and its recent history
//!   ([`kv_history`]);
//! - [`services`]: what operators declared should run;
//! - [`tasks`]: every run of a service's task, with its placement and observed states;
//! - [`table`]: what a table is to the store, and the [`Changes`] apply records.
//!
//! Adding a table: its file, a field here, a line in [`ClusterState::tables`] and
//! [`ClusterState::tables_mut`], and a variant of [`Command`] for its commands.

pub mod cluster;
pub mod gossip_keys;
pub mod kv;
pub mod kv_history;
pub mod nodes;
#[cfg(test)]
mod properties;
pub mod services;
pub mod table;
pub mod tasks;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use cluster::{CaRotation, ClusterCommand, ClusterInfo, ClusterTable};
pub use gossip_keys::{GossipKeyCommand, GossipKeyRecord, GossipKeyring, KeySecret};
pub use kv::{KvCommand, KvRecord, KvTable};
pub use kv_history::{KvChange, KvCompacted, KvHistory};
pub use nodes::{
    Availability, NodeCertificate, NodeCommand, NodeJoin, NodeRecord, NodeRole, NodeStatus,
    NodeTable, Resources,
};
pub use services::{
    Constraint, ConstraintField, ConstraintOp, Driver, FailureAction, HealthCheck, OnIsolation,
    RebalanceMode, Reservations, RestartCondition, RestartPolicy, ServiceCommand, ServiceMode,
    ServicePatch, ServiceRecord, ServiceSpec, ServiceTable, SpecError, TaskSpec, UpdateConfig,
    UpdateKind, UpdateOrder, UpdatePatch, UpdateState, UpdateStatus,
};
pub use table::{Changes, Table};
pub use tasks::{
    DesiredState, Health, NewTask, TaskCommand, TaskOutcome, TaskRecord, TaskReport, TaskState,
    TaskTable, Transition,
};

/// Everything the managers agree on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// `None` inside until the bootstrap command is applied.
    pub cluster: ClusterTable,
    pub nodes: NodeTable,
    pub kv: KvTable,
    pub services: ServiceTable,
    pub tasks: TaskTable,
}

/// A change to the cluster state: the payload of a Raft log entry.
///
/// Every entry the log keeps in memory is as large as the largest variant, so the rare and
/// large commands are boxed and the frequent ones (KV writes, task reports) are not: an entry
/// is 88 bytes instead of 632, for every unpurged entry and every copy openraft makes. A box
/// is invisible to serde, so the encoding is what it was unboxed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Creates the cluster with its first manager; the first command of every cluster's log.
    Bootstrap {
        cluster: Box<ClusterInfo>,
        node: Box<NodeRecord>,
    },
    Cluster(Box<ClusterCommand>),
    Node(Box<NodeCommand>),
    Kv(KvCommand),
    Service(Box<ServiceCommand>),
    Task(TaskCommand),
}

impl From<ClusterCommand> for Command {
    fn from(command: ClusterCommand) -> Command {
        Command::Cluster(Box::new(command))
    }
}

impl From<NodeCommand> for Command {
    fn from(command: NodeCommand) -> Command {
        Command::Node(Box::new(command))
    }
}

impl From<KvCommand> for Command {
    fn from(command: KvCommand) -> Command {
        Command::Kv(command)
    }
}

impl From<ServiceCommand> for Command {
    fn from(command: ServiceCommand) -> Command {
        Command::Service(Box::new(command))
    }
}

impl From<TaskCommand> for Command {
    fn from(command: TaskCommand) -> Command {
        Command::Task(command)
    }
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
            Command::Cluster(command) => match &**command {
                ClusterCommand::RotateToken { role, .. } => write!(f, "rotate-token({role:?})"),
                ClusterCommand::SetCertLifetime { seconds } => {
                    write!(f, "set-cert-lifetime({seconds})")
                }
                ClusterCommand::StartCaRotation { .. } => write!(f, "start-ca-rotation"),
                ClusterCommand::FinishCaRotation { .. } => write!(f, "finish-ca-rotation"),
                ClusterCommand::GossipKey(command) => match command {
                    GossipKeyCommand::Install { .. } => write!(f, "gossip-key-install"),
                    GossipKeyCommand::Use { id } => write!(f, "gossip-key-use({id})"),
                    GossipKeyCommand::Remove { id } => write!(f, "gossip-key-remove({id})"),
                },
            },
            Command::Node(command) => match &**command {
                NodeCommand::Join { node, .. } => write!(f, "node-join({})", node.node_id),
                NodeCommand::SetStatus {
                    node_id, status, ..
                } => write!(f, "set-node-status({node_id}, {})", status.as_str()),
                NodeCommand::Update { node_id, .. } => write!(f, "update-node({node_id})"),
                NodeCommand::SetDemoted { node_id, demoted } => {
                    write!(f, "set-demoted({node_id}, {demoted})")
                }
                NodeCommand::SetResources { node_id, .. } => {
                    write!(f, "set-node-resources({node_id})")
                }
                NodeCommand::Remove { node_id } => write!(f, "remove-node({node_id})"),
                NodeCommand::SetCertificate { node_id, .. } => {
                    write!(f, "set-node-certificate({node_id})")
                }
            },
            Command::Kv(KvCommand::Put { key, .. }) => write!(f, "kv-put({key})"),
            Command::Kv(KvCommand::Delete { key, .. }) => write!(f, "kv-delete({key})"),
            Command::Kv(KvCommand::KeepHistory { revisions }) => {
                write!(f, "kv-keep-history({revisions})")
            }
            Command::Service(command) => match &**command {
                ServiceCommand::Create { name, .. } => write!(f, "service-create({name})"),
                ServiceCommand::Scale { name, replicas, .. } => {
                    write!(f, "service-scale({name}, {replicas})")
                }
                ServiceCommand::Update { name, .. } => write!(f, "service-update({name})"),
                ServiceCommand::Rollback { name, .. } => write!(f, "service-rollback({name})"),
                ServiceCommand::SetUpdateState { name, state, .. } => {
                    write!(f, "service-update-state({name}, {state:?})")
                }
                ServiceCommand::Rebalance { name, .. } => write!(f, "service-rebalance({name})"),
                ServiceCommand::Remove { name } => write!(f, "service-remove({name})"),
            },
            Command::Task(command) => match command {
                TaskCommand::Create { tasks, .. } => write!(f, "task-create({})", tasks.len()),
                TaskCommand::SetDesired { changes } => {
                    write!(f, "task-set-desired({})", changes.len())
                }
                TaskCommand::Schedule {
                    placements,
                    pending,
                    ..
                } => write!(f, "task-schedule({}, {})", placements.len(), pending.len()),
                TaskCommand::Report {
                    node_id, reports, ..
                } => {
                    write!(f, "task-report({node_id}, {})", reports.len())
                }
                TaskCommand::Delete { ids } => write!(f, "task-delete({})", ids.len()),
            },
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
    /// What a task command changed.
    Tasks(TaskOutcome),
    /// A gossip key was installed, used or removed: its id, and the keyring's version after.
    GossipKey {
        id: u32,
        version: u64,
    },
}

impl ClusterState {
    /// Applies one command, recording what it touched in `changes`.
    pub fn apply(&mut self, command: &Command, changes: &mut Changes) -> CommandResult {
        match command {
            Command::Bootstrap { cluster, node } => {
                let result = cluster::bootstrap(&mut self.cluster, cluster, changes);
                if result == CommandResult::Done {
                    self.nodes.bootstrap(node, changes);
                }
                result
            }
            Command::Cluster(command) => cluster::apply(&mut self.cluster, command, changes),
            Command::Node(_) if self.cluster.is_none() => not_initialised(),
            Command::Node(command)
                if let NodeCommand::Join { node, .. } = &**command
                    && self
                        .cluster
                        .as_ref()
                        .is_some_and(|cluster| cluster.is_removed(node.node_id)) =>
            {
                CommandResult::Rejected {
                    reason: format!(
                        "node {} was removed from the cluster; a removed node joins again only with a fresh config dir (a new node id)",
                        node.node_id
                    ),
                }
            }
            Command::Node(command) => {
                let result = self.nodes.apply(command, changes);
                if let (NodeCommand::Remove { node_id }, CommandResult::Done) =
                    (&**command, &result)
                {
                    cluster::deny(&mut self.cluster, *node_id, changes);
                }
                result
            }
            Command::Kv(command) => self.kv.apply(command, changes),
            Command::Service(_) | Command::Task(_) if self.cluster.is_none() => not_initialised(),
            Command::Service(command) => {
                let result = self.services.apply(command, changes);
                if let (ServiceCommand::Remove { name }, CommandResult::Done) =
                    (&**command, &result)
                {
                    self.tasks.shut_down_service(name, changes);
                }
                result
            }
            Command::Task(command) => {
                self.tasks
                    .apply(command, &self.services, &self.nodes, changes)
            }
        }
    }

    /// Every table, for the store: the one list of them.
    pub fn tables(&self) -> [&dyn Table; 5] {
        [
            &self.cluster,
            &self.nodes,
            &self.kv,
            &self.services,
            &self.tasks,
        ]
    }

    /// Every table, for the store to load rows into.
    pub fn tables_mut(&mut self) -> [&mut dyn Table; 5] {
        [
            &mut self.cluster,
            &mut self.nodes,
            &mut self.kv,
            &mut self.services,
            &mut self.tasks,
        ]
    }
}

fn not_initialised() -> CommandResult {
    CommandResult::Rejected {
        reason: "the cluster is not initialised".to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;

    pub(crate) fn node(id: u64) -> NodeRecord {
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
            certificate: None,
        }
    }

    pub(crate) fn info(id: &str) -> ClusterInfo {
        ClusterInfo {
            cluster_id: id.into(),
            created_at_ms: 1,
            manager_token: "m".into(),
            worker_token: "w".into(),
            manager_secret: "s".into(),
            gossip_keys: GossipKeyring::first(KeySecret([7; 32]), 1),
            ca: None,
            cert_lifetime_s: None,
            removed_nodes: Default::default(),
            ca_rotation: None,
        }
    }

    /// A replicated service that sleeps, with `replicas` tasks.
    pub(crate) fn service_spec(replicas: u32) -> ServiceSpec {
        ServiceSpec {
            task: TaskSpec {
                driver: Driver::Process,
                command: vec!["sleep".into(), "infinity".into()],
                env: BTreeMap::new(),
                workdir: None,
                reservations: Reservations::default(),
                on_isolation: OnIsolation::Keep,
                stop_grace_ms: 1_000,
                health: None,
                image: None,
            },
            mode: ServiceMode::Replicated { replicas },
            constraints: Vec::new(),
            restart: RestartPolicy::default(),
            update: UpdateConfig::default(),
            rollback: None,
            rebalance: RebalanceMode::Manual,
        }
    }

    /// Bootstraps cluster `id` with manager `node_id` as its first node.
    pub(crate) fn bootstrap(state: &mut ClusterState, id: &str, node_id: u64) {
        let mut changes = Changes::default();
        let result = state.apply(
            &Command::Bootstrap {
                cluster: Box::new(info(id)),
                node: Box::new(node(node_id)),
            },
            &mut changes,
        );
        assert_eq!(result, CommandResult::Done);
        assert!(!changes.is_empty());
    }

    /// The boxes keep a log entry small, and change nothing in what is written: every
    /// variant encodes as the same command unboxed did (entries and snapshots written before
    /// stay readable).
    #[test]
    fn commands_are_small_and_encode_as_they_did_unboxed() {
        assert!(
            std::mem::size_of::<crate::types::Entry>() <= 96,
            "{}",
            std::mem::size_of::<crate::types::Entry>()
        );
        #[derive(Serialize)]
        enum Unboxed {
            Bootstrap {
                cluster: ClusterInfo,
                node: NodeRecord,
            },
            Cluster(ClusterCommand),
            Node(NodeCommand),
            Kv(KvCommand),
            Service(ServiceCommand),
            Task(TaskCommand),
        }
        let cluster = ClusterCommand::SetCertLifetime { seconds: 60 };
        let nodes = NodeCommand::Remove { node_id: 7 };
        let kv = KvCommand::KeepHistory { revisions: 9 };
        let service = ServiceCommand::Remove { name: "web".into() };
        let task = TaskCommand::Delete { ids: vec![] };
        let pairs = [
            (
                Command::Bootstrap {
                    cluster: Box::new(info("c")),
                    node: Box::new(node(1)),
                },
                Unboxed::Bootstrap {
                    cluster: info("c"),
                    node: node(1),
                },
            ),
            (cluster.clone().into(), Unboxed::Cluster(cluster)),
            (nodes.clone().into(), Unboxed::Node(nodes)),
            (kv.clone().into(), Unboxed::Kv(kv)),
            (service.clone().into(), Unboxed::Service(service)),
            (task.clone().into(), Unboxed::Task(task)),
        ];
        for (boxed, unboxed) in pairs {
            let bytes = crate::codec::encode(&boxed).unwrap();
            assert_eq!(bytes, crate::codec::encode(&unboxed).unwrap(), "{boxed}");
            assert_eq!(crate::codec::decode::<Command>(&bytes).unwrap(), boxed);
        }
    }

    #[test]
    fn node_commands_need_a_cluster() {
        let mut state = ClusterState::default();
        let join = Command::Node(Box::new(NodeCommand::Remove { node_id: 1 }));
        assert!(matches!(
            state.apply(&join, &mut Changes::default()),
            CommandResult::Rejected { .. }
        ));
    }

    #[test]
    fn a_removed_node_is_denied_for_good() {
        let mut state = ClusterState::default();
        bootstrap(&mut state, "c", 1);
        let mut join = nodes::tests::joining(5, NodeRole::Worker, None);
        let joined = Command::Node(Box::new(NodeCommand::Join {
            node: join.clone(),
            at_ms: 2,
        }));
        assert_eq!(
            state.apply(&joined, &mut Changes::default()),
            CommandResult::Done
        );
        let mut changes = Changes::default();
        let remove = Command::Node(Box::new(NodeCommand::Remove { node_id: 5 }));
        assert_eq!(state.apply(&remove, &mut changes), CommandResult::Done);
        let cluster = state.cluster.as_ref().unwrap();
        assert!(cluster.is_removed(5) && !cluster.is_removed(1));
        assert!(
            changes.of(cluster::TABLE).next().is_some(),
            "the denial is persisted with the removal"
        );
        // Its id joins no more, with whatever record it brings.
        join.hostname = "elsewhere".into();
        let again = Command::Node(Box::new(NodeCommand::Join {
            node: join,
            at_ms: 3,
        }));
        assert!(matches!(
            state.apply(&again, &mut Changes::default()),
            CommandResult::Rejected { .. }
        ));
        assert!(!state.nodes.contains_key(&5));
    }

    #[test]
    fn every_table_has_its_own_name_on_disk() {
        let state = ClusterState::default();
        let mut names: Vec<&str> = state.tables().iter().map(|table| table.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), state.tables().len());
    }
}
