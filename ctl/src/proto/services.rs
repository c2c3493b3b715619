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
    /// The image of a `docker` task.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub health: Option<HealthView>,
    #[serde(default)]
    pub update: UpdateView,
    /// `None`: as `update`.
    #[serde(default)]
    pub rollback: Option<UpdateView>,
    /// `manual` (only on `service rebalance`) or `auto`.
    #[serde(default = "manual")]
    pub rebalance: String,
}

fn manual() -> String {
    "manual".into()
}

/// What `service create` writes when a flag is not given.
impl Default for ServiceSpecView {
    fn default() -> Self {
        ServiceSpecView {
            driver: "process".into(),
            command: Vec::new(),
            env: BTreeMap::new(),
            workdir: None,
            mode: "replicated".into(),
            replicas: Some(1),
            constraints: Vec::new(),
            reserve_cpus_milli: 0,
            reserve_memory_bytes: 0,
            restart_condition: "any".into(),
            restart_delay_ms: 5_000,
            restart_max_attempts: None,
            restart_window_ms: None,
            on_isolation: "keep".into(),
            stop_grace_ms: 10_000,
            image: None,
            health: None,
            update: UpdateView::default(),
            rollback: None,
            rebalance: manual(),
        }
    }
}

/// A health check: a command run in the task's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    pub command: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

/// How a rolling update (or rollback) replaces tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateView {
    /// Slots at once; 0: all.
    pub parallelism: u32,
    pub delay_ms: u64,
    pub monitor_ms: u64,
    /// `stop-first` or `start-first`.
    pub order: String,
    /// `pause`, `continue` or `rollback`.
    pub failure_action: String,
    /// Failed new tasks tolerated per thousand updated.
    pub max_failure_permille: u32,
}

impl Default for UpdateView {
    fn default() -> Self {
        UpdateView {
            parallelism: 1,
            delay_ms: 0,
            monitor_ms: 5_000,
            order: "stop-first".into(),
            failure_action: "pause".into(),
            max_failure_permille: 0,
        }
    }
}

/// What `service update` changes: every field left out stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePatchView {
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env_set: BTreeMap<String, String>,
    #[serde(default)]
    pub env_unset: Vec<String>,
    /// `Some(None)`: no working dir.
    #[serde(default, with = "symphony_wire::double_option")]
    pub workdir: Option<Option<String>>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub replicas: Option<u32>,
    #[serde(default)]
    pub constraints_add: Vec<String>,
    #[serde(default)]
    pub constraints_remove: Vec<String>,
    #[serde(default)]
    pub reserve_cpus_milli: Option<u64>,
    #[serde(default)]
    pub reserve_memory_bytes: Option<u64>,
    #[serde(default)]
    pub restart_condition: Option<String>,
    #[serde(default)]
    pub restart_delay_ms: Option<u64>,
    /// `Some(None)`: no limit.
    #[serde(default, with = "symphony_wire::double_option")]
    pub restart_max_attempts: Option<Option<u32>>,
    /// `Some(None)`: no window.
    #[serde(default, with = "symphony_wire::double_option")]
    pub restart_window_ms: Option<Option<u64>>,
    #[serde(default)]
    pub on_isolation: Option<String>,
    #[serde(default)]
    pub stop_grace_ms: Option<u64>,
    /// `Some(None)`: no health check.
    #[serde(default, with = "symphony_wire::double_option")]
    pub health: Option<Option<HealthView>>,
    #[serde(default)]
    pub update: UpdatePatchView,
    #[serde(default)]
    pub rollback: UpdatePatchView,
    /// `manual` or `auto`.
    #[serde(default)]
    pub rebalance: Option<String>,
    /// Replace every task even if nothing changed.
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePatchView {
    #[serde(default)]
    pub parallelism: Option<u32>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
    #[serde(default)]
    pub monitor_ms: Option<u64>,
    #[serde(default)]
    pub order: Option<String>,
    #[serde(default)]
    pub failure_action: Option<String>,
    #[serde(default)]
    pub max_failure_permille: Option<u32>,
}

/// The last update or rollback of a service, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatusView {
    /// `updating`, `paused`, `completed`, `rolling back`, `rollback paused`, `rolled back`.
    pub state: String,
    /// The template version it moves the tasks to.
    pub template_version: u64,
    /// Slots whose task runs that template, and all slots.
    pub done: u32,
    pub total: u32,
    pub started_at_ms: u64,
    pub changed_at_ms: u64,
    /// Why it paused or rolled back.
    pub message: Option<String>,
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
    /// The last update or rollback.
    #[serde(default)]
    pub update: Option<UpdateStatusView>,
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
    /// `starting`, `healthy` or `unhealthy`, for a task with a health check.
    #[serde(default)]
    pub health: Option<String>,
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
