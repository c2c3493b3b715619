//! The control socket: a Unix socket in the config dir (mode 0600, in a directory of mode 0700)
//! that speaks the control protocol of `symphony_ctl::proto` to `symphony-ctl`, testnet and
//! scripts. The accept loop, the hello and the serving of pipelined requests are the wire
//! crate's, set up and counted as every agent server is ([`crate::serving`]); each request goes
//! to [`crate::api::handle`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use symphony_ctl::proto::{Ctl, Request};
use symphony_wire::Reply;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::metrics::{Api, Requests};
use crate::serving::Served;

/// Requests of one connection being handled at once; past that the connection is not read.
const MAX_IN_FLIGHT: usize = 256;

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

/// Serves the control socket until `shutdown`, counting each request and connection in
/// `requests`.
pub async fn serve(
    listener: UnixListener,
    ctx: Context,
    requests: Requests,
    shutdown: CancellationToken,
) {
    let served = Served::<Ctl> {
        api: Api::Control,
        transport: symphony_wire::Transport::plain(),
        max_in_flight: MAX_IN_FLIGHT,
        kind: Request::name,
    };
    crate::serving::serve(
        listener,
        ctx,
        requests,
        shutdown,
        served,
        |ctx, _caller, request| async move { answer(&ctx, request).await },
    )
    .await;
}

/// One request's reply: a stream's items, or its one answer.
async fn answer(ctx: &Context, request: Request) -> Reply<Ctl> {
    let name = request.name();
    let request = match crate::api::stream(ctx, request) {
        Ok(Ok(items)) => return Reply::Stream(items),
        Ok(Err(error)) => return Reply::One(Err(error)),
        Err(request) => request,
    };
    let result = crate::api::handle(ctx, request, false).await;
    if let Err(error) = &result {
        tracing::debug!(request = name, code = %error.code, %error, "control request failed");
    }
    Reply::One(result)
}
