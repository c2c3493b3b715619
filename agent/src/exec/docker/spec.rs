//! What a docker task's container is: its name, its labels and its configuration, all pure
//! functions of the assignment and the node, so that a restarted agent finds the same
//! container by the same name and labels, and the engine is told exactly what the spec says.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};

use crate::remote::proto::Assignment;

/// Every container of a Symphony task carries these labels. The node id keeps agents that share
/// one engine (a test machine, a lab) from adopting or removing each other's containers.
pub const TASK_LABEL: &str = "io.symphony.task-id";
pub const SERVICE_LABEL: &str = "io.symphony.service";
pub const SLOT_LABEL: &str = "io.symphony.slot";
pub const NODE_LABEL: &str = "io.symphony.node-id";

/// The container's name: `symphony-<service>-<slot>-<task id>`, or for a task of a global
/// service `symphony-<service>-node<node id>-<task id>`. Service names are lowercase letters,
/// digits and dashes, which the engine accepts; anything else is replaced all the same, so a
/// name is always one the engine takes.
pub fn container_name(assignment: &Assignment, node_id: u64) -> String {
    let place = match assignment.slot {
        Some(slot) => slot.to_string(),
        None => format!("node{node_id}"),
    };
    let service: String = assignment
        .service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("symphony-{service}-{place}-{}", assignment.task_id)
}

/// The labels of the task's container.
pub fn labels(assignment: &Assignment, node_id: u64) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (TASK_LABEL.to_string(), assignment.task_id.to_string()),
        (SERVICE_LABEL.to_string(), assignment.service.clone()),
        (NODE_LABEL.to_string(), node_id.to_string()),
    ]);
    if let Some(slot) = assignment.slot {
        labels.insert(SLOT_LABEL.to_string(), slot.to_string());
    }
    labels
}

/// The task's environment: the spec's, and the same `SYMPHONY_*` variables a process task
/// gets (not the task-dir one: the task's dir is on the node, not in the container).
pub fn env(assignment: &Assignment) -> Vec<String> {
    let mut env: Vec<String> = assignment
        .spec
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    env.push(format!("SYMPHONY_TASK_ID={}", assignment.task_id));
    env.push(format!("SYMPHONY_SERVICE={}", assignment.service));
    if let Some(slot) = assignment.slot {
        env.push(format!("SYMPHONY_SLOT={slot}"));
    }
    env
}

/// The container's configuration. The task's command is the container's `Cmd` (the image's
/// entrypoint, if it has one, stays: a command is what the spec always has, and an image made
/// to run one program takes its arguments this way). The engine never restarts it: restarts
/// are the orchestrator's, which must see every exit. Reservations become limits: a task gets
/// the CPU time and memory it reserved and no more.
pub fn create_body(assignment: &Assignment, node_id: u64, image: &str) -> ContainerCreateBody {
    let spec = &assignment.spec;
    let reservations = spec.reservations;
    let nano_cpus = (reservations.cpus_milli > 0)
        .then(|| i64::try_from(reservations.cpus_milli.saturating_mul(1_000_000)).ok())
        .flatten();
    let memory = (reservations.memory_bytes > 0)
        .then(|| i64::try_from(reservations.memory_bytes).ok())
        .flatten();
    let labels: HashMap<String, String> = labels(assignment, node_id).into_iter().collect();
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(spec.command.clone()),
        env: Some(env(assignment)),
        working_dir: spec.workdir.clone(),
        labels: Some(labels),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        tty: Some(false),
        open_stdin: Some(false),
        // The grace, whoever stops it (an operator's `docker stop` too).
        stop_timeout: Some(grace_secs(spec.stop_grace_ms)),
        host_config: Some(HostConfig {
            nano_cpus,
            memory,
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            auto_remove: Some(false),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

/// The stop grace in whole seconds, rounded up (the engine counts in seconds), at least one.
pub fn grace_secs(stop_grace_ms: u64) -> i64 {
    i64::try_from(stop_grace_ms.div_ceil(1000).max(1)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use symphony_consensus::{DesiredState, Driver, OnIsolation, Reservations, TaskSpec};

    use super::*;

    fn assignment(slot: Option<u32>) -> Assignment {
        Assignment {
            task_id: 42,
            service: "web".into(),
            slot,
            spec: TaskSpec {
                driver: Driver::Docker,
                command: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
                env: BTreeMap::from([("MODE".into(), "test".into())]),
                workdir: Some("/srv".into()),
                reservations: Reservations {
                    cpus_milli: 1500,
                    memory_bytes: 64 << 20,
                },
                on_isolation: OnIsolation::default(),
                stop_grace_ms: 2500,
                health: None,
                image: Some("symphony/probe:1".into()),
            },
            desired: DesiredState::Running,
        }
    }

    #[test]
    fn names_say_service_slot_or_node_and_task() {
        assert_eq!(container_name(&assignment(Some(3)), 7), "symphony-web-3-42");
        assert_eq!(
            container_name(&assignment(None), 7),
            "symphony-web-node7-42"
        );
        let mut odd = assignment(Some(1));
        odd.service = "a b/c".into();
        assert_eq!(container_name(&odd, 7), "symphony-a-b-c-1-42");
    }

    #[test]
    fn labels_name_the_task_the_service_and_the_node() {
        let labels = labels(&assignment(Some(3)), 7);
        assert_eq!(labels[TASK_LABEL], "42");
        assert_eq!(labels[SERVICE_LABEL], "web");
        assert_eq!(labels[NODE_LABEL], "7");
        assert_eq!(labels[SLOT_LABEL], "3");
        assert!(!super::labels(&assignment(None), 7).contains_key(SLOT_LABEL));
    }

    #[test]
    fn the_body_carries_command_env_workdir_limits_and_no_engine_restarts() {
        let body = create_body(&assignment(Some(3)), 7, "symphony/probe:1");
        assert_eq!(body.image.as_deref(), Some("symphony/probe:1"));
        assert_eq!(
            body.cmd.as_deref(),
            Some(&["/bin/sh".to_string(), "-c".into(), "echo hi".into()][..])
        );
        let env = body.env.unwrap_or_default();
        assert!(env.contains(&"MODE=test".to_string()));
        assert!(env.contains(&"SYMPHONY_TASK_ID=42".to_string()));
        assert!(env.contains(&"SYMPHONY_SLOT=3".to_string()));
        assert_eq!(body.working_dir.as_deref(), Some("/srv"));
        assert_eq!(body.stop_timeout, Some(3));
        assert_eq!(body.entrypoint, None, "the image's entrypoint stays");
        let host = body.host_config.unwrap_or_default();
        assert_eq!(host.nano_cpus, Some(1_500_000_000));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(
            host.restart_policy.and_then(|policy| policy.name),
            Some(RestartPolicyNameEnum::NO)
        );
        assert_eq!(body.labels.unwrap_or_default()[TASK_LABEL], "42");

        // No reservation: no limit.
        let mut free = assignment(None);
        free.spec.reservations = Reservations::default();
        let host = create_body(&free, 7, "x").host_config.unwrap_or_default();
        assert_eq!((host.nano_cpus, host.memory), (None, None));
    }

    #[test]
    fn the_grace_rounds_up_to_whole_seconds() {
        assert_eq!(grace_secs(0), 1);
        assert_eq!(grace_secs(1000), 1);
        assert_eq!(grace_secs(1001), 2);
    }
}
