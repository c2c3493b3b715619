//! The lease guard of a docker task of an `--on-isolation stop` service:
//! `symphony-agent container-guard --dir DIR --container NAME ...`, one small process per such
//! task that outlives the agent, as a process task's shim does.
//!
//! A process task's shim stops its task when the isolation lease in the task's dir runs out
//! (see [`crate::exec::lease`]); a container has no shim, and its watcher lives in the agent, so
//! a killed or frozen agent would leave it running while the leader starts its replacement
//! elsewhere. The guard watches the same lease file and stops the container through the engine
//! when it passes. It ends once the task's end is recorded, or its container has ended or gone.

use std::path::Path;
use std::time::Duration;

use super::engine::{DockerError, Engine};
use crate::exec::lease;
use crate::exec::store::{CONTAINER_FILE, EXIT_FILE};

/// How often the lease is looked at.
const LEASE_CHECK: Duration = Duration::from_millis(200);
/// How often the engine is asked whether the container still runs (in lease checks).
const ENGINE_CHECK_EVERY: u32 = 5;

/// Runs the guard; returns its process exit code.
pub fn run(dir: &Path, socket: &Path, container: &str, stop_grace: Duration) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(_) => return 1,
    };
    runtime.block_on(guard(dir, socket, container, stop_grace))
}

async fn guard(dir: &Path, socket: &Path, container: &str, stop_grace: Duration) -> i32 {
    let Ok(engine) = Engine::connect(socket).await else {
        return 1;
    };
    let mut checks = 0u32;
    loop {
        // Its end recorded, or its directory pruned: the task is over.
        if dir.join(EXIT_FILE).exists() || !dir.exists() {
            return 0;
        }
        if lease::expired(dir) {
            // The engine sends SIGTERM, and SIGKILL after the grace.
            return match engine.stop(container, stop_grace).await {
                Ok(()) | Err(DockerError::NoSuchContainer { .. }) => 0,
                Err(_) => 1,
            };
        }
        checks += 1;
        // Once the container has started (the watcher records it), its end ends the guard.
        if checks.is_multiple_of(ENGINE_CHECK_EVERY) && dir.join(CONTAINER_FILE).exists() {
            match engine.ended(container).await {
                Ok(Some(_)) | Err(DockerError::NoSuchContainer { .. }) => return 0,
                Ok(None) | Err(_) => {}
            }
        }
        tokio::time::sleep(LEASE_CHECK).await;
    }
}

/// Starts the guard of the task in `dir`, in a process group of its own (a Ctrl-C meant for
/// the agent does not reach it); returns it running.
pub fn spawn(
    dir: &Path,
    socket: &Path,
    container: &str,
    stop_grace: Duration,
) -> std::io::Result<(tokio::process::Child, crate::exec::store::ShimInfo)> {
    let exe = std::env::current_exe()?;
    let mut command = tokio::process::Command::new(exe);
    command
        .arg("container-guard")
        .arg("--dir")
        .arg(dir)
        .arg("--docker-socket")
        .arg(socket)
        .arg("--container")
        .arg(container)
        .arg("--stop-grace-ms")
        .arg(stop_grace.as_millis().to_string())
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    let child = command.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("the guard exited at once"))?;
    let start_ticks = crate::exec::process::start_ticks(pid).unwrap_or(0);
    Ok((child, crate::exec::store::ShimInfo { pid, start_ticks }))
}
