//! The node's Docker engine, through its API on the unix socket (bollard), and what its
//! answers mean for a task, as typed errors.
//!
//! The engine is asked for nothing newer than API 1.41 (Docker 20.10): the calls, options and
//! fields used here all exist there. The version is negotiated at connect (`/version`), and an
//! engine older than 1.41 counts as no engine. bollard 0.21 builds its request paths without
//! the `/vX.Y` prefix (its `Url::join` of an absolute path drops it; fixed upstream after
//! 0.21.1), so the engine answers at its own default version: that is 1.41 on 20.10, and a
//! newer engine still honours every 1.41 request; no option introduced after 1.41 is sent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions,
};

use super::spec;
use crate::remote::proto::Assignment;

/// The oldest engine API the driver works with.
pub const MIN_API: (u64, u64) = (1, 41);
/// How long an ordinary call may wait for the engine's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting and negotiating may take at start-up: an engine that does not answer by
/// then is absent, and the agent starts without it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong with the engine, by cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    #[error("no Docker engine answers at {socket}: {reason}")]
    Unreachable { socket: String, reason: String },
    #[error(
        "the Docker engine at {socket} speaks API {found}, older than the {}.{} Symphony needs",
        MIN_API.0,
        MIN_API.1
    )]
    TooOld { socket: String, found: String },
    #[error("image {image} is not present on this node (Symphony does not pull images)")]
    ImageMissing { image: String },
    #[error("no container {name} on this node's Docker engine")]
    NoSuchContainer { name: String },
    #[error("the Docker engine refused to {action}: {message} (HTTP {status})")]
    Refused {
        action: &'static str,
        status: u16,
        message: String,
    },
    #[error("the Docker engine stopped answering while asked to {action}: {reason}")]
    Lost {
        action: &'static str,
        reason: String,
    },
}

impl DockerError {
    /// Whether the engine itself is gone (as opposed to refusing one request).
    pub fn engine_lost(&self) -> bool {
        matches!(
            self,
            DockerError::Lost { .. } | DockerError::Unreachable { .. }
        )
    }
}

/// What a bollard error means for `action`: the engine's refusal (with its status) or the
/// engine gone. A 404 becomes `NoSuchContainer` when the action was on container `name`.
pub fn classify(action: &'static str, name: Option<&str>, error: BollardError) -> DockerError {
    match error {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => match name {
            Some(name) => DockerError::NoSuchContainer {
                name: name.to_string(),
            },
            None => DockerError::Refused {
                action,
                status: 404,
                message,
            },
        },
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => DockerError::Refused {
            action,
            status: status_code,
            message,
        },
        other => DockerError::Lost {
            action,
            reason: other.to_string(),
        },
    }
}

/// `"1.41"` as `(1, 41)`.
pub fn parse_api_version(text: &str) -> Option<(u64, u64)> {
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// How a container ended, as the engine says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// The engine's own error (the program could not be started, ...).
    pub error: Option<String>,
}

/// A container of this node, as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub name: String,
    pub task_id: Option<u64>,
    pub running: bool,
}

/// A connection to the engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    socket: PathBuf,
    /// The engine's version (`20.10.24`), as the node reports it.
    pub version: String,
    /// The API version negotiated (`1.41`).
    pub api_version: String,
}

impl Engine {
    /// Connects to the engine at `socket` and negotiates the API version; an engine that does
    /// not answer within a few seconds, or is older than 1.41, is an error.
    pub async fn connect(socket: &Path) -> Result<Engine, DockerError> {
        let shown = socket.display().to_string();
        let unreachable = |reason: String| DockerError::Unreachable {
            socket: shown.clone(),
            reason,
        };
        if !socket.exists() {
            return Err(unreachable("there is no such socket".into()));
        }
        let path = socket.to_string_lossy().into_owned();
        let docker =
            Docker::connect_with_unix(&path, CALL_TIMEOUT.as_secs(), bollard::API_DEFAULT_VERSION)
                .map_err(|error| unreachable(error.to_string()))?;
        let negotiated = tokio::time::timeout(PROBE_TIMEOUT, async {
            let docker = docker.negotiate_version().await?;
            let version = docker.version().await?;
            Ok::<_, BollardError>((docker, version))
        })
        .await
        .map_err(|_| unreachable(format!("no answer within {PROBE_TIMEOUT:?}")))?
        .map_err(|error| unreachable(error.to_string()))?;
        let (docker, version) = negotiated;
        let api_version = version.api_version.unwrap_or_default();
        match parse_api_version(&api_version) {
            Some(found) if found >= MIN_API => {}
            _ => {
                return Err(DockerError::TooOld {
                    socket: shown,
                    found: api_version,
                });
            }
        }
        Ok(Engine {
            docker,
            socket: socket.to_path_buf(),
            version: version.version.unwrap_or_default(),
            api_version,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Whether `image` is on this node. Never pulls: no registry is assumed reachable, and a
    /// task must not wait on one.
    pub async fn ensure_image(&self, image: &str) -> Result<(), DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(DockerError::ImageMissing {
                image: image.to_string(),
            }),
            Err(error) => Err(classify("inspect an image", None, error)),
        }
    }

    /// Creates the task's container (a leftover one of the same name, from an attempt cut
    /// short, is removed first); returns its id.
    pub async fn create(
        &self,
        assignment: &Assignment,
        node_id: u64,
        image: &str,
    ) -> Result<String, DockerError> {
        let name = spec::container_name(assignment, node_id);
        self.remove(&name).await?;
        let options = CreateContainerOptions {
            name: Some(name),
            ..CreateContainerOptions::default()
        };
        let body = spec::create_body(assignment, node_id, image);
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|error| match error {
                // The image went away between the check and the create.
                BollardError::DockerResponseServerError {
                    status_code: 404, ..
                } => DockerError::ImageMissing {
                    image: image.to_string(),
                },
                error => classify("create a container", None, error),
            })?;
        Ok(created.id)
    }

    pub async fn start(&self, name: &str) -> Result<(), DockerError> {
        self.docker
            .start_container(name, None)
            .await
            .map_err(|error| classify("start a container", Some(name), error))
    }

    /// Stops the container: SIGTERM (or the image's stop signal), SIGKILL after `grace`. The
    /// engine answers once it has stopped, so the call may wait that long.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<(), DockerError> {
        let options = StopContainerOptions {
            t: Some(i32::try_from(grace.as_millis().div_ceil(1000).max(1)).unwrap_or(i32::MAX)),
            // `signal` is API 1.42: never sent.
            signal: None,
        };
        let docker = self.docker.clone().with_timeout(grace + CALL_TIMEOUT);
        match docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            // Already stopped.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(error) => Err(classify("stop a container", Some(name), error)),
        }
    }

    /// Removes the container, whatever its state; one that is not there is no error.
    pub async fn remove(&self, name: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(error) => Err(classify("remove a container", Some(name), error)),
        }
    }

    pub async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse, DockerError> {
        self.docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|error| classify("inspect a container", Some(name), error))
    }

    /// How the container ended; `None` while it runs.
    pub async fn ended(&self, name: &str) -> Result<Option<Ended>, DockerError> {
        let inspected = self.inspect(name).await?;
        Ok(ended_of(&inspected))
    }

    /// Every container of this node's tasks, running or not.
    pub async fn list_own(&self, node_id: u64) -> Result<Vec<Listed>, DockerError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{}={node_id}", spec::NODE_LABEL)],
        )]);
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..ListContainersOptions::default()
        };
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|error| classify("list containers", None, error))?;
        Ok(listed.iter().filter_map(listed_of).collect())
    }
}

/// How an inspected container ended; `None` while it runs (or is being created or restarted).
pub fn ended_of(inspected: &ContainerInspectResponse) -> Option<Ended> {
    use bollard::models::ContainerStateStatusEnum as Status;
    let state = inspected.state.as_ref()?;
    let over = match state.status {
        Some(Status::EXITED | Status::DEAD) => true,
        Some(_) => false,
        None => state.running == Some(false),
    };
    over.then(|| Ended {
        exit_code: state.exit_code,
        oom_killed: state.oom_killed.unwrap_or(false),
        error: state.error.clone().filter(|error| !error.is_empty()),
    })
}

fn listed_of(summary: &ContainerSummary) -> Option<Listed> {
    use bollard::models::ContainerSummaryStateEnum as State;
    let id = summary.id.clone()?;
    let name = summary
        .names
        .as_ref()
        .and_then(|names| names.first())
        .map(|name| name.trim_start_matches('/').to_string())
        .unwrap_or_else(|| id.clone());
    let task_id = summary
        .labels
        .as_ref()
        .and_then(|labels| labels.get(spec::TASK_LABEL))
        .and_then(|id| id.parse().ok());
    let running = matches!(
        summary.state,
        Some(State::RUNNING | State::RESTARTING | State::PAUSED | State::CREATED)
    );
    Some(Listed {
        id,
        name,
        task_id,
        running,
    })
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerState, ContainerStateStatusEnum};

    use super::*;

    #[test]
    fn errors_say_refused_with_status_or_engine_lost() {
        let refused = classify(
            "create a container",
            None,
            BollardError::DockerResponseServerError {
                status_code: 400,
                message: "Minimum memory limit allowed is 6MB".into(),
            },
        );
        assert_eq!(
            refused,
            DockerError::Refused {
                action: "create a container",
                status: 400,
                message: "Minimum memory limit allowed is 6MB".into()
            }
        );
        assert!(!refused.engine_lost());
        let missing = classify(
            "inspect a container",
            Some("symphony-web-1-2"),
            BollardError::DockerResponseServerError {
                status_code: 404,
                message: "No such container".into(),
            },
        );
        assert_eq!(
            missing,
            DockerError::NoSuchContainer {
                name: "symphony-web-1-2".into()
            }
        );
        let lost = classify(
            "wait for a container",
            None,
            BollardError::RequestTimeoutError,
        );
        assert!(lost.engine_lost(), "{lost:?}");
        assert_eq!(
            DockerError::ImageMissing {
                image: "symphony/probe:1".into()
            }
            .to_string(),
            "image symphony/probe:1 is not present on this node (Symphony does not pull images)"
        );
    }

    #[test]
    fn api_versions_compare_as_numbers() {
        assert_eq!(parse_api_version("1.41"), Some((1, 41)));
        assert!(parse_api_version("1.9").unwrap_or_default() < MIN_API);
        assert!(parse_api_version("1.100").unwrap_or_default() > MIN_API);
        assert_eq!(parse_api_version("banana"), None);
    }

    #[test]
    fn an_exited_container_has_ended_a_running_one_not() {
        let with = |status, exit_code, oom| ContainerInspectResponse {
            state: Some(ContainerState {
                status: Some(status),
                exit_code: Some(exit_code),
                oom_killed: Some(oom),
                error: Some(String::new()),
                ..ContainerState::default()
            }),
            ..ContainerInspectResponse::default()
        };
        assert_eq!(
            ended_of(&with(ContainerStateStatusEnum::RUNNING, 0, false)),
            None
        );
        assert_eq!(
            ended_of(&with(ContainerStateStatusEnum::EXITED, 3, false)),
            Some(Ended {
                exit_code: Some(3),
                oom_killed: false,
                error: None
            })
        );
        assert!(
            ended_of(&with(ContainerStateStatusEnum::EXITED, 137, true))
                .is_some_and(|ended| ended.oom_killed)
        );
    }

    #[tokio::test]
    async fn a_missing_socket_is_no_engine() {
        let error = Engine::connect(Path::new("/nonexistent/docker.sock"))
            .await
            .unwrap_err();
        assert!(error.engine_lost());
        assert!(
            error.to_string().contains("no Docker engine answers"),
            "{error}"
        );
    }
}
