//! `symphony-ctl events`: what changed in the cluster, as a stream.

use serde::{Deserialize, Serialize};

/// Which events a stream carries; every field left empty lets all through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventFilter {
    /// `leader`, `node`, `service`, `task`; empty: all.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only this service's events (and its tasks').
    #[serde(default)]
    pub service: Option<String>,
    /// Only this node's events (and the tasks on it).
    #[serde(default)]
    pub node_id: Option<u64>,
}

/// The event kinds a filter may name.
pub const EVENT_KINDS: [&str; 4] = ["leader", "node", "service", "task"];

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// The log index that made it: resume with `--since` this.
    pub revision: u64,
    /// When the serving manager applied it.
    pub at_ms: u64,
    /// `leader`, `node`, `service` or `task`.
    pub kind: String,
    /// What happened, in a word or two: a task's state, a node's status, `created`,
    /// `updated`, `updating`, `paused`, `rolled back`, `removed`, `elected`.
    pub action: String,
    #[serde(default)]
    pub node_id: Option<u64>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub task_id: Option<u64>,
    #[serde(default)]
    pub slot: Option<u32>,
    /// The event for people, in one line.
    pub text: String,
}
