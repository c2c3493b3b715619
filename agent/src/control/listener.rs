//! Binding the control socket and accepting connections.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// At most this many control connections are open at once; more are closed on arrival, so a
/// flood of idle connections cannot exhaust the agent's file descriptors.
pub const MAX_CONNECTIONS: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "another agent is already serving the control socket {0}; stop it or use another --config-dir"
    )]
    InUse(PathBuf),
    #[error("cannot remove the stale control socket {path}: {source}")]
    RemoveStale {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds the control socket at `path` with mode 0600. A socket file left by an agent that died
/// is replaced; one that a live agent still answers on is not.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(|source| BindError::RemoveStale {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let bind_error = |source| BindError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    // The config dir is already 0700; this keeps the socket private even if it is not.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// Accepts control connections until `shutdown` is cancelled.
pub async fn serve(listener: UnixListener, node: Arc<Node>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, typically: wait for some to be released.
                tracing::warn!(%error, "accepting a control connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "too many control connections; closing a new one"
            );
            drop(stream);
            continue;
        };
        let node = node.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = super::connection::serve(stream, node) => {}
            }
            drop(slot);
        });
    }
}
