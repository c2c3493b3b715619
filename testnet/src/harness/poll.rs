//! Waiting for a condition with a deadline instead of sleeping for a guessed time.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

use super::HarnessError;

const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// Calls `attempt` until it returns `Ok`, pausing briefly between tries, and gives up with
/// [`HarnessError::Timeout`] (naming `what` and the last failure) once `timeout` has passed.
/// An attempt still running at the deadline is abandoned.
pub async fn poll_until<T, E, F>(
    timeout: Duration,
    what: &str,
    mut attempt: F,
) -> Result<T, HarnessError>
where
    F: AsyncFnMut() -> Result<T, E>,
    E: Display,
{
    let started = Instant::now();
    let deadline = started + timeout;
    let mut pause = FIRST_PAUSE;
    let mut last = String::from("no attempt finished");
    loop {
        match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => last = error.to_string(),
            Err(_) => last = format!("{last}; the last attempt was still running at the deadline"),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_string(),
                waited: now - started,
                last,
            });
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn returns_the_first_success() {
        let mut tries = 0;
        let value = poll_until(Duration::from_secs(5), "three tries", async || {
            tries += 1;
            if tries < 3 { Err("not yet") } else { Ok(tries) }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn accepts_closures_that_return_futures() {
        let value = poll_until(Duration::from_secs(1), "a plain closure", || async {
            Ok::<_, String>(7)
        })
        .await
        .unwrap();
        assert_eq!(value, 7);
    }

    #[tokio::test]
    async fn times_out_with_the_last_failure() {
        let error = poll_until(Duration::from_millis(50), "never", async || {
            Err::<(), _>("still no")
        })
        .await
        .unwrap_err();
        match error {
            HarnessError::Timeout { what, last, .. } => {
                assert_eq!(what, "never");
                assert!(last.contains("still no"), "{last}");
            }
            other => panic!("unexpected error {other}"),
        }
    }

    #[tokio::test]
    async fn abandons_an_attempt_that_hangs() {
        let error = poll_until(Duration::from_millis(50), "a hang", async || {
            std::future::pending::<Result<(), String>>().await
        })
        .await
        .unwrap_err();
        assert!(matches!(error, HarnessError::Timeout { .. }), "{error}");
    }
}
