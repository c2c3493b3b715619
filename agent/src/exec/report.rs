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
    tokio::spawn(report_resources(ctx.clone(), shutdown.clone()));
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

/// Tells the cluster, once, what this node has as it found it at start-up (a Docker engine
/// may have come or gone since the node joined): the scheduler places docker tasks by it. The
/// leader writes it only when it differs from the record; until this node is in a cluster and a
/// manager takes it, it is tried again.
async fn report_resources(ctx: Context, shutdown: CancellationToken) {
    let resources = symphony_consensus::Resources {
        cpus: crate::system::cpus(),
        memory_bytes: crate::system::total_memory_bytes(),
        docker: ctx.node.config().settings.docker.clone(),
    };
    let mut retry = FIRST_RETRY;
    loop {
        let sent = tokio::select! {
            () = shutdown.cancelled() => return,
            sent = deliver(&ctx, |node_id, secret| RemoteRequest::NodeResources {
                node_id,
                secret,
                resources: resources.clone(),
                agent_version: crate::VERSION.to_string(),
            }) => sent,
        };
        match sent {
            Ok(()) => return,
            Err(error) => {
                tracing::debug!(%error, "the node's resources not recorded yet; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}

/// Sends one batch; returns how many reports were recorded.
async fn send(ctx: &Context, batch: Vec<TaskReport>) -> Result<usize, CtlError> {
    let count = batch.len();
    deliver(ctx, |node_id, secret| RemoteRequest::TaskReports {
        node_id,
        secret,
        reports: batch,
    })
    .await
    .map(|()| count)
}

/// Sends a request the leader records for this node, made by `request` from the node's id and
/// secret: from a worker to its session's manager (or the next that answers), from a manager
/// through its own node-to-node handler.
async fn deliver(
    ctx: &Context,
    request: impl FnOnce(u64, String) -> RemoteRequest,
) -> Result<(), CtlError> {
    let state = ctx.node.state();
    let node_id = state.identity.node_id;
    if let Some(worker) = state.worker {
        let request = request(node_id, worker.node_secret.clone());
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
                Ok(RemoteReply::Recorded) => return Ok(()),
                Ok(_) => last_error = Some(crate::errors::internal("an unexpected answer")),
                Err(error) => last_error = Some(error),
            }
        }
        return Err(last_error.unwrap_or_else(not_initialised));
    }
    let secret = state.cluster().ok_or_else(not_initialised)?.manager_secret;
    let call = RemoteCall {
        request: request(node_id, secret),
        forwarded: false,
    };
    match crate::remote::server::handle(ctx, call).await? {
        RemoteReply::Recorded => Ok(()),
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
