//! `diagnostics`: what a support bundle (`symphony-ctl debug bundle`) holds of one node — its
//! command line, its recent log lines, its Raft node's state and a scrape of its metrics —
//! with every secret removed.
//!
//! A node answers for itself; a manager also fetches another node's over the node-to-node API,
//! proving itself with that node's own secret (a worker's, or the managers' shared one), as it
//! does for task logs.

use symphony_consensus::NodeRole;
use symphony_ctl::proto::{CtlError, DiagnosticsInfo, ErrorCode, Response};

use crate::context::Context;
use crate::errors::not_initialised;
use crate::remote::proto::{RemoteReply, RemoteRequest};
use crate::tokens::is_own_secret;

/// What replaces a secret.
pub const REMOVED: &str = "<removed>";
/// How long fetching another node's diagnostics may take.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub async fn handle(ctx: &Context, node_id: Option<u64>) -> Result<Response, CtlError> {
    let info = match node_id {
        Some(id) if id != ctx.node.node_id() => fetch(ctx, id).await?,
        _ => collect(ctx).await,
    };
    Ok(Response::Diagnostics(Box::new(info)))
}

/// This node's diagnostics.
pub async fn collect(ctx: &Context) -> DiagnosticsInfo {
    let raft = ctx
        .node
        .consensus()
        .map(|consensus| format!("{:#?}", consensus.metrics()));
    let sources = crate::metrics::scrape::Sources {
        metrics: ctx.metrics.clone(),
        node: ctx.node.clone(),
        gossip: ctx.gossip.clone(),
    };
    let metrics = crate::metrics::scrape::scrape(&sources).await.ok();
    DiagnosticsInfo {
        node_id: ctx.node.node_id(),
        agent_version: crate::VERSION.to_string(),
        argv: redact_argv(std::env::args()),
        recent_log: crate::logging::recent::lines()
            .iter()
            .map(|line| redact_tokens(line))
            .collect(),
        raft,
        metrics,
    }
}

/// Another node's, over the node-to-node API.
async fn fetch(ctx: &Context, node_id: u64) -> Result<DiagnosticsInfo, CtlError> {
    let consensus = ctx.node.consensus().ok_or_else(not_initialised)?;
    let manager_secret = ctx
        .node
        .state()
        .cluster()
        .ok_or_else(not_initialised)?
        .manager_secret;
    let (addr, secret) = consensus
        .read_stale(|state| {
            let node = state.nodes.get(&node_id)?;
            let secret = match node.role {
                NodeRole::Worker => node.node_secret.clone()?,
                NodeRole::Manager => manager_secret.clone(),
            };
            Some((node.remote_addr.clone(), secret))
        })
        .ok_or_else(|| {
            CtlError::new(
                ErrorCode::NotFound,
                format!("node {node_id} is not in this cluster"),
            )
        })?;
    match ctx
        .remote
        .forward(&addr, RemoteRequest::Diagnostics { secret }, FETCH_TIMEOUT)
        .await?
    {
        RemoteReply::Diagnostics(info) => Ok(*info),
        _ => Err(crate::errors::internal(
            "a node answered a diagnostics request with something else",
        )),
    }
}

/// Answers a manager's request for this node's diagnostics.
pub async fn serve_remote(ctx: &Context, secret: &str) -> Result<RemoteReply, CtlError> {
    let state = ctx.node.state();
    if state.worker.is_none() && state.cluster().is_none() {
        return Err(not_initialised());
    }
    if !is_own_secret(&state, secret) {
        return Err(CtlError::new(
            ErrorCode::InvalidToken,
            "only the cluster's managers may read this node's diagnostics",
        ));
    }
    Ok(RemoteReply::Diagnostics(Box::new(collect(ctx).await)))
}

/// The command line, with the value of any flag whose name speaks of a secret removed.
fn redact_argv(args: impl Iterator<Item = String>) -> Vec<String> {
    let secret_name = |flag: &str| {
        let flag = flag.to_ascii_lowercase();
        ["token", "secret", "key", "password"]
            .iter()
            .any(|word| flag.contains(word))
    };
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in args {
        if hide_next {
            out.push(REMOVED.to_string());
            hide_next = false;
            continue;
        }
        match arg.split_once('=') {
            Some((flag, _)) if flag.starts_with("--") && secret_name(flag) => {
                out.push(format!("{flag}={REMOVED}"));
            }
            _ if arg.starts_with("--") && secret_name(&arg) => {
                hide_next = true;
                out.push(arg);
            }
            _ => out.push(redact_tokens(&arg)),
        }
    }
    out
}

/// Join tokens (`SYMTKN-...`) anywhere in `text`, replaced.
fn redact_tokens(text: &str) -> String {
    const PREFIX: &str = "SYMTKN-";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at]);
        out.push_str(REMOVED);
        let after = &rest[at..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_leave_in_flags_or_log_lines() {
        let argv = [
            "symphony-agent",
            "--config-dir",
            "/x",
            "--join-token",
            "SYMTKN-1-W-abc-def",
            "--api-key=hunter2",
            "--labels",
            "zone=a",
        ]
        .map(String::from);
        let shown = redact_argv(argv.into_iter());
        assert_eq!(
            shown,
            [
                "symphony-agent",
                "--config-dir",
                "/x",
                "--join-token",
                REMOVED,
                "--api-key=<removed>",
                "--labels",
                "zone=a"
            ]
        );
        assert_eq!(
            redact_tokens("joining with SYMTKN-1-M-0a1b-s3cr3t, then SYMTKN-1-W-x-y."),
            "joining with <removed>, then <removed>."
        );
        assert_eq!(redact_tokens("nothing here"), "nothing here");
    }
}
