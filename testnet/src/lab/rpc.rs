//! Control calls to a lab node, always with a deadline: a paused or partitioned node accepts a
//! connection on its control socket (the kernel does that) but never answers, and `testnet
//! status` must not hang on it.

use std::path::Path;
use std::time::Duration;

use symphony_ctl::{Client, ClientError};

use super::LabError;
use crate::harness::{is_retryable, poll_until};

/// Why one call produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Connects to `socket` and runs `op`, all within `timeout`.
pub async fn call<T, F>(socket: &Path, timeout: Duration, op: F) -> Result<T, CallError>
where
    F: AsyncFnOnce(&mut Client) -> Result<T, ClientError>,
{
    let attempt = async {
        let mut client = Client::connect(socket).await?;
        op(&mut client).await
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(outcome) => Ok(outcome?),
        Err(_) => Err(CallError::TimedOut(timeout)),
    }
}

/// Calls `op` on node `name` until it succeeds, retrying while the failure is one that goes
/// away by itself (no leader yet, socket not there yet, no answer within `attempt`) for up to
/// `total`; any other failure is returned at once.
pub async fn call_retrying<T, F>(
    name: &str,
    socket: &Path,
    what: &str,
    total: Duration,
    attempt: Duration,
    mut op: F,
) -> Result<T, LabError>
where
    F: AsyncFnMut(&mut Client) -> Result<T, ClientError>,
{
    let described = format!("{what} on {name}");
    let outcome = poll_until(total, &described, async || {
        match call(socket, attempt, async |client: &mut Client| {
            op(client).await
        })
        .await
        {
            Ok(value) => Ok(Ok(value)),
            Err(CallError::TimedOut(waited)) => Err(format!("no answer within {waited:?}")),
            Err(CallError::Client(error)) if is_retryable(&error) => Err(error.to_string()),
            Err(CallError::Client(error)) => Ok(Err(error)),
        }
    })
    .await?;
    outcome.map_err(|cause| LabError::Control {
        node: name.to_string(),
        what: what.to_string(),
        cause: Box::new(cause),
    })
}
