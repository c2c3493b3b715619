//! Services: create, list, inspect, ps, explain, scale, update, rollback, remove, and their
//! logs.
//!
//! - this file: the handlers, and how services and tasks are shown;
//! - [`spec`]: the spec as operators write it, to and from the cluster state's;
//! - [`logs`]: a service's output gathered from every node it ran on.

pub mod logs;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet};

use symphony_consensus::{
    Availability, ClusterState, Command, Consensus, DesiredState, NodeStatus, ServiceCommand,
    ServiceMode, ServiceRecord, ServiceSpec, SpecError, TaskRecord, TaskState, UpdateKind,
};
use symphony_ctl::proto::{
    CtlError, DoneInfo, ErrorCode, ExplainInfo, FilterFailure, NodeVerdictInfo, PendingTask,
    ReadConsistency, Response, ServiceInfo, ServicePatchView, ServiceSpecView, TaskInfo,
    UpdateStatusView,
};

use crate::manager::propose::{propose, propose_client, read};
use crate::manager::scheduler::decide::explain as explain_task;
use crate::manager::scheduler::filters::{bytes, cpus, meets};

pub async fn create(
    consensus: &Consensus,
    name: String,
    view: ServiceSpecView,
) -> Result<Response, CtlError> {
    symphony_consensus::state::services::check_name(&name).map_err(spec::refused)?;
    let spec = spec::from_view(&view)?;
    let (exists, too_big) = consensus.read_stale(|state| {
        (
            state.services.contains_key(&name),
            beyond_every_node(state, &spec),
        )
    });
    if exists {
        return Err(CtlError::new(
            ErrorCode::AlreadyInitialised,
            format!(
                "a service named {name} exists already; `symphony-ctl service rm {name}` removes it"
            ),
        )
        .not_applied());
    }
    if let Some(error) = too_big {
        return Err(spec::refused(error));
    }
    let command = Command::Service(Box::new(ServiceCommand::Create {
        name: name.clone(),
        spec,
        at_ms: crate::now_ms(),
    }));
    propose_client(consensus, command).await?;
    inspect(consensus, name, ReadConsistency::Stale).await
}

/// A reservation no node of the cluster could ever satisfy.
fn beyond_every_node(state: &ClusterState, spec: &ServiceSpec) -> Option<SpecError> {
    let needs = spec.task.reservations;
    let nodes: Vec<_> = state
        .nodes
        .values()
        .filter(|node| node.status != NodeStatus::Left)
        .collect();
    let most_memory = nodes
        .iter()
        .map(|node| node.resources.memory_bytes)
        .max()
        .unwrap_or(0);
    let most_cpus = nodes
        .iter()
        .map(|node| u64::from(node.resources.cpus) * 1000)
        .max()
        .unwrap_or(0);
    if needs.memory_bytes > most_memory {
        return Some(SpecError {
            field: "reserve-memory",
            reason: format!(
                "{} is more than any node has (the largest has {})",
                bytes(needs.memory_bytes),
                bytes(most_memory)
            ),
        });
    }
    if needs.cpus_milli > most_cpus {
        return Some(SpecError {
            field: "reserve-cpu",
            reason: format!(
                "{} CPUs is more than any node has (the largest has {})",
                cpus(needs.cpus_milli),
                cpus(most_cpus)
            ),
        });
    }
    None
}

pub async fn list(
    consensus: &Consensus,
    consistency: ReadConsistency,
) -> Result<Response, CtlError> {
    let services = read(consensus, consistency, |state| {
        state
            .services
            .values()
            .map(|service| service_info(state, service))
            .collect()
    })
    .await?;
    Ok(Response::Services(services))
}

pub async fn inspect(
    consensus: &Consensus,
    name: String,
    consistency: ReadConsistency,
) -> Result<Response, CtlError> {
    let info = read(consensus, consistency, |state| {
        state
            .services
            .get(&name)
            .map(|service| service_info(state, service))
    })
    .await?
    .ok_or_else(|| no_such_service(&name))?;
    Ok(Response::Service(Box::new(info)))
}

pub async fn ps(
    consensus: &Consensus,
    name: String,
    consistency: ReadConsistency,
) -> Result<Response, CtlError> {
    let tasks = read(consensus, consistency, |state| {
        state.services.contains_key(&name).then(|| {
            let mut tasks: Vec<TaskInfo> = state
                .tasks
                .of_service(&name)
                .map(|task| task_info(state, task))
                .collect();
            tasks.sort_by_key(|task| (task.slot, task.node_id, task.task_id));
            tasks
        })
    })
    .await?
    .ok_or_else(|| no_such_service(&name))?;
    Ok(Response::Tasks(tasks))
}

pub async fn explain(
    consensus: &Consensus,
    name: String,
    consistency: ReadConsistency,
) -> Result<Response, CtlError> {
    let info = read(consensus, consistency, |state| {
        state.services.contains_key(&name).then(|| ExplainInfo {
            service: name.clone(),
            pending: state
                .tasks
                .of_service(&name)
                .filter(|task| {
                    task.state < TaskState::Assigned && task.desired == DesiredState::Running
                })
                .map(|task| pending_task(state, task))
                .collect(),
        })
    })
    .await?
    .ok_or_else(|| no_such_service(&name))?;
    Ok(Response::Explain(Box::new(info)))
}

fn pending_task(state: &ClusterState, task: &TaskRecord) -> PendingTask {
    let verdicts = explain_task(state, task);
    let filters: BTreeSet<&str> = verdicts
        .iter()
        .flat_map(|verdict| verdict.failures.iter().map(|failure| failure.filter))
        .collect();
    let hints = filters.iter().filter_map(|filter| hint(filter)).collect();
    PendingTask {
        task_id: task.id,
        slot: task.slot,
        reason: task.pending_reason.clone(),
        nodes: verdicts
            .into_iter()
            .map(|verdict| NodeVerdictInfo {
                node_id: verdict.node_id,
                hostname: verdict.hostname,
                failures: verdict
                    .failures
                    .into_iter()
                    .map(|failure| FilterFailure {
                        filter: failure.filter.to_string(),
                        detail: failure.detail,
                    })
                    .collect(),
            })
            .collect(),
        hints,
    }
}

/// What would unblock a task that `filter` holds back.
fn hint(filter: &str) -> Option<String> {
    Some(match filter {
        "status" => "bring a down node back, or add a node (start an agent and `join` it)".to_string(),
        "availability" => "make a node active again: `symphony-ctl node update ID --availability active`".to_string(),
        "constraint" => "label a node to meet the constraints (`symphony-ctl node update ID --label-add KEY=VALUE`), or create the service with other constraints".to_string(),
        "driver" => "run a Docker engine on a node (its agent looks for it at --docker-socket when it starts: restart the agent), or use --driver process".to_string(),
        "cpu" => "free CPUs on a node (other tasks reserve them), add a node with more, or reserve fewer (--reserve-cpu)".to_string(),
        "memory" => "free memory on a node (other tasks reserve it), add a node with more, or reserve less (--reserve-memory)".to_string(),
        _ => return None,
    })
}

pub async fn scale(
    consensus: &Consensus,
    name: String,
    replicas: u32,
) -> Result<Response, CtlError> {
    let command = Command::Service(Box::new(ServiceCommand::Scale {
        name: name.clone(),
        replicas,
        at_ms: crate::now_ms(),
    }));
    propose_client(consensus, command).await?;
    inspect(consensus, name, ReadConsistency::Stale).await
}

/// `service update`: the patch is merged into the spec where the command is applied; it is
/// tried on this replica first so that a bad one is refused with its field named.
pub async fn update(
    consensus: &Consensus,
    name: String,
    view: ServicePatchView,
) -> Result<Response, CtlError> {
    let patch = spec::patch_from_view(&view)?;
    let checked = consensus.read_stale(|state| {
        let service = state.services.get(&name)?;
        Some(
            patch
                .apply_to(&service.spec)
                .and_then(|spec| spec.validate().map(|()| spec))
                .map(|spec| beyond_every_node(state, &spec)),
        )
    });
    match checked {
        None => return Err(no_such_service(&name)),
        Some(Err(error)) => return Err(spec::refused(error)),
        Some(Ok(Some(error))) => return Err(spec::refused(error)),
        Some(Ok(None)) => {}
    }
    let command = Command::Service(Box::new(ServiceCommand::Update {
        name: name.clone(),
        patch,
        at_ms: crate::now_ms(),
    }));
    propose_client(consensus, command).await?;
    inspect(consensus, name, ReadConsistency::Stale).await
}

/// `service rollback`: back to the spec the last update replaced.
pub async fn rollback(consensus: &Consensus, name: String) -> Result<Response, CtlError> {
    let previous = consensus.read_stale(|state| {
        state
            .services
            .get(&name)
            .map(|service| service.previous.is_some())
    });
    match previous {
        None => return Err(no_such_service(&name)),
        Some(false) => {
            return Err(CtlError::new(
                ErrorCode::BadRequest,
                format!("{name} has no earlier spec to roll back to (it was never updated)"),
            )
            .not_applied());
        }
        Some(true) => {}
    }
    let command = Command::Service(Box::new(ServiceCommand::Rollback {
        name: name.clone(),
        reason: Some("asked for with `service rollback`".to_string()),
        at_ms: crate::now_ms(),
    }));
    propose_client(consensus, command).await?;
    inspect(consensus, name, ReadConsistency::Stale).await
}

/// Starts spreading a replicated service's tasks evenly again (refused, with the reason, for a
/// global service or while an update is under way or paused).
pub async fn rebalance(consensus: &Consensus, name: String) -> Result<Response, CtlError> {
    if !consensus.read_stale(|state| state.services.contains_key(&name)) {
        return Err(no_such_service(&name));
    }
    let command = Command::Service(Box::new(ServiceCommand::Rebalance {
        name: name.clone(),
        at_ms: crate::now_ms(),
    }));
    propose_client(consensus, command).await?;
    inspect(consensus, name, ReadConsistency::Stale).await
}

pub async fn remove(consensus: &Consensus, name: String) -> Result<Response, CtlError> {
    if !consensus.read_stale(|state| state.services.contains_key(&name)) {
        return Err(no_such_service(&name));
    }
    propose(
        consensus,
        Command::Service(Box::new(ServiceCommand::Remove { name: name.clone() })),
    )
    .await?;
    Ok(Response::Done(DoneInfo {
        message: format!("service {name} was removed; its tasks are stopping"),
    }))
}

fn no_such_service(name: &str) -> CtlError {
    CtlError::new(
        ErrorCode::NotFound,
        format!("no service named {name}; `symphony-ctl service ls` lists them"),
    )
}

fn service_info(state: &ClusterState, service: &ServiceRecord) -> ServiceInfo {
    let mut states: BTreeMap<String, u32> = BTreeMap::new();
    let mut running = 0;
    for task in state.tasks.of_service(&service.name) {
        if task.desired != DesiredState::Running {
            continue;
        }
        if task.state == TaskState::Running {
            running += 1;
        }
        *states.entry(task.state.as_str().to_string()).or_default() += 1;
    }
    let desired = match service.spec.mode {
        ServiceMode::Replicated { replicas } => replicas,
        ServiceMode::Global => {
            let eligible = state
                .nodes
                .values()
                .filter(|node| {
                    node.status != NodeStatus::Left
                        && node.availability != Availability::Drain
                        && meets(node, &service.spec.constraints, service.spec.task.driver)
                })
                .count();
            u32::try_from(eligible).unwrap_or(u32::MAX)
        }
    };
    ServiceInfo {
        name: service.name.clone(),
        spec: spec::to_view(&service.spec),
        version: service.version,
        template_version: service.template_version,
        created_at_ms: service.created_at_ms,
        updated_at_ms: service.updated_at_ms,
        desired,
        running,
        states,
        update: service.update.as_ref().map(|update| {
            let done = state
                .tasks
                .of_service(&service.name)
                .filter(|task| {
                    task.desired == DesiredState::Running
                        && task.state == TaskState::Running
                        && (task.template_version >= update.template_version
                            // A rollback leaves the slots it finds on the spec it restores.
                            || (update.kind == UpdateKind::Rollback
                                && task.spec == service.spec.task))
                })
                .count();
            UpdateStatusView {
                state: update.describe().to_string(),
                template_version: update.template_version,
                done: u32::try_from(done).unwrap_or(u32::MAX).min(desired),
                total: desired,
                started_at_ms: update.started_at_ms,
                changed_at_ms: update.changed_at_ms,
                message: update.message.clone(),
            }
        }),
    }
}

fn task_info(state: &ClusterState, task: &TaskRecord) -> TaskInfo {
    TaskInfo {
        task_id: task.id,
        service: task.service.clone(),
        slot: task.slot,
        node_id: task.node_id,
        hostname: task
            .node_id
            .and_then(|node| state.nodes.get(&node))
            .map(|node| node.hostname.clone()),
        desired: task.desired.as_str().to_string(),
        state: task.state.as_str().to_string(),
        since_ms: task.since_ms(),
        exit_code: task.exit_code,
        error: task.error.clone(),
        pending_reason: task.pending_reason.clone(),
        attempt: task.attempt,
        created_at_ms: task.created_at_ms,
        template_version: task.template_version,
        transitions: task
            .transitions
            .iter()
            .map(|transition| (transition.state.as_str().to_string(), transition.at_ms))
            .collect(),
        health: task.health.map(|health| health.as_str().to_string()),
    }
}

/// How many tasks each node should be running.
pub fn tasks_per_node(state: &ClusterState) -> BTreeMap<u64, u32> {
    let mut counts = BTreeMap::new();
    for task in state.tasks.values() {
        if let Some(node) = task.node_id
            && task.desired == DesiredState::Running
            && task.state >= TaskState::Assigned
            && !task.state.is_terminal()
        {
            *counts.entry(node).or_default() += 1;
        }
    }
    counts
}
