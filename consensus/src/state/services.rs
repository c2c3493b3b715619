//! The `services` table: what operators declared should run, by name.
//!
//! A service's [`ServiceSpec`] is what its tasks run ([`TaskSpec`]) and how many of them, where
//! and how they are restarted. Every change bumps the service's `version`; a change of what a
//! task runs also bumps its `template_version`, which tasks carry (scaling changes neither the
//! template nor the tasks that run it).

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

use super::CommandResult;
use super::table::{Changes, Table};
use crate::codec::{decode, encode};

/// The most replicas one service may ask for.
pub const MAX_REPLICAS: u32 = 1_000_000;

/// How a task is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// A child process of the worker, in its own process group.
    Process,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Process => "process",
        }
    }

    pub fn parse(text: &str) -> Option<Driver> {
        match text {
            "process" => Some(Driver::Process),
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
