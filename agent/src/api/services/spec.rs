//! A service spec between its two forms: as operators write it (the protocol's view, words and
//! parsed numbers) and as the cluster state keeps it. A refusal names the field.

use symphony_consensus::{
    Constraint, Driver, OnIsolation, Reservations, RestartCondition, RestartPolicy, ServiceMode,
    ServiceSpec, SpecError, TaskSpec,
};
use symphony_ctl::proto::{CtlError, ErrorCode, ServiceSpecView};

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

pub fn from_view(view: &ServiceSpecView) -> Result<ServiceSpec, CtlError> {
    let driver = Driver::parse(&view.driver).ok_or_else(|| {
        field(
            "driver",
            format!("unknown driver {:?}; the drivers are: process", view.driver),
        )
    })?;
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
    let constraints = view
        .constraints
        .iter()
        .map(|text| Constraint::parse(text).map_err(|reason| field("constraint", reason)))
        .collect::<Result<Vec<_>, _>>()?;
    let condition = match view.restart_condition.as_str() {
        "none" => RestartCondition::None,
        "on-failure" => RestartCondition::OnFailure,
        "any" => RestartCondition::Any,
        other => {
            return Err(field(
                "restart-condition",
                format!("unknown restart condition {other:?}; it is none, on-failure or any"),
            ));
        }
    };
    let on_isolation = match view.on_isolation.as_str() {
        "keep" => OnIsolation::Keep,
        "stop" => OnIsolation::Stop,
        other => {
            return Err(field(
                "on-isolation",
                format!("unknown isolation policy {other:?}; it is keep or stop"),
            ));
        }
    };
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
        },
        mode,
        constraints,
        restart: RestartPolicy {
            condition,
            delay_ms: view.restart_delay_ms,
            max_attempts: view.restart_max_attempts,
            window_ms: view.restart_window_ms,
        },
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
        let cases: [(&str, Spoil); 6] = [
            ("driver", |v| v.driver = "docker-ish".into()),
            ("constraint", |v| v.constraints = vec!["zone=a".into()]),
            ("command", |v| v.command.clear()),
            ("mode", |v| v.mode = "daemon".into()),
            ("restart-condition", |v| {
                v.restart_condition = "always".into()
            }),
            ("on-isolation", |v| v.on_isolation = "pause".into()),
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
