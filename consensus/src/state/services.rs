//! The `services` table: what operators declared should run, by name.
//!
//! A service's [`ServiceSpec`] is what its tasks run ([`TaskSpec`]) and how many of them, where
//! and how they are restarted. Every change bumps the service's `version`; a change of what a
//! task runs also bumps its `template_version`, which tasks carry (scaling changes neither the
//! template nor the tasks that run it).
//!
//! A change of the template starts a rolling update: the record keeps the spec it replaced
//! (for `service rollback`) and the update's [`UpdateStatus`], which is cluster state so that a
//! new leader resumes an update where it stood. The orchestrator moves the update along
//! ([`ServiceCommand::SetUpdateState`]); operators start, resume and roll back.

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

use super::CommandResult;
use super::table::{Changes, Table};
use crate::codec::{decode, encode};

/// The most replicas one service may ask for.
pub const MAX_REPLICAS: u32 = 1_000_000;

/// How a task is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// A child process of the worker, in its own process group.
    Process,
    /// A container of the node's Docker engine, from an image already on the node.
    Docker,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Process => "process",
            Driver::Docker => "docker",
        }
    }

    pub fn parse(text: &str) -> Option<Driver> {
        match text {
            "process" => Some(Driver::Process),
            "docker" => Some(Driver::Docker),
            _ => None,
        }
    }
}

/// What one task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub driver: Driver,
    /// The program and its arguments.
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub reservations: Reservations,
    /// What a worker cut off from every manager does with the task.
    pub on_isolation: OnIsolation,
    /// How long a task asked to stop has between SIGTERM and SIGKILL.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ms: u64,
    /// A command that says whether the task is healthy.
    #[serde(default)]
    pub health: Option<HealthCheck>,
    /// The image a `docker` task runs.
    #[serde(default)]
    pub image: Option<String>,
}

/// A health check: `command` run in the task's environment every `interval_ms`; healthy when
/// it exits 0 within `timeout_ms`, unhealthy after `retries` failures in a row (failures in the
/// first `start_period_ms` do not count).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub command: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub start_period_ms: u64,
}

/// How tasks are replaced when the template changes (and, as `rollback`, when it goes back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Slots replaced at once; 0: all at once.
    pub parallelism: u32,
    /// The pause after a group is done before the next starts.
    pub delay_ms: u64,
    /// How long a new task must run (and be healthy, with a health check) to count as done.
    pub monitor_ms: u64,
    pub order: UpdateOrder,
    pub failure_action: FailureAction,
    /// Failed new tasks tolerated, per thousand updated, before the failure action.
    pub max_failure_permille: u32,
}

/// Swarm's defaults: one at a time, no delay, 5 s of monitoring, stop first, pause on failure.
impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay_ms: 0,
            monitor_ms: 5_000,
            order: UpdateOrder::StopFirst,
            failure_action: FailureAction::Pause,
            max_failure_permille: 0,
        }
    }
}

/// Whether a slot's old task stops before or after its new one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    StopFirst,
    StartFirst,
}

impl UpdateOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
    }
}

/// What an update that fails too often does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    Pause,
    Continue,
    Rollback,
}

impl FailureAction {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
            FailureAction::Rollback => "rollback",
        }
    }
}

/// An update or a rollback, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    pub kind: UpdateKind,
    pub state: UpdateState,
    /// The template version it moves the tasks to.
    pub template_version: u64,
    pub started_at_ms: u64,
    pub changed_at_ms: u64,
    /// Why it paused or rolled back.
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateKind {
    Update,
    Rollback,
    /// The same template, moved start-first from the nodes with the most tasks to those with
    /// the fewest, until no node has two more than another.
    Rebalance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateState {
    /// Replacing tasks, group by group.
    Updating,
    /// Stopped by a failure (or asked); `service update` with no change resumes it.
    Paused,
    /// Every slot runs the target template.
    Completed,
}

impl UpdateStatus {
    /// `updating`, `paused`, `completed`, `rolling back`, `rollback paused`, `rolled back`.
    pub fn describe(&self) -> &'static str {
        match (self.kind, self.state) {
            (UpdateKind::Update, UpdateState::Updating) => "updating",
            (UpdateKind::Update, UpdateState::Paused) => "paused",
            (UpdateKind::Update, UpdateState::Completed) => "completed",
            (UpdateKind::Rollback, UpdateState::Updating) => "rolling back",
            (UpdateKind::Rollback, UpdateState::Paused) => "rollback paused",
            (UpdateKind::Rollback, UpdateState::Completed) => "rolled back",
            (UpdateKind::Rebalance, UpdateState::Updating) => "rebalancing",
            (UpdateKind::Rebalance, UpdateState::Paused) => "rebalance paused",
            (UpdateKind::Rebalance, UpdateState::Completed) => "rebalanced",
        }
    }
}

/// Ten seconds, as Docker's and Swarm's default.
pub const DEFAULT_STOP_GRACE_MS: u64 = 10_000;

fn default_stop_grace_ms() -> u64 {
    DEFAULT_STOP_GRACE_MS
}

/// What a task reserves on the node it runs on.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Reservations {
    /// Thousandths of a CPU.
    pub cpus_milli: u64,
    pub memory_bytes: u64,
}

/// What a worker that has reached no manager for longer than its lease does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnIsolation {
    /// Keep running (availability first): a slot may run twice while a partition lasts.
    #[default]
    Keep,
    /// Stop the task; the leader replaces it only after the lease, so a slot never runs twice.
    Stop,
}

impl OnIsolation {
    pub fn as_str(self) -> &'static str {
        match self {
            OnIsolation::Keep => "keep",
            OnIsolation::Stop => "stop",
        }
    }
}

/// How many tasks, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// This many tasks, in slots 0 to `replicas - 1`.
    Replicated { replicas: u32 },
    /// One task on every eligible node.
    Global,
}

/// The node attribute a constraint looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConstraintField {
    NodeId,
    Hostname,
    Role,
    Label(String),
}

/// `==` or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConstraintOp {
    Equal,
    NotEqual,
}

/// `node.labels.zone==a` and the like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub field: ConstraintField,
    pub op: ConstraintOp,
    pub value: String,
}

impl Constraint {
    /// Parses `node.id|node.hostname|node.role|node.labels.KEY` `==|!=` `VALUE`.
    pub fn parse(text: &str) -> Result<Constraint, String> {
        let (lhs, op, value) = if let Some((lhs, value)) = text.split_once("!=") {
            (lhs, ConstraintOp::NotEqual, value)
        } else if let Some((lhs, value)) = text.split_once("==") {
            (lhs, ConstraintOp::Equal, value)
        } else {
            return Err(format!(
                "constraint {text:?} has no == or !=; write e.g. node.labels.zone==a"
            ));
        };
        let lhs = lhs.trim();
        let value = value.trim();
        let field = match lhs {
            "node.id" => ConstraintField::NodeId,
            "node.hostname" => ConstraintField::Hostname,
            "node.role" => ConstraintField::Role,
            other => match other.strip_prefix("node.labels.") {
                Some(key) if !key.is_empty() => ConstraintField::Label(key.to_string()),
                _ => {
                    return Err(format!(
                        "constraint {text:?} looks at {lhs:?}; a constraint looks at node.id, node.hostname, node.role or node.labels.KEY"
                    ));
                }
            },
        };
        if value.is_empty() {
            return Err(format!("constraint {text:?} compares with nothing"));
        }
        if field == ConstraintField::Role && value != "manager" && value != "worker" {
            return Err(format!(
                "constraint {text:?}: a node's role is manager or worker"
            ));
        }
        Ok(Constraint {
            field,
            op,
            value: value.to_string(),
        })
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lhs = match &self.field {
            ConstraintField::NodeId => "node.id".to_string(),
            ConstraintField::Hostname => "node.hostname".to_string(),
            ConstraintField::Role => "node.role".to_string(),
            ConstraintField::Label(key) => format!("node.labels.{key}"),
        };
        let op = match self.op {
            ConstraintOp::Equal => "==",
            ConstraintOp::NotEqual => "!=",
        };
        write!(f, "{lhs}{op}{}", self.value)
    }
}

/// When a task that ended is replaced by a new one in its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub condition: RestartCondition,
    /// How long after a task ended its replacement starts.
    pub delay_ms: u64,
    /// The most restarts (within `window_ms`, when set); `None`: no limit.
    pub max_attempts: Option<u32>,
    pub window_ms: Option<u64>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay_ms: 5_000,
            max_attempts: None,
            window_ms: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Never: a task that ended stays ended.
    None,
    /// When it failed (a non-zero exit, or it could not start).
    OnFailure,
    /// Whenever it ended.
    Any,
}

impl RestartCondition {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartCondition::None => "none",
            RestartCondition::OnFailure => "on-failure",
            RestartCondition::Any => "any",
        }
    }
}

/// Everything an operator declares about a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub task: TaskSpec,
    pub mode: ServiceMode,
    pub constraints: Vec<Constraint>,
    pub restart: RestartPolicy,
    #[serde(default)]
    pub update: UpdateConfig,
    /// How a rollback replaces tasks; `None`: as an update does.
    #[serde(default)]
    pub rollback: Option<UpdateConfig>,
    /// Whether the orchestrator spreads the tasks again by itself when they are uneven.
    #[serde(default)]
    pub rebalance: RebalanceMode,
}

/// When a replicated service's tasks are spread again over the nodes that may run them (after
/// nodes joined or came back): on request only (`service rebalance`), or also by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RebalanceMode {
    #[default]
    Manual,
    Auto,
}

impl RebalanceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RebalanceMode::Manual => "manual",
            RebalanceMode::Auto => "auto",
        }
    }

    pub fn parse(text: &str) -> Option<RebalanceMode> {
        match text {
            "manual" => Some(RebalanceMode::Manual),
            "auto" => Some(RebalanceMode::Auto),
            _ => None,
        }
    }
}

impl ServiceSpec {
    /// Whether going from `self` to `other` changes what tasks run or where they may run: a
    /// change that needs new tasks (scaling, restart and update settings do not).
    pub fn template_differs(&self, other: &ServiceSpec) -> bool {
        self.task != other.task || self.constraints != other.constraints
    }

    /// The settings a rollback runs with.
    pub fn rollback_config(&self) -> UpdateConfig {
        self.rollback.unwrap_or(self.update)
    }
}

/// Why a spec is refused: the field, and one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: &'static str,
    pub reason: String,
}

fn spec_error(field: &'static str, reason: impl Into<String>) -> SpecError {
    SpecError {
        field,
        reason: reason.into(),
    }
}

/// Whether `name` is DNS-like: 1 to 63 lowercase letters, digits and dashes, starting and
/// ending with a letter or digit.
pub fn check_name(name: &str) -> Result<(), SpecError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(spec_error(
            "name",
            format!(
                "{name:?} is not a valid service name: 1 to 63 lowercase letters, digits and dashes, not starting or ending with a dash"
            ),
        ))
    }
}

impl ServiceSpec {
    /// The checks a spec must pass whatever the cluster holds.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self.task.command.first() {
            None => return Err(spec_error("command", "a service needs a command to run")),
            Some(program) if program.is_empty() => {
                return Err(spec_error("command", "the program to run is empty"));
            }
            Some(_) => {}
        }
        if let Some((key, _)) = self
            .task
            .env
            .iter()
            .find(|(key, _)| key.is_empty() || key.contains('=') || key.contains('\0'))
        {
            return Err(spec_error(
                "env",
                format!("{key:?} is not a valid variable name"),
            ));
        }
        if let ServiceMode::Replicated { replicas } = self.mode
            && replicas > MAX_REPLICAS
        {
            return Err(spec_error(
                "replicas",
                format!("{replicas} replicas is more than the {MAX_REPLICAS} a service may have"),
            ));
        }
        if let Some(workdir) = &self.task.workdir
            && !workdir.starts_with('/')
        {
            return Err(spec_error(
                "workdir",
                format!("{workdir:?} is not an absolute path"),
            ));
        }
        if self.task.driver == Driver::Docker
            && self.task.image.as_deref().is_none_or(str::is_empty)
        {
            return Err(spec_error("image", "a docker task needs an --image"));
        }
        if self.task.driver == Driver::Process && self.task.image.is_some() {
            return Err(spec_error(
                "image",
                "an image is for the docker driver; a process task runs a program of the node",
            ));
        }
        if let Some(health) = &self.task.health {
            if health.command.first().is_none_or(String::is_empty) {
                return Err(spec_error("health-cmd", "a health check needs a command"));
            }
            if health.interval_ms == 0 || health.timeout_ms == 0 {
                return Err(spec_error(
                    "health-interval",
                    "a health check needs an interval and a timeout above zero",
                ));
            }
        }
        for (name, config) in [("update", Some(self.update)), ("rollback", self.rollback)] {
            if let Some(config) = config
                && config.max_failure_permille > 1000
            {
                return Err(spec_error(
                    if name == "update" {
                        "update-max-failure-ratio"
                    } else {
                        "rollback-max-failure-ratio"
                    },
                    "a failure ratio is between 0 and 1",
                ));
            }
        }
        if self.restart.max_attempts == Some(0) && self.restart.condition != RestartCondition::None
        {
            return Err(spec_error(
                "restart-max-attempts",
                "0 attempts means never restart: say --restart-condition none",
            ));
        }
        Ok(())
    }
}

/// The fields of a spec a `service update` changes; every field left `None` (or empty) stays as
/// the spec has it when the update is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePatch {
    pub command: Option<Vec<String>>,
    pub env_set: BTreeMap<String, String>,
    pub env_unset: Vec<String>,
    /// `Some(None)` clears it.
    #[serde(default, with = "symphony_wire::double_option")]
    pub workdir: Option<Option<String>>,
    pub image: Option<String>,
    pub replicas: Option<u32>,
    pub constraints_add: Vec<Constraint>,
    pub constraints_remove: Vec<Constraint>,
    pub reserve_cpus_milli: Option<u64>,
    pub reserve_memory_bytes: Option<u64>,
    pub restart_condition: Option<RestartCondition>,
    pub restart_delay_ms: Option<u64>,
    /// `Some(None)`: no limit.
    #[serde(default, with = "symphony_wire::double_option")]
    pub restart_max_attempts: Option<Option<u32>>,
    /// `Some(None)`: no window.
    #[serde(default, with = "symphony_wire::double_option")]
    pub restart_window_ms: Option<Option<u64>>,
    pub on_isolation: Option<OnIsolation>,
    pub stop_grace_ms: Option<u64>,
    /// `Some(None)` removes the health check.
    #[serde(default, with = "symphony_wire::double_option")]
    pub health: Option<Option<HealthCheck>>,
    #[serde(default)]
    pub rebalance: Option<RebalanceMode>,
    pub update: UpdatePatch,
    pub rollback: UpdatePatch,
    /// Replace every task even if nothing they run changed.
    pub force: bool,
}

/// The fields of an [`UpdateConfig`] a patch changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdatePatch {
    pub parallelism: Option<u32>,
    pub delay_ms: Option<u64>,
    pub monitor_ms: Option<u64>,
    pub order: Option<UpdateOrder>,
    pub failure_action: Option<FailureAction>,
    pub max_failure_permille: Option<u32>,
}

impl UpdatePatch {
    pub fn is_empty(&self) -> bool {
        *self == UpdatePatch::default()
    }

    fn apply_to(&self, config: &mut UpdateConfig) {
        if let Some(value) = self.parallelism {
            config.parallelism = value;
        }
        if let Some(value) = self.delay_ms {
            config.delay_ms = value;
        }
        if let Some(value) = self.monitor_ms {
            config.monitor_ms = value;
        }
        if let Some(value) = self.order {
            config.order = value;
        }
        if let Some(value) = self.failure_action {
            config.failure_action = value;
        }
        if let Some(value) = self.max_failure_permille {
            config.max_failure_permille = value;
        }
    }
}

impl ServicePatch {
    /// `spec` with the patch's fields put over it.
    pub fn apply_to(&self, spec: &ServiceSpec) -> Result<ServiceSpec, SpecError> {
        let mut spec = spec.clone();
        let task = &mut spec.task;
        if let Some(command) = &self.command {
            task.command.clone_from(command);
        }
        for key in &self.env_unset {
            task.env.remove(key);
        }
        task.env
            .extend(self.env_set.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(workdir) = &self.workdir {
            task.workdir.clone_from(workdir);
        }
        if let Some(image) = &self.image {
            task.image = Some(image.clone());
        }
        if let Some(cpus) = self.reserve_cpus_milli {
            task.reservations.cpus_milli = cpus;
        }
        if let Some(memory) = self.reserve_memory_bytes {
            task.reservations.memory_bytes = memory;
        }
        if let Some(on_isolation) = self.on_isolation {
            task.on_isolation = on_isolation;
        }
        if let Some(grace) = self.stop_grace_ms {
            task.stop_grace_ms = grace;
        }
        if let Some(health) = &self.health {
            task.health.clone_from(health);
        }
        if let Some(replicas) = self.replicas {
            match &mut spec.mode {
                ServiceMode::Replicated { replicas: current } => *current = replicas,
                ServiceMode::Global => {
                    return Err(spec_error(
                        "replicas",
                        "a global service runs one task on every eligible node; it takes no --replicas",
                    ));
                }
            }
        }
        spec.constraints
            .retain(|constraint| !self.constraints_remove.contains(constraint));
        for constraint in &self.constraints_add {
            if !spec.constraints.contains(constraint) {
                spec.constraints.push(constraint.clone());
            }
        }
        if let Some(condition) = self.restart_condition {
            spec.restart.condition = condition;
        }
        if let Some(delay) = self.restart_delay_ms {
            spec.restart.delay_ms = delay;
        }
        if let Some(max) = self.restart_max_attempts {
            spec.restart.max_attempts = max;
        }
        if let Some(window) = self.restart_window_ms {
            spec.restart.window_ms = window;
        }
        if let Some(rebalance) = self.rebalance {
            spec.rebalance = rebalance;
        }
        self.update.apply_to(&mut spec.update);
        if !self.rollback.is_empty() {
            let mut rollback = spec.rollback_config();
            self.rollback.apply_to(&mut rollback);
            spec.rollback = Some(rollback);
        }
        Ok(spec)
    }
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    pub spec: ServiceSpec,
    /// Bumped by every change.
    pub version: u64,
    /// Bumped when what a task runs changes; tasks carry the one they were made from.
    pub template_version: u64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// The spec the last template change replaced: what `service rollback` goes back to.
    #[serde(default)]
    pub previous: Option<ServiceSpec>,
    /// The last update or rollback.
    #[serde(default)]
    pub update: Option<UpdateStatus>,
}

/// Changes to the services table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceCommand {
    /// Refused when the name is taken or the spec is invalid.
    Create {
        name: String,
        spec: ServiceSpec,
        at_ms: u64,
    },
    /// Changes a replicated service's count; its tasks' template stays.
    Scale {
        name: String,
        replicas: u32,
        at_ms: u64,
    },
    /// Changes the fields the patch names, merged into the spec as it is when the command is
    /// applied. A change of what tasks run (or `force`) starts a rolling update (the old spec is
    /// kept for a rollback); a patch that changes nothing resumes a paused update.
    Update {
        name: String,
        patch: ServicePatch,
        at_ms: u64,
    },
    /// Goes back to the spec the last update replaced, rolling, with the rollback settings.
    Rollback {
        name: String,
        /// Why (an automatic rollback says which tasks failed).
        reason: Option<String>,
        at_ms: u64,
    },
    /// The orchestrator moves the update of `template_version` to `state`; ignored when the
    /// service has moved on to another template since (a stale decision).
    SetUpdateState {
        name: String,
        template_version: u64,
        state: UpdateState,
        message: Option<String>,
        at_ms: u64,
    },
    /// Starts spreading a replicated service's tasks again (an update of kind
    /// [`UpdateKind::Rebalance`] at the same template); refused for a global service and while
    /// an update or a rollback is under way.
    Rebalance { name: String, at_ms: u64 },
    /// Removes the service; its tasks are told to shut down (see the state's apply).
    Remove { name: String },
}

/// The name of this table (its rows on disk, its change watch).
pub const TABLE: &str = "sm_services";

/// The services table, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ServiceTable(BTreeMap<String, ServiceRecord>);

impl std::ops::Deref for ServiceTable {
    type Target = BTreeMap<String, ServiceRecord>;
    fn deref(&self) -> &BTreeMap<String, ServiceRecord> {
        &self.0
    }
}

impl ServiceTable {
    pub(super) fn apply(
        &mut self,
        command: &ServiceCommand,
        changes: &mut Changes,
    ) -> CommandResult {
        match command {
            ServiceCommand::Create { name, spec, at_ms } => {
                if let Err(error) = check_name(name).and_then(|()| spec.validate()) {
                    return rejected(error.to_string());
                }
                if self.0.contains_key(name) {
                    return rejected(format!("a service named {name} exists already"));
                }
                self.0.insert(
                    name.clone(),
                    ServiceRecord {
                        name: name.clone(),
                        spec: spec.clone(),
                        version: 1,
                        template_version: 1,
                        created_at_ms: *at_ms,
                        updated_at_ms: *at_ms,
                        previous: None,
                        update: None,
                    },
                );
                changes.touch(TABLE, name.as_bytes().to_vec());
                CommandResult::Done
            }
            ServiceCommand::Scale {
                name,
                replicas,
                at_ms,
            } => {
                let Some(service) = self.0.get_mut(name) else {
                    return no_such_service(name);
                };
                match &mut service.spec.mode {
                    ServiceMode::Replicated { replicas: current } => {
                        if *replicas > MAX_REPLICAS {
                            return rejected(format!(
                                "{replicas} replicas is more than the {MAX_REPLICAS} a service may have"
                            ));
                        }
                        if *current == *replicas {
                            return CommandResult::Done;
                        }
                        *current = *replicas;
                    }
                    ServiceMode::Global => {
                        return rejected(format!(
                            "{name} is a global service: it runs one task on every eligible node and cannot be scaled"
                        ));
                    }
                }
                service.version += 1;
                service.updated_at_ms = *at_ms;
                changes.touch(TABLE, name.as_bytes().to_vec());
                CommandResult::Done
            }
            ServiceCommand::Update { name, patch, at_ms } => {
                let Some(service) = self.0.get_mut(name) else {
                    return no_such_service(name);
                };
                let spec = match patch.apply_to(&service.spec) {
                    Ok(spec) => spec,
                    Err(error) => return rejected(error.to_string()),
                };
                if let Err(error) = spec.validate() {
                    return rejected(error.to_string());
                }
                if service.spec == spec && !patch.force {
                    // The same spec again: resumes a paused update, else changes nothing.
                    let Some(update) = service.update.as_mut().filter(|update| {
                        update.state == UpdateState::Paused
                            && update.template_version == service.template_version
                    }) else {
                        return CommandResult::Done;
                    };
                    update.state = UpdateState::Updating;
                    update.message = None;
                    update.changed_at_ms = *at_ms;
                } else {
                    if patch.force || service.spec.template_differs(&spec) {
                        service.previous = Some(service.spec.clone());
                        service.template_version += 1;
                        service.update = Some(UpdateStatus {
                            kind: UpdateKind::Update,
                            state: UpdateState::Updating,
                            template_version: service.template_version,
                            started_at_ms: *at_ms,
                            changed_at_ms: *at_ms,
                            message: None,
                        });
                    }
                    service.spec = spec;
                    service.version += 1;
                }
                service.updated_at_ms = *at_ms;
                changes.touch(TABLE, name.as_bytes().to_vec());
                CommandResult::Done
            }
            ServiceCommand::Rollback {
                name,
                reason,
                at_ms,
            } => {
                let Some(service) = self.0.get_mut(name) else {
                    return no_such_service(name);
                };
                let Some(mut previous) = service.previous.take() else {
                    return rejected(format!(
                        "{name} has no earlier spec to roll back to (it was never updated)"
                    ));
                };
                // Scaling is not an update, so a rollback does not undo it: the service keeps
                // its count.
                previous.mode = service.spec.mode;
                // Going back is itself undoable: the spec left becomes the previous one.
                service.previous = Some(std::mem::replace(&mut service.spec, previous));
                service.template_version += 1;
                service.version += 1;
                service.update = Some(UpdateStatus {
                    kind: UpdateKind::Rollback,
                    state: UpdateState::Updating,
                    template_version: service.template_version,
                    started_at_ms: *at_ms,
                    changed_at_ms: *at_ms,
                    message: reason.clone(),
                });
                service.updated_at_ms = *at_ms;
                changes.touch(TABLE, name.as_bytes().to_vec());
                CommandResult::Done
            }
            ServiceCommand::SetUpdateState {
                name,
                template_version,
                state,
                message,
                at_ms,
            } => {
                let Some(service) = self.0.get_mut(name) else {
                    return no_such_service(name);
                };
                let Some(update) = service.update.as_mut().filter(|update| {
                    update.template_version == *template_version
                        && service.template_version == *template_version
                        && update.state == UpdateState::Updating
                }) else {
                    return CommandResult::Done;
                };
                update.state = *state;
                if message.is_some() {
                    update.message.clone_from(message);
                }
                update.changed_at_ms = *at_ms;
                changes.touch(TABLE, name.as_bytes().to_vec());
                CommandResult::Done
            }
            ServiceCommand::Rebalance { name, at_ms } => {
                let Some(service) = self.0.get_mut(name) else {
                    return no_such_service(name);
                };
                if service.spec.mode == ServiceMode::Global {
                    return rejected(format!(
                        "{name} is a global service: it runs one task on every eligible node, so there is nothing to rebalance"
                    ));
                }
                if let Some(update) = service.update.as_ref().filter(|update| {
                    update.state != UpdateState::Completed
                        && update.template_version == service.template_version
                }) {
                    match (update.kind, update.state) {
                        (UpdateKind::Rebalance, UpdateState::Updating) => {
                            return CommandResult::Done;
                        }
                        // A paused rebalance starts again.
                        (UpdateKind::Rebalance, UpdateState::Paused) => {}
                        // Its new tasks would be of the new template: the update would go on
                        // without its checks.
                        _ => {
                            return rejected(format!(
                                "{name} is {}: rebalance it once the update is completed or rolled back",
                                update.describe()
                            ));
                        }
                    }
                }
                service.update = Some(UpdateStatus {
                    kind: UpdateKind::Rebalance,
                    state: UpdateState::Updating,
                    template_version: service.template_version,
                    started_at_ms: *at_ms,
                    changed_at_ms: *at_ms,
                    message: None,
                });
                service.version += 1;
                service.updated_at_ms = *at_ms;
                changes.touch(TABLE, name.as_bytes().to_vec());
                CommandResult::Done
            }
            ServiceCommand::Remove { name } => {
                if self.0.remove(name).is_none() {
                    return no_such_service(name);
                }
                changes.touch(TABLE, name.as_bytes().to_vec());
                CommandResult::Done
            }
        }
    }
}

fn rejected(reason: String) -> CommandResult {
    CommandResult::Rejected { reason }
}

fn no_such_service(name: &str) -> CommandResult {
    rejected(format!("no service named {name}"))
}

impl Table for ServiceTable {
    fn name(&self) -> &'static str {
        TABLE
    }

    fn row_keys(&self) -> Vec<Vec<u8>> {
        self.0.keys().map(|name| name.as_bytes().to_vec()).collect()
    }

    fn encode_row(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let name = std::str::from_utf8(key)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        self.0.get(name).map(encode).transpose()
    }

    fn load_row(&mut self, _key: &[u8], value: &[u8]) -> io::Result<()> {
        let record: ServiceRecord = decode(value)?;
        self.0.insert(record.name.clone(), record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::service_spec as spec;
    use super::*;

    #[test]
    fn constraints_parse_and_print_back() {
        for text in [
            "node.labels.zone==a",
            "node.role!=manager",
            "node.hostname==web-1",
            "node.id==42",
        ] {
            assert_eq!(Constraint::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(
            Constraint::parse(" node.labels.disk == ssd ")
                .unwrap()
                .value,
            "ssd"
        );
        for bad in [
            "node.labels.zone=a",
            "zone==a",
            "node.labels.==a",
            "node.role==boss",
            "node.id==",
        ] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_dns_like() {
        for good in ["web", "a", "web-1", "0cache"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Web", "web_1", "-web", "web-", &"a".repeat(64), "web.1"] {
            let error = check_name(bad).unwrap_err();
            assert_eq!(error.field, "name");
        }
    }

    #[test]
    fn an_invalid_spec_names_its_field() {
        let mut empty = spec(1);
        empty.task.command.clear();
        assert_eq!(empty.validate().unwrap_err().field, "command");
        let mut env = spec(1);
        env.task.env.insert("A=B".into(), "x".into());
        assert_eq!(env.validate().unwrap_err().field, "env");
        let mut relative = spec(1);
        relative.task.workdir = Some("tmp".into());
        assert_eq!(relative.validate().unwrap_err().field, "workdir");
        assert_eq!(
            spec(MAX_REPLICAS + 1).validate().unwrap_err().field,
            "replicas"
        );
        assert!(spec(3).validate().is_ok());
    }

    #[test]
    fn an_update_of_the_template_starts_a_rolling_update_and_a_rollback_goes_back() {
        let mut table = ServiceTable::default();
        let mut changes = Changes::default();
        let create = ServiceCommand::Create {
            name: "web".into(),
            spec: spec(3),
            at_ms: 1,
        };
        assert_eq!(table.apply(&create, &mut changes), CommandResult::Done);
        let update = |patch: ServicePatch, at_ms| ServiceCommand::Update {
            name: "web".into(),
            patch,
            at_ms,
        };
        // Settings only: a new version, no new template, no update.
        let mut settings = spec(3);
        settings.update.parallelism = 2;
        let parallelism = ServicePatch {
            update: UpdatePatch {
                parallelism: Some(2),
                ..UpdatePatch::default()
            },
            ..ServicePatch::default()
        };
        assert_eq!(
            table.apply(&update(parallelism, 2), &mut changes),
            CommandResult::Done
        );
        assert_eq!(table["web"].spec, settings);
        assert_eq!(
            (table["web"].version, table["web"].template_version),
            (2, 1)
        );
        assert!(table["web"].update.is_none());
        // What tasks run: a new template and an update under way.
        let mut changed = settings.clone();
        changed.task.env.insert("GREETING".into(), "hi".into());
        let greeting = ServicePatch {
            env_set: BTreeMap::from([("GREETING".into(), "hi".into())]),
            ..ServicePatch::default()
        };
        assert_eq!(
            table.apply(&update(greeting, 3), &mut changes),
            CommandResult::Done
        );
        let web = &table["web"];
        assert_eq!(web.spec, changed);
        assert_eq!((web.version, web.template_version), (3, 2));
        assert_eq!(web.previous.as_ref(), Some(&settings));
        let status = web.update.clone().unwrap();
        assert_eq!(
            (status.kind, status.state, status.template_version),
            (UpdateKind::Update, UpdateState::Updating, 2)
        );
        // A stale decision about another template changes nothing; a current one pauses.
        let pause = |template_version| ServiceCommand::SetUpdateState {
            name: "web".into(),
            template_version,
            state: UpdateState::Paused,
            message: Some("task 7 failed".into()),
            at_ms: 4,
        };
        table.apply(&pause(1), &mut changes);
        assert_eq!(
            table["web"].update.as_ref().unwrap().state,
            UpdateState::Updating
        );
        table.apply(&pause(2), &mut changes);
        assert_eq!(table["web"].update.as_ref().unwrap().describe(), "paused");
        // A patch that changes nothing resumes it.
        table.apply(&update(ServicePatch::default(), 5), &mut changes);
        assert_eq!(
            table["web"].update.as_ref().unwrap().state,
            UpdateState::Updating
        );
        // A bad patch is refused whole.
        let bad = ServicePatch {
            command: Some(vec![]),
            env_set: BTreeMap::from([("OTHER".into(), "x".into())]),
            ..ServicePatch::default()
        };
        assert!(matches!(
            table.apply(&update(bad, 6), &mut changes),
            CommandResult::Rejected { .. }
        ));
        assert_eq!(table["web"].spec, changed);
        // Scaled after the update: the rollback keeps the count.
        let scale = ServiceCommand::Scale {
            name: "web".into(),
            replicas: 5,
            at_ms: 6,
        };
        assert_eq!(table.apply(&scale, &mut changes), CommandResult::Done);
        changed.mode = ServiceMode::Replicated { replicas: 5 };
        settings.mode = ServiceMode::Replicated { replicas: 5 };
        // Rollback: back to the previous spec, as a new template, itself undoable.
        let rollback = ServiceCommand::Rollback {
            name: "web".into(),
            reason: Some("update failed".into()),
            at_ms: 7,
        };
        assert_eq!(table.apply(&rollback, &mut changes), CommandResult::Done);
        let web = &table["web"];
        assert_eq!(web.spec, settings);
        assert_eq!(web.previous.as_ref(), Some(&changed));
        assert_eq!(web.template_version, 3);
        assert_eq!(web.update.as_ref().unwrap().describe(), "rolling back");
        let mut fresh = ServiceTable::default();
        fresh.apply(&create, &mut changes);
        assert!(matches!(
            fresh.apply(&rollback, &mut changes),
            CommandResult::Rejected { .. }
        ));
    }

    #[test]
    fn docker_tasks_need_an_image_and_health_checks_a_command() {
        let mut docker = spec(1);
        docker.task.driver = Driver::Docker;
        assert_eq!(docker.validate().unwrap_err().field, "image");
        docker.task.image = Some("probe:1".into());
        assert!(docker.validate().is_ok());
        let mut process = spec(1);
        process.task.image = Some("probe:1".into());
        assert_eq!(process.validate().unwrap_err().field, "image");
        let mut health = spec(1);
        health.task.health = Some(HealthCheck {
            command: vec![],
            interval_ms: 1000,
            timeout_ms: 1000,
            retries: 3,
            start_period_ms: 0,
        });
        assert_eq!(health.validate().unwrap_err().field, "health-cmd");
    }

    /// Found by the property tests: `Some(None)` ("clear it") was written as nil and read
    /// back as `None` ("leave it"), so a patch that removed a health check, a working dir or a
    /// restart limit left them as they were once it went through the log.
    #[test]
    fn a_patch_that_clears_fields_clears_them_after_the_log() {
        let mut with_all = spec(1);
        with_all.task.workdir = Some("/srv".into());
        with_all.task.health = Some(HealthCheck {
            command: vec!["true".into()],
            interval_ms: 1000,
            timeout_ms: 1000,
            retries: 3,
            start_period_ms: 0,
        });
        with_all.restart.max_attempts = Some(3);
        with_all.restart.window_ms = Some(60_000);
        let clear = ServicePatch {
            workdir: Some(None),
            health: Some(None),
            restart_max_attempts: Some(None),
            restart_window_ms: Some(None),
            ..ServicePatch::default()
        };
        let logged: ServicePatch = decode(&encode(&clear).unwrap()).unwrap();
        assert_eq!(logged, clear);
        let cleared = logged.apply_to(&with_all).unwrap();
        assert_eq!(cleared.task.workdir, None);
        assert_eq!(cleared.task.health, None);
        assert_eq!(cleared.restart.max_attempts, None);
        assert_eq!(cleared.restart.window_ms, None);
        // A patch that leaves them leaves them, after the log too.
        let leave: ServicePatch = decode(&encode(&ServicePatch::default()).unwrap()).unwrap();
        assert_eq!(leave.apply_to(&with_all).unwrap(), with_all);
    }

    /// A rebalance is an update of the same template; refused for a global service and while
    /// an update runs, idempotent while one rebalance runs.
    #[test]
    fn a_rebalance_keeps_the_template_and_waits_for_no_update() {
        let mut table = ServiceTable::default();
        let mut changes = Changes::default();
        let create = ServiceCommand::Create {
            name: "web".into(),
            spec: spec(4),
            at_ms: 1,
        };
        assert_eq!(table.apply(&create, &mut changes), CommandResult::Done);
        let rebalance = |at_ms| ServiceCommand::Rebalance {
            name: "web".into(),
            at_ms,
        };
        assert_eq!(
            table.apply(&rebalance(2), &mut changes),
            CommandResult::Done
        );
        let web = &table["web"];
        assert_eq!((web.version, web.template_version), (2, 1));
        let update = web.update.clone().unwrap();
        assert_eq!(
            (update.kind, update.state, update.template_version),
            (UpdateKind::Rebalance, UpdateState::Updating, 1)
        );
        assert_eq!(update.describe(), "rebalancing");
        // Asked again while it runs: nothing changes.
        assert_eq!(
            table.apply(&rebalance(3), &mut changes),
            CommandResult::Done
        );
        assert_eq!(table["web"].update.as_ref().unwrap().started_at_ms, 2);
        // An update takes over; a rebalance waits for it.
        let greeting = ServiceCommand::Update {
            name: "web".into(),
            patch: ServicePatch {
                env_set: BTreeMap::from([("GREETING".into(), "hi".into())]),
                ..ServicePatch::default()
            },
            at_ms: 4,
        };
        assert_eq!(table.apply(&greeting, &mut changes), CommandResult::Done);
        let CommandResult::Rejected { reason } = table.apply(&rebalance(5), &mut changes) else {
            panic!("a rebalance during an update was taken");
        };
        assert!(reason.contains("updating"), "{reason}");
        // The rebalance setting is a patchable field, not a new template.
        let auto = ServiceCommand::Update {
            name: "web".into(),
            patch: ServicePatch {
                rebalance: Some(RebalanceMode::Auto),
                ..ServicePatch::default()
            },
            at_ms: 6,
        };
        assert_eq!(table.apply(&auto, &mut changes), CommandResult::Done);
        assert_eq!(table["web"].spec.rebalance, RebalanceMode::Auto);
        assert_eq!(table["web"].template_version, 2);
        // A global service has nothing to rebalance.
        let mut global = spec(1);
        global.mode = ServiceMode::Global;
        let create = ServiceCommand::Create {
            name: "probe".into(),
            spec: global,
            at_ms: 7,
        };
        assert_eq!(table.apply(&create, &mut changes), CommandResult::Done);
        let global = ServiceCommand::Rebalance {
            name: "probe".into(),
            at_ms: 8,
        };
        assert!(matches!(
            table.apply(&global, &mut changes),
            CommandResult::Rejected { .. }
        ));
    }

    #[test]
    fn create_scale_and_remove() {
        let mut table = ServiceTable::default();
        let mut changes = Changes::default();
        let create = ServiceCommand::Create {
            name: "web".into(),
            spec: spec(3),
            at_ms: 10,
        };
        assert_eq!(table.apply(&create, &mut changes), CommandResult::Done);
        assert!(matches!(
            table.apply(&create, &mut changes),
            CommandResult::Rejected { .. }
        ));
        let scale = ServiceCommand::Scale {
            name: "web".into(),
            replicas: 5,
            at_ms: 20,
        };
        assert_eq!(table.apply(&scale, &mut changes), CommandResult::Done);
        let web = &table["web"];
        assert_eq!(web.spec.mode, ServiceMode::Replicated { replicas: 5 });
        assert_eq!((web.version, web.template_version), (2, 1));
        assert_eq!(web.updated_at_ms, 20);
        assert!(matches!(
            table.apply(
                &ServiceCommand::Remove {
                    name: "nope".into()
                },
                &mut changes
            ),
            CommandResult::Rejected { .. }
        ));
        assert_eq!(
            table.apply(&ServiceCommand::Remove { name: "web".into() }, &mut changes),
            CommandResult::Done
        );
        assert!(table.is_empty());
        assert_eq!(table.encode_row(b"web").unwrap(), None);
    }
}
