//! Writes through the cluster that are remembered once acknowledged, and the check at the end
//! that none was lost.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use symphony_ctl::proto::ReadConsistency;
use symphony_ctl::{Client, ClientError};

use super::Cluster;
use crate::harness::{HarnessError, is_retryable, poll_until};

impl Cluster {
    /// Checks with a linearizable read through the current leader that every acknowledged
    /// write is there. Returns how many writes were checked.
    pub async fn verify_acknowledged(&self) -> Result<usize, HarnessError> {
        let leader = self.leader().await?;
        self.verify_acknowledged_on(leader, ReadConsistency::Linearizable)
            .await
    }

    /// Checks on node `index` that every acknowledged write is there.
    pub async fn verify_acknowledged_on(
        &self,
        index: usize,
        consistency: ReadConsistency,
    ) -> Result<usize, HarnessError> {
        let mut client = self.client(index).await?;
        self.acknowledged
            .verify(&mut client, "", consistency, &self.name(index))
            .await?;
        Ok(self.acknowledged.len())
    }

    /// Puts `{prefix}/00000`, `{prefix}/00001`, ... one after another through any member
    /// (as [`Cluster::put_any`], each acknowledged write recorded) until `done` is set; returns
    /// how many were written. The steady load of a test that changes the cluster under it.
    pub async fn write_until(
        &self,
        prefix: &str,
        done: &std::sync::atomic::AtomicBool,
    ) -> Result<u64, HarnessError> {
        let mut written = 0_u64;
        while !done.load(Ordering::Relaxed) {
            self.put_any(&format!("{prefix}/{written:05}"), b"v")
                .await?;
            written += 1;
        }
        Ok(written)
    }

    /// Puts `value` at `key` through the running members, starting with the next one in turn
    /// and moving on to the next on a retryable failure (no leader, unavailable, a dead or
    /// unreachable node, no answer in time), until the write is acknowledged or the write
    /// timeout passes. Records and returns the acknowledged revision; a non-retryable error is
    /// returned at once.
    pub async fn put_any(&self, key: &str, value: &[u8]) -> Result<u64, HarnessError> {
        let live = self.live_members();
        if live.is_empty() {
            return Err(HarnessError::NoLiveMember);
        }
        let start = self.next_target.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 0usize;
        let attempt_timeout = self.options.attempt_timeout;
        let outcome = poll_until(
            self.options.write_timeout,
            &format!("a write of {key} to be acknowledged by any member"),
            async || {
                let index = live[(start + attempt) % live.len()];
                attempt += 1;
                let socket = self.socket_path(index).map_err(|error| error.to_string())?;
                put_once(&socket, key, value, attempt_timeout)
                    .await
                    .map_err(|error| format!("{}: {error}", self.name(index)))
            },
        )
        .await?;
        let revision = outcome?;
        self.acknowledged.record(key, value, revision);
        Ok(revision)
    }

    /// Puts `value` at `key` through node `index` only, retrying there on retryable failures.
    /// Records and returns the acknowledged revision.
    pub async fn put_via(
        &self,
        index: usize,
        key: &str,
        value: &[u8],
    ) -> Result<u64, HarnessError> {
        let socket = self.socket_path(index)?;
        let attempt_timeout = self.options.attempt_timeout;
        let outcome = poll_until(
            self.options.write_timeout,
            &format!("a write of {key} through {}", self.name(index)),
            async || put_once(&socket, key, value, attempt_timeout).await,
        )
        .await?;
        let revision = outcome?;
        self.acknowledged.record(key, value, revision);
        Ok(revision)
    }
}

/// One put on a fresh connection: `Ok(Ok(revision))` when acknowledged, `Ok(Err(_))` on an
/// answer that retrying will not change, `Err(_)` on a retryable failure.
async fn put_once(
    socket: &Path,
    key: &str,
    value: &[u8],
    attempt_timeout: Duration,
) -> Result<Result<u64, ClientError>, String> {
    let call = async {
        let client = Client::connect(socket).await?;
        client.kv_put(key, value, None).await
    };
    match tokio::time::timeout(attempt_timeout, call).await {
        Err(_) => Err(format!("no answer within {attempt_timeout:?}")),
        Ok(Ok(result)) => Ok(Ok(result.revision)),
        Ok(Err(error)) if is_retryable(&error) => Err(error.to_string()),
        Ok(Err(error)) => Ok(Err(error)),
    }
}
