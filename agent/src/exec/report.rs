//! Sending what happened to this node's tasks to the leader, in order, until it is recorded.
//!
//! A worker sends its reports to the manager its session is with (or the next that answers),
//! which passes them to the leader; a manager hands them to its own node-to-node handler, which
//! does the same. A batch that fails is sent again: the log ignores states a task already
//! passed, so a repeat is harmless and a loss is not.

use std::time::Duration;

use symphony_consensus::TaskReport;
use symphony_ctl::proto::CtlError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::errors::not_initialised;
use crate::remote::proto::{RemoteCall, RemoteReply, RemoteRequest};
use crate::worker::session::candidates;

/// The most reports one call carries.
const BATCH: usize = 1_000;
/// Reports kept while no manager takes them; past this only each task's latest is kept.
const MAX_PENDING: usize = 10_000;
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(
    ctx: Context,
    mut reports: mpsc::UnboundedReceiver<TaskReport>,
    shutdown: CancellationToken,
) {
    let mut pending: Vec<TaskReport> = Vec::new();
    let mut retry = FIRST_RETRY;
    loop {
        if pending.is_empty() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                report = reports.recv() => match report {
                    Some(report) => pending.push(report),
                    None => return,
                },
            }
        }
        while let Ok(report) = reports.try_recv() {
            pending.push(report);
        }
        if pending.len() > MAX_PENDING {
            keep_latest(&mut pending);
        }
        let batch: Vec<TaskReport> = pending.iter().take(BATCH).cloned().collect();
        let sent = tokio::select! {
            () = shutdown.cancelled() => return,
            sent = send(&ctx, batch) => sent,
        };
        match sent {
            Ok(count) => {
                pending.drain(..count);
                retry = FIRST_RETRY;
            }
            Err(error) => {
                tracing::debug!(%error, pending = pending.len(), "task reports not recorded yet; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

/// Keeps only the newest report of each task, in the order they came.
fn keep_latest(pending: &mut Vec<TaskReport>) {
    let mut seen = std::collections::BTreeSet::new();
    let mut kept: Vec<TaskReport> = pending
        .drain(..)
        .rev()
        .filter(|report| seen.insert(report.task_id))
        .collect();
    kept.reverse();
    *pending = kept;
}

/// Sends one batch; returns how many reports were recorded.
async fn send(ctx: &Context, batch: Vec<TaskReport>) -> Result<usize, CtlError> {
    let count = batch.len();
    let state = ctx.node.state();
    let node_id = state.identity.node_id;
    if let Some(worker) = state.worker {
        let request = RemoteRequest::TaskReports {
            node_id,
            secret: worker.node_secret.clone(),
            reports: batch,
        };
        let current = ctx.session.view().map(|view| view.manager);
        let gossip = ctx.gossip.running().map(|running| running.gossip);
        let managers = candidates(current, gossip.as_ref(), node_id, worker.managers).await;
        let mut last_error = None;
        for manager in managers {
            match ctx
                .remote
                .call(&manager.remote_addr, request.clone(), CALL_TIMEOUT)
                .await
            {
                Ok(RemoteReply::Recorded) => return Ok(count),
                Ok(_) => last_error = Some(crate::errors::internal("an unexpected answer")),
                Err(error) => last_error = Some(error),
            }
        }
        return Err(last_error.unwrap_or_else(not_initialised));
    }
    let secret = state.cluster().ok_or_else(not_initialised)?.manager_secret;
    let call = RemoteCall {
        request: RemoteRequest::TaskReports {
            node_id,
            secret,
            reports: batch,
        },
        forwarded: false,
    };
    match crate::remote::server::handle(ctx, call).await? {
        RemoteReply::Recorded => Ok(count),
        _ => Err(crate::errors::internal("an unexpected answer")),
    }
}

#[cfg(test)]
mod tests {
    use symphony_consensus::TaskState;

    use super::*;

    #[test]
    fn an_overflowing_queue_keeps_each_task_s_latest_report() {
        let report = |task_id, state| TaskReport {
            task_id,
            state,
            exit_code: None,
            error: None,
            health: None,
        };
        let mut pending = vec![
            report(1, TaskState::Accepted),
            report(2, TaskState::Accepted),
            report(1, TaskState::Running),
        ];
        keep_latest(&mut pending);
        assert_eq!(
            pending,
            [
                report(2, TaskState::Accepted),
                report(1, TaskState::Running)
            ]
        );
    }
}
