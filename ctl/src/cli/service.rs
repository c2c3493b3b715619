//! `symphony-ctl service ...`: declaring services and looking at their tasks.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use serde_json::json;

use super::parse;
use super::{CliError, ReadArgs, Table, ago, done, emit, fields, now_ms};
use crate::Client;
use crate::proto::{
    ExplainInfo, HealthView, Response, ServiceInfo, ServiceLogLine, ServicePatchView,
    ServiceSpecView, TaskInfo, UpdatePatchView, UpdateView,
};

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Declare a service: what to run, how many, where; the cluster keeps it running.
    Create(Box<CreateArgs>),
    /// List the services: mode, running and desired tasks, driver, last change.
    Ls {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// A service's tasks: slot, node, desired and current state, exit code, error.
    Ps {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// A service's spec, version and task counts.
    Inspect {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Why each pending task is pending: every node, every filter it fails, and what would
    /// unblock it.
    Explain {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Change replicated services' counts: `scale web=5 api=2`.
    Scale {
        #[arg(required = true, value_name = "NAME=REPLICAS", value_parser = parse_scale)]
        services: Vec<(String, u32)>,
    },
    /// A service's output from every node, each line prefixed with its task and node.
    Logs {
        name: String,
        /// Keep printing new lines as they are written.
        #[arg(long, short)]
        follow: bool,
        /// Only the last N lines of each task.
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
    },
    /// Change a service: the flags given, nothing else. A change of what tasks run replaces
    /// them rolling (--update-* settings); with no flags, a paused update resumes.
    Update(Box<UpdateArgs>),
    /// Go back to the spec the last update replaced, rolling (--rollback-* settings).
    Rollback { name: String },
    /// Spread a replicated service's tasks evenly again over the nodes that may run them
    /// (after nodes joined or came back): tasks move start-first, --update-parallelism at a
    /// time, from the nodes with the most to those with the fewest.
    Rebalance { name: String },
    /// Remove services; their tasks stop.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The service's name: lowercase letters, digits and dashes.
    name: String,
    /// How many tasks (a replicated service; 1 by default).
    #[arg(long, conflicts_with = "mode")]
    replicas: Option<u32>,
    /// `replicated` (a count of tasks) or `global` (one task on every eligible node).
    #[arg(long, default_value = "replicated")]
    mode: String,
    /// How tasks run: `process`.
    #[arg(long, default_value = "process")]
    driver: String,
    /// An environment variable of the tasks, KEY=VALUE; repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = super::parse_label)]
    env: Vec<(String, String)>,
    /// The tasks' working directory (an absolute path on the node).
    #[arg(long)]
    workdir: Option<String>,
    /// Where tasks may run: node.id|node.hostname|node.role|node.labels.KEY, == or !=, a
    /// value; repeatable, all must hold.
    #[arg(long, value_name = "EXPR")]
    constraint: Vec<String>,
    /// CPUs each task reserves on its node, e.g. 0.5.
    #[arg(long, value_name = "CPUS", value_parser = parse::cpus_milli)]
    reserve_cpu: Option<u64>,
    /// Memory each task reserves on its node, e.g. 512MiB or 2GiB.
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    reserve_memory: Option<u64>,
    /// When a task that ended is replaced: none, on-failure or any.
    #[arg(long, default_value = "any")]
    restart_condition: String,
    /// How long after a task ends its replacement starts.
    #[arg(long, default_value = "5s", value_parser = parse::duration_ms)]
    restart_delay: u64,
    /// The most restarts (within --restart-window, when given).
    #[arg(long, value_name = "N")]
    restart_max_attempts: Option<u32>,
    /// The window --restart-max-attempts counts in.
    #[arg(long, value_name = "DURATION", value_parser = parse::duration_ms)]
    restart_window: Option<u64>,
    /// What a node cut off from every manager does with the tasks: keep (run on; a slot may
    /// run twice while it lasts) or stop (a slot never runs twice in the cluster).
    #[arg(long, default_value = "keep")]
    on_isolation: String,
    /// How long a task asked to stop has between SIGTERM and SIGKILL.
    #[arg(long, default_value = "10s", value_parser = parse::duration_ms)]
    stop_grace: u64,
    /// The image a `docker` task runs (it must be on the node already).
    #[arg(long)]
    image: Option<String>,
    /// When the tasks are spread again over the nodes: manual (on `service rebalance`) or auto
    /// (also by itself, once every task runs and a node has two more than another could take).
    #[arg(long, default_value = "manual")]
    rebalance: String,
    #[command(flatten)]
    health: HealthArgs,
    #[command(flatten)]
    update: UpdateFlags,
    #[command(flatten)]
    rollback: RollbackFlags,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// A health check, run through `sh -c` in the task's environment.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The check: healthy when it exits 0, e.g. 'curl -fs localhost:8080/'.
    #[arg(long, value_name = "COMMAND")]
    health_cmd: Option<String>,
    /// How often it runs.
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    health_interval: Option<u64>,
    /// How long one run may take.
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    health_timeout: Option<u64>,
    /// Failures in a row that make the task unhealthy.
    #[arg(long, value_name = "N")]
    health_retries: Option<u32>,
    /// Failures in this first while do not count.
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    health_start_period: Option<u64>,
}

impl HealthArgs {
    fn given(&self) -> bool {
        self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_retries.is_some()
            || self.health_start_period.is_some()
    }

    /// The check, with defaults for what is not given: every 5 s, 5 s each, 3 retries.
    fn view(&self) -> Result<Option<HealthView>, CliError> {
        let Some(command) = &self.health_cmd else {
            if self.given() {
                return Err(CliError::Failed(
                    "--health-interval, --health-timeout, --health-retries and --health-start-period need a --health-cmd".into(),
                ));
            }
            return Ok(None);
        };
        Ok(Some(HealthView {
            command: vec!["sh".into(), "-c".into(), command.clone()],
            interval_ms: self.health_interval.unwrap_or(5_000),
            timeout_ms: self.health_timeout.unwrap_or(5_000),
            retries: self.health_retries.unwrap_or(3),
            start_period_ms: self.health_start_period.unwrap_or(0),
        }))
    }
}

/// How a rolling update replaces tasks.
#[derive(Debug, Args)]
pub struct UpdateFlags {
    /// Tasks replaced at once (0: all at once; default 1).
    #[arg(long, value_name = "N")]
    update_parallelism: Option<u32>,
    /// The pause between groups (default 0s).
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    update_delay: Option<u64>,
    /// How long a new task must run (and be healthy) to count as done (default 5s).
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    update_monitor: Option<u64>,
    /// stop-first (default) or start-first.
    #[arg(long, value_name = "ORDER")]
    update_order: Option<String>,
    /// What too many failed new tasks do: pause (default), continue or rollback.
    #[arg(long, value_name = "ACTION")]
    update_failure_action: Option<String>,
    /// Failed new tasks tolerated, as a share of those updated (0 to 1; default 0).
    #[arg(long, value_parser = parse_ratio, value_name = "RATIO")]
    update_max_failure_ratio: Option<u32>,
}

/// How a rollback replaces tasks (each defaults to the update's).
#[derive(Debug, Args)]
pub struct RollbackFlags {
    #[arg(long, value_name = "N")]
    rollback_parallelism: Option<u32>,
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    rollback_delay: Option<u64>,
    #[arg(long, value_parser = parse::duration_ms, value_name = "DURATION")]
    rollback_monitor: Option<u64>,
    #[arg(long, value_name = "ORDER")]
    rollback_order: Option<String>,
    /// pause or continue.
    #[arg(long, value_name = "ACTION")]
    rollback_failure_action: Option<String>,
    #[arg(long, value_parser = parse_ratio, value_name = "RATIO")]
    rollback_max_failure_ratio: Option<u32>,
}

impl UpdateFlags {
    fn patch(&self) -> UpdatePatchView {
        UpdatePatchView {
            parallelism: self.update_parallelism,
            delay_ms: self.update_delay,
            monitor_ms: self.update_monitor,
            order: self.update_order.clone(),
            failure_action: self.update_failure_action.clone(),
            max_failure_permille: self.update_max_failure_ratio,
        }
    }
}

impl RollbackFlags {
    fn patch(&self) -> UpdatePatchView {
        UpdatePatchView {
            parallelism: self.rollback_parallelism,
            delay_ms: self.rollback_delay,
            monitor_ms: self.rollback_monitor,
            order: self.rollback_order.clone(),
            failure_action: self.rollback_failure_action.clone(),
            max_failure_permille: self.rollback_max_failure_ratio,
        }
    }
}

/// `base` with the patch's fields put over it.
fn with_patch(base: &UpdateView, patch: &UpdatePatchView) -> UpdateView {
    UpdateView {
        parallelism: patch.parallelism.unwrap_or(base.parallelism),
        delay_ms: patch.delay_ms.unwrap_or(base.delay_ms),
        monitor_ms: patch.monitor_ms.unwrap_or(base.monitor_ms),
        order: patch.order.clone().unwrap_or_else(|| base.order.clone()),
        failure_action: patch
            .failure_action
            .clone()
            .unwrap_or_else(|| base.failure_action.clone()),
        max_failure_permille: patch
            .max_failure_permille
            .unwrap_or(base.max_failure_permille),
    }
}

/// A ratio between 0 and 1, in thousandths.
fn parse_ratio(text: &str) -> Result<u32, String> {
    let ratio: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a ratio; write e.g. 0.2"))?;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(format!("{text} is not between 0 and 1"));
    }
    Ok((ratio * 1000.0).round() as u32)
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    name: String,
    #[arg(long)]
    replicas: Option<u32>,
    /// Set an environment variable, KEY=VALUE; repeatable.
    #[arg(long, alias = "env-add", value_name = "KEY=VALUE", value_parser = super::parse_label)]
    env: Vec<(String, String)>,
    /// Remove an environment variable; repeatable.
    #[arg(long, value_name = "KEY")]
    env_rm: Vec<String>,
    #[arg(long)]
    workdir: Option<String>,
    /// Add a placement constraint; repeatable.
    #[arg(long, value_name = "EXPR")]
    constraint_add: Vec<String>,
    /// Remove a placement constraint; repeatable.
    #[arg(long, value_name = "EXPR")]
    constraint_rm: Vec<String>,
    #[arg(long, value_name = "CPUS", value_parser = parse::cpus_milli)]
    reserve_cpu: Option<u64>,
    #[arg(long, value_name = "SIZE", value_parser = parse::size)]
    reserve_memory: Option<u64>,
    #[arg(long)]
    restart_condition: Option<String>,
    #[arg(long, value_parser = parse::duration_ms)]
    restart_delay: Option<u64>,
    #[arg(long, value_name = "N")]
    restart_max_attempts: Option<u32>,
    #[arg(long, value_parser = parse::duration_ms)]
    restart_window: Option<u64>,
    #[arg(long)]
    on_isolation: Option<String>,
    #[arg(long, value_parser = parse::duration_ms)]
    stop_grace: Option<u64>,
    /// manual or auto (see `service create --help`).
    #[arg(long)]
    rebalance: Option<String>,
    #[arg(long)]
    image: Option<String>,
    #[command(flatten)]
    health: HealthArgs,
    /// Remove the health check.
    #[arg(long, conflicts_with = "health_cmd")]
    no_healthcheck: bool,
    #[command(flatten)]
    update: UpdateFlags,
    #[command(flatten)]
    rollback: RollbackFlags,
    /// Replace every task even if nothing they run changed.
    #[arg(long)]
    force: bool,
    /// Replace the command with what follows `--` (also implied by a command after `--`).
    #[arg(long)]
    args: bool,
    /// The new program and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

impl UpdateArgs {
    fn patch(self) -> Result<(String, ServicePatchView), CliError> {
        if self.args && self.command.is_empty() {
            return Err(CliError::Failed(
                "--args needs the new command after --".into(),
            ));
        }
        let health = if self.no_healthcheck {
            Some(None)
        } else {
            self.health.view()?.map(Some)
        };
        let patch = ServicePatchView {
            command: (!self.command.is_empty()).then_some(self.command),
            env_set: self.env.into_iter().collect(),
            env_unset: self.env_rm,
            workdir: self.workdir.map(Some),
            image: self.image,
            replicas: self.replicas,
            constraints_add: self.constraint_add,
            constraints_remove: self.constraint_rm,
            reserve_cpus_milli: self.reserve_cpu,
            reserve_memory_bytes: self.reserve_memory,
            restart_condition: self.restart_condition,
            restart_delay_ms: self.restart_delay,
            restart_max_attempts: self.restart_max_attempts.map(Some),
            restart_window_ms: self.restart_window.map(Some),
            on_isolation: self.on_isolation,
            stop_grace_ms: self.stop_grace,
            health,
            update: self.update.patch(),
            rollback: self.rollback.patch(),
            rebalance: self.rebalance,
            force: self.force,
        };
        Ok((self.name, patch))
    }
}

impl CreateArgs {
    fn spec(self) -> Result<(String, ServiceSpecView), CliError> {
        let health = self.health.view()?;
        let update = with_patch(&UpdateView::default(), &self.update.patch());
        let rollback_patch = self.rollback.patch();
        let rollback = (rollback_patch != UpdatePatchView::default())
            .then(|| with_patch(&update, &rollback_patch));
        let spec = ServiceSpecView {
            driver: self.driver,
            command: self.command,
            env: self.env.into_iter().collect(),
            workdir: self.workdir,
            replicas: match self.mode.as_str() {
                "replicated" => Some(self.replicas.unwrap_or(1)),
                _ => self.replicas,
            },
            mode: self.mode,
            constraints: self.constraint,
            reserve_cpus_milli: self.reserve_cpu.unwrap_or(0),
            reserve_memory_bytes: self.reserve_memory.unwrap_or(0),
            restart_condition: self.restart_condition,
            restart_delay_ms: self.restart_delay,
            restart_max_attempts: self.restart_max_attempts,
            restart_window_ms: self.restart_window,
            on_isolation: self.on_isolation,
            stop_grace_ms: self.stop_grace,
            image: self.image,
            health,
            update,
            rollback,
            rebalance: self.rebalance,
        };
        Ok((self.name, spec))
    }
}

fn parse_scale(text: &str) -> Result<(String, u32), String> {
    let (name, count) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not NAME=REPLICAS"))?;
    let count = count
        .parse()
        .map_err(|_| format!("'{count}' is not a number of replicas"))?;
    Ok((name.to_string(), count))
}

/// Whether the command follows a stream until interrupted (`logs --follow`).
pub fn is_follow(command: &ServiceCommand) -> bool {
    matches!(command, ServiceCommand::Logs { follow: true, .. })
}

pub async fn run(client: &Client, json: bool, command: ServiceCommand) -> Result<(), CliError> {
    match command {
        ServiceCommand::Create(args) => {
            let (name, spec) = (*args).spec()?;
            let service = client.service_create(name, spec).await?;
            emit(json, json!(service), || {
                format!(
                    "Service {} created ({} task{} wanted); `symphony-ctl service ps {}` shows them.\n",
                    service.name,
                    service.desired,
                    if service.desired == 1 { "" } else { "s" },
                    service.name
                )
            });
        }
        ServiceCommand::Ls { read } => {
            let services = client.service_list(read.consistency()).await?;
            emit(json, json!(services), || services_text(&services));
        }
        ServiceCommand::Ps { name, read } => {
            let tasks = client.service_ps(name, read.consistency()).await?;
            emit(json, json!(tasks), || tasks_text(&tasks));
        }
        ServiceCommand::Inspect { name, read } => {
            let service = client.service_inspect(name, read.consistency()).await?;
            emit(json, json!(service), || service_text(&service));
        }
        ServiceCommand::Explain { name, read } => {
            let info = client.service_explain(name, read.consistency()).await?;
            emit(json, json!(info), || explain_text(&info));
        }
        ServiceCommand::Scale { services } => {
            for (name, replicas) in services {
                let service = client.service_scale(name, replicas).await?;
                emit(json, json!(service), || {
                    format!("{} scaled to {}\n", service.name, service.desired)
                });
            }
        }
        ServiceCommand::Update(args) => {
            let (name, patch) = (*args).patch()?;
            let service = client.service_update(name, patch).await?;
            emit(json, json!(service), || match &service.update {
                Some(update)
                    if update.template_version == service.template_version
                        && update.state != "completed" =>
                {
                    format!(
                        "{} updated: {} ({}/{} tasks); `symphony-ctl service inspect {}` follows it.\n",
                        service.name, update.state, update.done, update.total, service.name
                    )
                }
                _ => format!("{} updated (version {}).\n", service.name, service.version),
            });
        }
        ServiceCommand::Rebalance { name } => {
            let service = client.service_rebalance(name).await?;
            emit(json, json!(service), || {
                format!(
                    "{} rebalancing; `symphony-ctl service inspect {}` follows it.\n",
                    service.name, service.name
                )
            });
        }
        ServiceCommand::Rollback { name } => {
            let service = client.service_rollback(name).await?;
            emit(json, json!(service), || {
                format!(
                    "{} rolling back to its previous spec; `symphony-ctl service inspect {}` follows it.\n",
                    service.name, service.name
                )
            });
        }
        ServiceCommand::Rm { names } => {
            for name in names {
                done(json, client.service_remove(name).await?);
            }
        }
        ServiceCommand::Logs { name, follow, tail } => {
            let mut stream = client.service_logs(name.clone(), tail, follow).await?;
            while let Some(item) = stream.next().await {
                match item.map_err(crate::ClientError::from)? {
                    Response::Logs(lines) => {
                        for line in &lines {
                            if json {
                                println!("{}", json!(line));
                            } else {
                                println!("{}", log_line_text(&name, line));
                            }
                        }
                    }
                    other => {
                        return Err(CliError::Failed(format!(
                            "the agent sent a {} answer in a log stream",
                            other.kind()
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `web.1.17@host | text`: service, slot, task and node.
fn log_line_text(service: &str, line: &ServiceLogLine) -> String {
    let task = match line.slot {
        Some(slot) => format!("{service}.{slot}.{}", line.task_id),
        None => format!("{service}.{}", line.task_id),
    };
    let marker = if line.stream == "stderr" { "!" } else { "|" };
    format!("{task}@{} {marker} {}", line.hostname, line.text)
}

fn services_text(services: &[ServiceInfo]) -> String {
    let mut table = Table::new(["NAME", "MODE", "REPLICAS", "DRIVER", "CHANGED", "COMMAND"]);
    let now = now_ms();
    for service in services {
        table.row([
            service.name.clone(),
            service.spec.mode.clone(),
            format!("{}/{}", service.running, service.desired),
            service.spec.driver.clone(),
            ago(now, service.updated_at_ms),
            service.spec.command.join(" "),
        ]);
    }
    table.render()
}

fn tasks_text(tasks: &[TaskInfo]) -> String {
    let mut table = Table::new([
        "TASK", "SLOT", "NODE", "DESIRED", "STATE", "HEALTH", "SINCE", "EXIT", "ERROR",
    ]);
    let now = now_ms();
    let show = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    for task in tasks {
        let problem = task.error.clone().or_else(|| task.pending_reason.clone());
        table.row([
            task.task_id.to_string(),
            show(task.slot.map(|slot| slot.to_string())),
            show(
                task.hostname
                    .clone()
                    .or(task.node_id.map(|id| id.to_string())),
            ),
            task.desired.clone(),
            task.state.clone(),
            show(task.health.clone()),
            ago(now, task.since_ms),
            show(task.exit_code.map(|code| code.to_string())),
            show(problem),
        ]);
    }
    table.render()
}

fn service_text(service: &ServiceInfo) -> String {
    let spec = &service.spec;
    let show = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    let states: Vec<String> = service
        .states
        .iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect();
    let env: BTreeMap<&String, &String> = spec.env.iter().collect();
    fields([
        ("Name", service.name.clone()),
        ("Version", service.version.to_string()),
        ("Template version", service.template_version.to_string()),
        ("Mode", spec.mode.clone()),
        (
            "Tasks",
            format!(
                "{} running of {} wanted ({})",
                service.running,
                service.desired,
                if states.is_empty() {
                    "none".to_string()
                } else {
                    states.join(", ")
                }
            ),
        ),
        ("Driver", spec.driver.clone()),
        ("Command", spec.command.join(" ")),
        (
            "Env",
            if env.is_empty() {
                "-".to_string()
            } else {
                env.iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("Workdir", show(spec.workdir.clone())),
        (
            "Constraints",
            if spec.constraints.is_empty() {
                "-".to_string()
            } else {
                spec.constraints.join(", ")
            },
        ),
        (
            "Reserves",
            format!(
                "{} CPUs, {} bytes of memory",
                spec.reserve_cpus_milli as f64 / 1000.0,
                spec.reserve_memory_bytes
            ),
        ),
        (
            "Restart",
            format!(
                "{}, after {} ms, at most {} attempts{}",
                spec.restart_condition,
                spec.restart_delay_ms,
                spec.restart_max_attempts
                    .map_or("unlimited".to_string(), |n| n.to_string()),
                spec.restart_window_ms
                    .map_or(String::new(), |w| format!(" in {w} ms"))
            ),
        ),
        ("On isolation", spec.on_isolation.clone()),
        ("Rebalance", spec.rebalance.clone()),
        ("Stop grace", format!("{} ms", spec.stop_grace_ms)),
        ("Image", show(spec.image.clone())),
        (
            "Health check",
            spec.health.as_ref().map_or("-".to_string(), |health| {
                format!(
                    "{} every {} ms, {} ms timeout, {} retries, {} ms start period",
                    health.command.join(" "),
                    health.interval_ms,
                    health.timeout_ms,
                    health.retries,
                    health.start_period_ms
                )
            }),
        ),
        ("Update config", update_config_text(&spec.update)),
        (
            "Rollback config",
            spec.rollback
                .as_ref()
                .map_or("as update".to_string(), update_config_text),
        ),
        (
            "Update",
            service.update.as_ref().map_or("-".to_string(), |update| {
                format!(
                    "{} {}/{} to template {}{}",
                    update.state,
                    update.done,
                    update.total,
                    update.template_version,
                    update
                        .message
                        .as_ref()
                        .map_or(String::new(), |why| format!(" ({why})"))
                )
            }),
        ),
    ])
}

fn update_config_text(config: &UpdateView) -> String {
    format!(
        "{} at a time, {} ms apart, {} ms monitor, {}, on failure {} (tolerating {:.1}%)",
        config.parallelism,
        config.delay_ms,
        config.monitor_ms,
        config.order,
        config.failure_action,
        config.max_failure_permille as f64 / 10.0
    )
}

fn explain_text(info: &ExplainInfo) -> String {
    if info.pending.is_empty() {
        return format!("No task of {} is pending.\n", info.service);
    }
    let mut out = String::new();
    for task in &info.pending {
        out.push_str(&format!(
            "Task {}{} is pending: {}\n",
            task.task_id,
            task.slot
                .map_or(String::new(), |slot| format!(" (slot {slot})")),
            task.reason
                .as_deref()
                .unwrap_or("not looked at by the scheduler yet")
        ));
        let mut table = Table::new(["  NODE", "HOSTNAME", "FILTER", "WHY"]);
        for node in &task.nodes {
            if node.failures.is_empty() {
                table.row([
                    format!("  {}", node.node_id),
                    node.hostname.clone(),
                    "-".to_string(),
                    "would take it now".to_string(),
                ]);
            }
            for failure in &node.failures {
                table.row([
                    format!("  {}", node.node_id),
                    node.hostname.clone(),
                    failure.filter.clone(),
                    failure.detail.clone(),
                ]);
            }
        }
        out.push_str(&table.render());
        if !task.hints.is_empty() {
            out.push_str("  What would unblock it:\n");
            for hint in &task.hints {
                out.push_str(&format!("  - {hint}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_arguments_and_log_prefixes() {
        assert_eq!(parse_scale("web=5").unwrap(), ("web".into(), 5));
        assert!(parse_scale("web").is_err());
        assert!(parse_scale("web=many").is_err());
        let line = ServiceLogLine {
            task_id: 17,
            slot: Some(1),
            node_id: 3,
            hostname: "w1".into(),
            at_ms: 0,
            stream: "stdout".into(),
            text: "hello".into(),
        };
        assert_eq!(log_line_text("web", &line), "web.1.17@w1 | hello");
    }
}
