//! Symphony's consensus layer: the managers' Raft group and the state it replicates.
//!
//! Module map:
//! - [`types`]: the openraft type configuration ([`TypeConfig`], [`ManagerNode`]);
//! - [`state`]: [`ClusterState`] by table (cluster, nodes, kv) and the [`Command`]s that change
//!   it — the deterministic state machine;
//! - [`store`]: durable storage: the log in its own append-only file (group-committed with
//!   fsync), the state machine rows in redb, and the snapshot file;
//! - [`network`]: Raft RPCs between managers over TCP;
//! - [`handle`]: [`Consensus`], the handle the agent drives (start, propose, read, metrics);
//! - [`events`]: what the log changed in nodes, services and tasks, and leader changes, kept
//!   in memory per replica and numbered by log index, for `symphony-ctl events`;
//! - [`failpoint`]: places where tests and chaos runs make the store fail or slow down.
//!
//! This crate knows nothing of gossip or of the control protocol's requests: the agent wires
//! them together.

mod codec;
pub mod events;
pub mod failpoint;
pub mod handle;
pub mod network;
pub mod state;
pub mod store;
pub mod types;

pub use handle::{
    Consensus, ConsensusConfig, ConsensusError, Leadership, MemberProgress, MembershipView,
    MetricsWatch,
};
pub use state::{
    Availability, CaRotation, ClusterCommand, ClusterInfo, ClusterState, Command, CommandResult,
    Constraint, ConstraintField, ConstraintOp, DesiredState, Driver, FailureAction,
    GossipKeyCommand, GossipKeyRecord, GossipKeyring, Health, HealthCheck, KeySecret, KvChange,
    KvCommand, KvCompacted, KvHistory, KvRecord, NewTask, NodeCertificate, NodeCommand, NodeJoin,
    NodeRecord, NodeRole, NodeStatus, OnIsolation, RebalanceMode, Reservations, Resources,
    RestartCondition, RestartPolicy, ServiceCommand, ServiceMode, ServicePatch, ServiceRecord,
    ServiceSpec, SpecError, TaskCommand, TaskOutcome, TaskRecord, TaskReport, TaskSpec, TaskState,
    Transition, UpdateConfig, UpdateKind, UpdateOrder, UpdatePatch, UpdateState, UpdateStatus,
};
pub use types::{ManagerNode, TypeConfig};

/// Re-exported so the agent can read metrics without naming openraft's paths.
pub use openraft::{RaftMetrics, ServerState};
