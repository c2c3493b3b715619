//! Which control errors mean "try again shortly" rather than "this is the answer".

use symphony_ctl::ClientError;
use symphony_ctl::proto::ErrorCode;
use symphony_wire::CallError;

/// True for failures a restarting or electing node produces and that go away by themselves:
/// no leader yet, the node is busy, or the control socket is not (yet) there.
pub fn is_retryable(error: &ClientError) -> bool {
    match error {
        ClientError::Remote(error) => {
            matches!(error.code, ErrorCode::NoLeader | ErrorCode::Unavailable)
        }
        ClientError::Connect { .. } | ClientError::Call(CallError::Closed { .. }) => true,
        _ => false,
    }
}
