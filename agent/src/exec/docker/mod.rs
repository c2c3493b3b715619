//! The docker driver: a task is a container of the node's Docker engine, made from an image
//! already on the node (nothing is ever pulled), named and labelled after its task and this
//! node, with the engine's restart policy off (restarts are the orchestrator's).
//!
//! - [`spec`]: the container's name, labels and configuration, pure;
//! - [`engine`]: the connection to the engine and its calls, with typed errors;
//! - [`task`]: one task's container from start to its recorded exit, and its output copied into
//!   the task's log;
//! - [`guard`]: for `--on-isolation stop` tasks, a small process that outlives the agent and
//!   stops the container when the isolation lease runs out;
//! - [`check`] (here): a health check run inside the container, and the image's own
//!   `HEALTHCHECK` read from the engine.
//!
//! Containers are removed once their end is recorded: their output is in the task's log on the
//! node, which outlives them (as many ended tasks as the process driver keeps), so keeping the
//! container would only hold its writable layer on the engine's disk.

pub mod engine;
pub mod guard;
pub mod spec;
pub mod task;

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::HealthStatusEnum;
use futures_util::StreamExt;
use symphony_consensus::Health;

pub use self::engine::{DockerError, Engine};
use crate::remote::proto::Assignment;

/// How much of a failing check's output is kept.
const OUTPUT_KEPT: usize = 200;

/// Runs the spec's health check `command` inside the task's container, in the task's
/// environment: `Ok` when it exits 0 within `timeout`. A check that times out is left to the
/// engine (an exec cannot be killed through the API); its verdict is a failure all the same.
pub async fn check(
    engine: &Engine,
    container: &str,
    assignment: &Assignment,
    command: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let run = async {
        let options = CreateExecOptions {
            cmd: Some(command.to_vec()),
            env: Some(spec::env(assignment)),
            working_dir: assignment.spec.workdir.clone(),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..CreateExecOptions::default()
        };
        let created = engine
            .client()
            .create_exec(container, options)
            .await
            .map_err(|error| engine::classify("run a health check", Some(container), error))?;
        let mut output = String::new();
        if let StartExecResults::Attached {
            output: mut stream, ..
        } = engine
            .client()
            .start_exec(&created.id, None)
            .await
            .map_err(|error| engine::classify("run a health check", None, error))?
        {
            while let Some(Ok(item)) = stream.next().await {
                if let LogOutput::StdOut { message } | LogOutput::StdErr { message } = item
                    && output.len() < OUTPUT_KEPT
                {
                    output.push_str(&String::from_utf8_lossy(&message));
                }
            }
        }
        let inspected = engine
            .client()
            .inspect_exec(&created.id)
            .await
            .map_err(|error| engine::classify("inspect a health check", None, error))?;
        Ok::<_, DockerError>((inspected.exit_code, output))
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => Err(format!("the health check took longer than {timeout:?}")),
        Ok(Err(error)) => Err(format!("the health check could not run: {error}")),
        Ok(Ok((Some(0), _))) => Ok(()),
        Ok(Ok((code, output))) => {
            let kept: String = output.trim().chars().take(OUTPUT_KEPT).collect();
            Err(match code {
                Some(code) if kept.is_empty() => format!("the health check exited with {code}"),
                Some(code) => format!("the health check exited with {code}: {kept}"),
                None => "the health check ended without an exit code".to_string(),
            })
        }
    }
}

/// The verdict of the image's own `HEALTHCHECK`, as the engine keeps it; `None` when the
/// container has none.
pub fn engine_health(status: Option<HealthStatusEnum>) -> Option<Health> {
    match status? {
        HealthStatusEnum::STARTING => Some(Health::Starting),
        HealthStatusEnum::HEALTHY => Some(Health::Healthy),
        HealthStatusEnum::UNHEALTHY => Some(Health::Unhealthy),
        HealthStatusEnum::NONE | HealthStatusEnum::EMPTY => None,
    }
}

/// Whether the container has a health check of its image's (`HEALTHCHECK`, not `NONE`); `None`
/// when the engine could not say.
pub async fn has_image_health(engine: &Engine, container: &str) -> Option<bool> {
    let inspected = engine.inspect(container).await.ok()?;
    let test = inspected
        .config
        .and_then(|config| config.healthcheck)
        .and_then(|check| check.test)
        .unwrap_or_default();
    Some(check_configured(&test))
}

/// Whether a `HEALTHCHECK`'s test runs something: empty (inherited none) and `NONE` do not.
pub fn check_configured(test: &[String]) -> bool {
    test.first().is_some_and(|kind| kind != "NONE")
}

/// What the image's health check last said, and why it failed (its last run's output).
pub async fn image_health(engine: &Engine, container: &str) -> Option<(Health, String)> {
    let inspected = engine.inspect(container).await.ok()?;
    let health = inspected.state?.health?;
    let verdict = engine_health(health.status)?;
    let detail = health
        .log
        .and_then(|log| log.last().cloned())
        .map(|last| {
            let output: String = last
                .output
                .unwrap_or_default()
                .trim()
                .chars()
                .take(OUTPUT_KEPT)
                .collect();
            match last.exit_code {
                Some(code) => format!("the image's health check exited with {code}: {output}"),
                None => format!("the image's health check: {output}"),
            }
        })
        .unwrap_or_default();
    Some((verdict, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_test_that_runs_something_is_a_health_check() {
        assert!(!check_configured(&[]));
        assert!(!check_configured(&["NONE".to_string()]));
        assert!(check_configured(&["CMD".to_string(), "/bin/cat".into()]));
        assert!(check_configured(&["CMD-SHELL".to_string(), "true".into()]));
    }

    #[test]
    fn the_engine_s_health_maps_to_symphony_s() {
        assert_eq!(engine_health(None), None);
        assert_eq!(engine_health(Some(HealthStatusEnum::NONE)), None);
        assert_eq!(
            engine_health(Some(HealthStatusEnum::STARTING)),
            Some(Health::Starting)
        );
        assert_eq!(
            engine_health(Some(HealthStatusEnum::UNHEALTHY)),
            Some(Health::Unhealthy)
        );
    }
}
