//! Services and tasks as operators see them: the spec as `service create` writes it (sizes and
//! durations parsed, names as words), and what `service ls`, `ps`, `inspect`, `explain` and
//! `logs` show. The agent checks the spec and turns it into the cluster state's; a field it
//! refuses is named in the error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A service's spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpecView {
    /// `process`.
    pub driver: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// `replicated` or `global`.
    pub mode: String,
    /// For a replicated service.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// `node.id|node.hostname|node.role|node.labels.KEY` `==|!=` `VALUE`.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Thousandths of a CPU.
    #[serde(default)]
    pub reserve_cpus_milli: u64,
    #[serde(default)]
    pub reserve_memory_bytes: u64,
    /// `none`, `on-failure` or `any`.
    pub restart_condition: String,
    pub restart_delay_ms: u64,
    #[serde(default)]
    pub restart_max_attempts: Option<u32>,
    #[serde(default)]
    pub restart_window_ms: Option<u64>,
    /// `keep` or `stop`.
    pub on_isolation: String,
    pub stop_grace_ms: u64,
}

/// One service, with its tasks counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    pub spec: ServiceSpecView,
    pub version: u64,
    pub template_version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Tasks it should have: the replicas, or a global service's eligible nodes.
    pub desired: u32,
    /// Tasks that run.
    pub running: u32,
    /// Tasks the orchestrator wants, by observed state.
    pub states: BTreeMap<String, u32>,
}

/// One task, as `service ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub task_id: u64,
    pub service: String,
    pub slot: Option<u32>,
    pub node_id: Option<u64>,
    pub hostname: Option<String>,
    pub desired: String,
    pub state: String,
    /// When it reached its state.
    pub since_ms: u64,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub pending_reason: Option<String>,
    pub attempt: u32,
    pub created_at_ms: u64,
    pub template_version: u64,
    /// Every state it reached, with when.
    pub transitions: Vec<(String, u64)>,
}

/// `service explain`: why each pending task is pending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExplainInfo {
    pub service: String,
    pub pending: Vec<PendingTask>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingTask {
    pub task_id: u64,
    pub slot: Option<u32>,
    pub reason: Option<String>,
    /// Every node the task could go to, and what it fails.
    pub nodes: Vec<NodeVerdictInfo>,
    /// What would unblock it.
    pub hints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVerdictInfo {
    pub node_id: u64,
    pub hostname: String,
    /// Empty when the node would take the task now.
    pub failures: Vec<FilterFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterFailure {
    /// `status`, `availability`, `constraint`, `cpu` or `memory`.
    pub filter: String,
    pub detail: String,
}

/// One line of a service's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLogLine {
    pub task_id: u64,
    pub slot: Option<u32>,
    pub node_id: u64,
    pub hostname: String,
    pub at_ms: u64,
    /// `stdout`, `stderr`, or `notice` for what the agent says about the stream itself (a
    /// node it cannot reach).
    pub stream: String,
    pub text: String,
}
