//! A service spec between its two forms: as operators write it (the protocol's view, words and
//! parsed numbers) and as the cluster state keeps it. A refusal names the field.

use symphony_consensus::{
    Constraint, Driver, FailureAction, HealthCheck, OnIsolation, RebalanceMode, Reservations,
    RestartCondition, RestartPolicy, ServiceMode, ServicePatch, ServiceSpec, SpecError, TaskSpec,
    UpdateConfig, UpdateOrder, UpdatePatch,
};
use symphony_ctl::proto::{
    CtlError, ErrorCode, HealthView, ServicePatchView, ServiceSpecView, UpdatePatchView, UpdateView,
};

/// The refusal of an invalid spec: one sentence naming the field.
pub fn refused(error: SpecError) -> CtlError {
    CtlError::new(
        ErrorCode::BadRequest,
        format!("invalid service spec: {error}"),
    )
    .not_applied()
}

fn field(field: &'static str, reason: impl Into<String>) -> CtlError {
    refused(SpecError {
        field,
        reason: reason.into(),
    })
}

fn driver(text: &str) -> Result<Driver, CtlError> {
    Driver::parse(text).ok_or_else(|| {
        field(
            "driver",
            format!("unknown driver {text:?}; the drivers are: process, docker"),
        )
    })
}

fn restart_condition(text: &str) -> Result<RestartCondition, CtlError> {
    match text {
        "none" => Ok(RestartCondition::None),
        "on-failure" => Ok(RestartCondition::OnFailure),
        "any" => Ok(RestartCondition::Any),
        other => Err(field(
            "restart-condition",
            format!("unknown restart condition {other:?}; it is none, on-failure or any"),
        )),
    }
}

fn rebalance(text: &str) -> Result<RebalanceMode, CtlError> {
    RebalanceMode::parse(text).ok_or_else(|| {
        field(
            "rebalance",
            format!("unknown rebalance mode {text:?}; it is manual or auto"),
        )
    })
}

fn on_isolation(text: &str) -> Result<OnIsolation, CtlError> {
    match text {
        "keep" => Ok(OnIsolation::Keep),
        "stop" => Ok(OnIsolation::Stop),
        other => Err(field(
            "on-isolation",
            format!("unknown isolation policy {other:?}; it is keep or stop"),
        )),
    }
}

fn order(prefix: &'static str, text: &str) -> Result<UpdateOrder, CtlError> {
    match text {
        "stop-first" => Ok(UpdateOrder::StopFirst),
        "start-first" => Ok(UpdateOrder::StartFirst),
        other => Err(field(
            prefix,
            format!("unknown order {other:?}; it is stop-first or start-first"),
        )),
    }
}

fn failure_action(prefix: &'static str, text: &str) -> Result<FailureAction, CtlError> {
    match text {
        "pause" => Ok(FailureAction::Pause),
        "continue" => Ok(FailureAction::Continue),
        "rollback" if prefix.starts_with("update") => Ok(FailureAction::Rollback),
        other => Err(field(
            prefix,
            format!(
                "unknown failure action {other:?}; it is pause, continue{}",
                if prefix.starts_with("update") {
                    " or rollback"
                } else {
                    ""
                }
            ),
        )),
    }
}

fn health(view: &HealthView) -> HealthCheck {
    HealthCheck {
        command: view.command.clone(),
        interval_ms: view.interval_ms,
        timeout_ms: view.timeout_ms,
        retries: view.retries,
        start_period_ms: view.start_period_ms,
    }
}

fn health_view(check: &HealthCheck) -> HealthView {
    HealthView {
        command: check.command.clone(),
        interval_ms: check.interval_ms,
        timeout_ms: check.timeout_ms,
        retries: check.retries,
        start_period_ms: check.start_period_ms,
    }
}

fn update_config(rollback: bool, view: &UpdateView) -> Result<UpdateConfig, CtlError> {
    let (order_field, action_field) = if rollback {
        ("rollback-order", "rollback-failure-action")
    } else {
        ("update-order", "update-failure-action")
    };
    Ok(UpdateConfig {
        parallelism: view.parallelism,
        delay_ms: view.delay_ms,
        monitor_ms: view.monitor_ms,
        order: order(order_field, &view.order)?,
        failure_action: failure_action(action_field, &view.failure_action)?,
        max_failure_permille: view.max_failure_permille,
    })
}

fn update_view(config: &UpdateConfig) -> UpdateView {
    UpdateView {
        parallelism: config.parallelism,
        delay_ms: config.delay_ms,
        monitor_ms: config.monitor_ms,
        order: config.order.as_str().to_string(),
        failure_action: config.failure_action.as_str().to_string(),
        max_failure_permille: config.max_failure_permille,
    }
}

fn update_patch(rollback: bool, view: &UpdatePatchView) -> Result<UpdatePatch, CtlError> {
    let (order_field, action_field) = if rollback {
        ("rollback-order", "rollback-failure-action")
    } else {
        ("update-order", "update-failure-action")
    };
    Ok(UpdatePatch {
        parallelism: view.parallelism,
        delay_ms: view.delay_ms,
        monitor_ms: view.monitor_ms,
        order: view
            .order
            .as_deref()
            .map(|text| order(order_field, text))
            .transpose()?,
        failure_action: view
            .failure_action
            .as_deref()
            .map(|text| failure_action(action_field, text))
            .transpose()?,
        max_failure_permille: view.max_failure_permille,
    })
}

fn constraints(texts: &[String]) -> Result<Vec<Constraint>, CtlError> {
    texts
        .iter()
        .map(|text| Constraint::parse(text).map_err(|reason| field("constraint", reason)))
        .collect()
}

/// A `service update` as the cluster state merges it; the merged spec is checked where it is
/// applied.
pub fn patch_from_view(view: &ServicePatchView) -> Result<ServicePatch, CtlError> {
    Ok(ServicePatch {
        command: view.command.clone(),
        env_set: view.env_set.clone(),
        env_unset: view.env_unset.clone(),
        workdir: view.workdir.clone(),
        image: view.image.clone(),
        replicas: view.replicas,
        constraints_add: constraints(&view.constraints_add)?,
        constraints_remove: constraints(&view.constraints_remove)?,
        reserve_cpus_milli: view.reserve_cpus_milli,
        reserve_memory_bytes: view.reserve_memory_bytes,
        restart_condition: view
            .restart_condition
            .as_deref()
            .map(restart_condition)
            .transpose()?,
        restart_delay_ms: view.restart_delay_ms,
        restart_max_attempts: view.restart_max_attempts,
        restart_window_ms: view.restart_window_ms,
        on_isolation: view.on_isolation.as_deref().map(on_isolation).transpose()?,
        stop_grace_ms: view.stop_grace_ms,
        health: view
            .health
            .as_ref()
            .map(|health_check| health_check.as_ref().map(health)),
        update: update_patch(false, &view.update)?,
        rollback: update_patch(true, &view.rollback)?,
        rebalance: view.rebalance.as_deref().map(rebalance).transpose()?,
        force: view.force,
    })
}

pub fn from_view(view: &ServiceSpecView) -> Result<ServiceSpec, CtlError> {
    let driver = driver(&view.driver)?;
    let mode = match (view.mode.as_str(), view.replicas) {
        ("replicated", replicas) => ServiceMode::Replicated {
            replicas: replicas.unwrap_or(1),
        },
        ("global", None) => ServiceMode::Global,
        ("global", Some(_)) => {
            return Err(field(
                "replicas",
                "a global service runs one task on every eligible node; it takes no --replicas",
            ));
        }
        (other, _) => {
            return Err(field(
                "mode",
                format!("unknown mode {other:?}; a service is replicated or global"),
            ));
        }
    };
    let constraints = constraints(&view.constraints)?;
    let condition = restart_condition(&view.restart_condition)?;
    let on_isolation = on_isolation(&view.on_isolation)?;
    let spec = ServiceSpec {
        task: TaskSpec {
            driver,
            command: view.command.clone(),
            env: view.env.clone(),
            workdir: view.workdir.clone(),
            reservations: Reservations {
                cpus_milli: view.reserve_cpus_milli,
                memory_bytes: view.reserve_memory_bytes,
            },
            on_isolation,
            stop_grace_ms: view.stop_grace_ms,
            health: view.health.as_ref().map(health),
            image: view.image.clone(),
        },
        mode,
        constraints,
        restart: RestartPolicy {
            condition,
            delay_ms: view.restart_delay_ms,
            max_attempts: view.restart_max_attempts,
            window_ms: view.restart_window_ms,
        },
        update: update_config(false, &view.update)?,
        rollback: view
            .rollback
            .as_ref()
            .map(|rollback| update_config(true, rollback))
            .transpose()?,
        rebalance: rebalance(&view.rebalance)?,
    };
    spec.validate().map_err(refused)?;
    Ok(spec)
}

pub fn to_view(spec: &ServiceSpec) -> ServiceSpecView {
    let (mode, replicas) = match spec.mode {
        ServiceMode::Replicated { replicas } => ("replicated", Some(replicas)),
        ServiceMode::Global => ("global", None),
    };
    ServiceSpecView {
        driver: spec.task.driver.as_str().to_string(),
        command: spec.task.command.clone(),
        env: spec.task.env.clone(),
        workdir: spec.task.workdir.clone(),
        mode: mode.to_string(),
        replicas,
        constraints: spec.constraints.iter().map(ToString::to_string).collect(),
        reserve_cpus_milli: spec.task.reservations.cpus_milli,
        reserve_memory_bytes: spec.task.reservations.memory_bytes,
        restart_condition: spec.restart.condition.as_str().to_string(),
        restart_delay_ms: spec.restart.delay_ms,
        restart_max_attempts: spec.restart.max_attempts,
        restart_window_ms: spec.restart.window_ms,
        on_isolation: spec.task.on_isolation.as_str().to_string(),
        stop_grace_ms: spec.task.stop_grace_ms,
        image: spec.task.image.clone(),
        health: spec.task.health.as_ref().map(health_view),
        update: update_view(&spec.update),
        rollback: spec.rollback.as_ref().map(update_view),
        rebalance: spec.rebalance.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> ServiceSpecView {
        ServiceSpecView {
            driver: "process".into(),
            command: vec!["sleep".into(), "infinity".into()],
            env: Default::default(),
            workdir: None,
            mode: "replicated".into(),
            replicas: Some(3),
            constraints: vec!["node.labels.zone==a".into()],
            reserve_cpus_milli: 500,
            reserve_memory_bytes: 1 << 20,
            restart_condition: "on-failure".into(),
            restart_delay_ms: 100,
            restart_max_attempts: Some(3),
            restart_window_ms: None,
            on_isolation: "stop".into(),
            stop_grace_ms: 2000,
            rebalance: "auto".into(),
            ..ServiceSpecView::default()
        }
    }

    #[test]
    fn a_spec_goes_there_and_back() {
        let spec = from_view(&view()).unwrap();
        assert_eq!(to_view(&spec), view());
    }

    #[test]
    fn each_refusal_names_its_field() {
        type Spoil = fn(&mut ServiceSpecView);
        let cases: [(&str, Spoil); 7] = [
            ("driver", |v| v.driver = "docker-ish".into()),
            ("constraint", |v| v.constraints = vec!["zone=a".into()]),
            ("command", |v| v.command.clear()),
            ("mode", |v| v.mode = "daemon".into()),
            ("restart-condition", |v| {
                v.restart_condition = "always".into()
            }),
            ("on-isolation", |v| v.on_isolation = "pause".into()),
            ("rebalance", |v| v.rebalance = "sometimes".into()),
        ];
        for (name, spoil) in cases {
            let mut bad = view();
            spoil(&mut bad);
            let error = from_view(&bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::BadRequest);
            assert!(
                error
                    .message
                    .starts_with(&format!("invalid service spec: {name}:")),
                "{name}: {}",
                error.message
            );
        }
    }
}
