//! `service logs`: a service's output, gathered from every node its tasks ran on.
//!
//! Any manager serves it: from its replica it knows each task's node, asks each node for that
//! task's output over the node-to-node API (its own tasks it reads itself), and streams the
//! lines back, each with its task and node. Without `--follow` the lines of all tasks come
//! sorted by time and the stream ends; with it, each task's last lines come first and then new
//! ones as they are written, and tasks that start meanwhile (a restart, a scale-up) join in.

use std::collections::BTreeSet;
use std::time::Duration;

use symphony_consensus::{NodeRole, TaskRecord};
use symphony_ctl::proto::{CtlError, ErrorCode, Response, ServiceLogLine};
use tokio::sync::mpsc;

use crate::context::Context;
use crate::errors::not_initialised;
use crate::remote::proto::{LogLine, RemoteReply, RemoteRequest};

/// How often a followed service is looked at for new tasks.
const NEW_TASKS_EVERY: Duration = Duration::from_secs(1);

type Items = mpsc::Receiver<Result<Response, CtlError>>;

/// Where one task's logs are.
#[derive(Debug, Clone)]
struct Source {
    task_id: u64,
    slot: Option<u32>,
    node_id: u64,
    hostname: String,
    remote_addr: String,
    /// What proves this manager to that node.
    secret: String,
}

pub fn stream(
    ctx: &Context,
    name: String,
    tail: Option<u64>,
    follow: bool,
) -> Result<Items, CtlError> {
    let consensus = ctx.node.consensus().ok_or_else(not_initialised)?;
    let cluster = ctx.node.state().cluster().ok_or_else(not_initialised)?;
    if !consensus.read_stale(|state| state.services.contains_key(&name)) {
        return Err(CtlError::new(
            ErrorCode::NotFound,
            format!("no service named {name}; `symphony-ctl service ls` lists them"),
        ));
    }
    let manager_secret = cluster.manager_secret;
    let sources_now = move |seen: &BTreeSet<u64>| -> Vec<Source> {
        consensus.read_stale(|state| {
            state
                .tasks
                .of_service(&name)
                .filter(|task| !seen.contains(&task.id))
                .filter_map(|task: &TaskRecord| {
                    let node = state.nodes.get(&task.node_id?)?;
                    let secret = match node.role {
                        NodeRole::Worker => node.node_secret.clone()?,
                        NodeRole::Manager => manager_secret.clone(),
                    };
                    Some(Source {
                        task_id: task.id,
                        slot: task.slot,
                        node_id: node.node_id,
                        hostname: node.hostname.clone(),
                        remote_addr: node.remote_addr.clone(),
                        secret,
                    })
                })
                .collect()
        })
    };
    let (out, items) = mpsc::channel(32);
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        let first = sources_now(&seen);
        seen.extend(first.iter().map(|source| source.task_id));
        if !follow {
            let mut lines = Vec::new();
            for source in first {
                lines.extend(read_all(&ctx, &source, tail).await);
            }
            lines.sort_by_key(|line| line.at_ms);
            for chunk in lines.chunks(500) {
                if out.send(Ok(Response::Logs(chunk.to_vec()))).await.is_err() {
                    return;
                }
            }
            return;
        }
        for source in first {
            tokio::spawn(forward(ctx.clone(), source, tail, out.clone()));
        }
        loop {
            tokio::select! {
                () = out.closed() => return,
                () = tokio::time::sleep(NEW_TASKS_EVERY) => {}
            }
            for source in sources_now(&seen) {
                seen.insert(source.task_id);
                tokio::spawn(forward(ctx.clone(), source, None, out.clone()));
            }
        }
    });
    Ok(items)
}

/// Opens one task's log stream on its node.
async fn open(
    ctx: &Context,
    source: &Source,
    tail: Option<u64>,
    follow: bool,
) -> Result<mpsc::Receiver<Result<RemoteReply, CtlError>>, CtlError> {
    if source.node_id == ctx.node.node_id() {
        return crate::exec::logs::serve(ctx, source.task_id, &source.secret, tail, follow);
    }
    let request = RemoteRequest::TaskLogs {
        task_id: source.task_id,
        secret: source.secret.clone(),
        tail,
        follow,
    };
    let mut stream = ctx.remote.stream(&source.remote_addr, request).await?;
    let (items, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let item = item.map_err(|error| crate::errors::internal(error.to_string()));
            if items.send(item).await.is_err() {
                return;
            }
        }
    });
    Ok(receiver)
}

async fn read_all(ctx: &Context, source: &Source, tail: Option<u64>) -> Vec<ServiceLogLine> {
    let mut lines = Vec::new();
    match open(ctx, source, tail, false).await {
        Ok(mut items) => {
            while let Some(item) = items.recv().await {
                match item {
                    Ok(RemoteReply::LogLines(batch)) => lines.extend(label(source, batch)),
                    Ok(_) => {}
                    Err(error) => lines.push(notice(source, &error)),
                }
            }
        }
        Err(error) => lines.push(notice(source, &error)),
    }
    lines
}

async fn forward(
    ctx: Context,
    source: Source,
    tail: Option<u64>,
    out: mpsc::Sender<Result<Response, CtlError>>,
) {
    let mut items = match open(&ctx, &source, tail, true).await {
        Ok(items) => items,
        Err(error) => {
            let _ = out
                .send(Ok(Response::Logs(vec![notice(&source, &error)])))
                .await;
            return;
        }
    };
    while let Some(item) = items.recv().await {
        let lines = match item {
            Ok(RemoteReply::LogLines(batch)) => label(&source, batch),
            Ok(_) => continue,
            Err(error) => vec![notice(&source, &error)],
        };
        if out.send(Ok(Response::Logs(lines))).await.is_err() {
            return;
        }
    }
}

fn label(source: &Source, lines: Vec<LogLine>) -> Vec<ServiceLogLine> {
    lines
        .into_iter()
        .map(|line| ServiceLogLine {
            task_id: source.task_id,
            slot: source.slot,
            node_id: source.node_id,
            hostname: source.hostname.clone(),
            at_ms: line.at_ms,
            stream: line.stream,
            text: line.text,
        })
        .collect()
}

fn notice(source: &Source, error: &CtlError) -> ServiceLogLine {
    ServiceLogLine {
        task_id: source.task_id,
        slot: source.slot,
        node_id: source.node_id,
        hostname: source.hostname.clone(),
        at_ms: crate::now_ms(),
        stream: "notice".to_string(),
        text: format!("no logs from this task's node: {error}"),
    }
}
