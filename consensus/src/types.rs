//! The openraft type configuration: what our log entries, node ids and nodes are.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::{Command, CommandResult};

/// How a manager is reached by the other managers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagerNode {
    /// Where this manager serves Raft RPCs (`host:port`).
    pub raft_addr: String,
    /// Where this manager serves the node-to-node API (`host:port`).
    pub remote_addr: String,
}

impl fmt::Display for ManagerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} remote={}", self.raft_addr, self.remote_addr)
    }
}

openraft::declare_raft_types!(
    /// Symphony's Raft types: u64 node ids, [`Command`] entries, [`ManagerNode`] addresses.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = ManagerNode,
);

/// The Raft node handle with our types and state machine.
pub type Raft = openraft::Raft<TypeConfig, crate::store::StateMachineStore>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
/// A snapshot's body: the MessagePack encoding of [`crate::store::SnapshotPayload`].
pub type SnapshotData = Vec<u8>;
