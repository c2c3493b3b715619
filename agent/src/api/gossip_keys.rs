//! `gossip key install|use|remove|list`, on the leader: the keyring is changed by commands in
//! the Raft log, and each step that could cut a node off waits until every ready node is
//! ready for it (see [`crate::manager::gossip_keys`]). Answers carry key ids, never keys.

use std::time::Duration;

use symphony_consensus::{ClusterCommand, Command, CommandResult, Consensus, GossipKeyCommand};
use symphony_ctl::proto::{CtlError, ErrorCode, Response};
use tokio::time::Instant;

use crate::context::Context;
use crate::errors::{not_initialised, unexpected_result};
use crate::manager::gossip_keys::{Answer, Step, behind, summary, survey};
use crate::manager::propose::{propose_client, require_cluster};
use crate::tokens;

/// The longest a request waits for the nodes, so that it answers before a forwarding
/// manager gives up on it.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// How often the nodes are asked again while some are behind.
const ASK_AGAIN_EVERY: Duration = Duration::from_millis(500);

fn consensus(ctx: &Context) -> Result<Consensus, CtlError> {
    ctx.node.consensus().ok_or_else(not_initialised)
}

pub async fn list(ctx: &Context) -> Result<Response, CtlError> {
    let consensus = consensus(ctx)?;
    let cluster = require_cluster(&consensus)?;
    let answers = survey(ctx).await;
    Ok(Response::GossipKeys(summary(
        &cluster.cluster_id,
        &cluster.gossip_keys,
        &answers,
        None,
    )))
}

pub async fn install(ctx: &Context, wait_ms: u64) -> Result<Response, CtlError> {
    let consensus = consensus(ctx)?;
    let cluster = require_cluster(&consensus)?;
    let command = GossipKeyCommand::Install {
        secret: tokens::gossip_key()?,
        at_ms: crate::now_ms(),
    };
    let (id, _) = propose_key(&consensus, command).await?;
    tracing::info!(id, "installed a gossip key");
    // Best effort: the key is installed either way; the answer says how far it has spread.
    let answers = wait_for(ctx, &cluster.cluster_id, Step::Use(id), wait_ms)
        .await
        .unwrap_or_else(|(answers, _)| answers);
    let keyring = require_cluster(&consensus)?.gossip_keys;
    Ok(Response::GossipKeys(summary(
        &cluster.cluster_id,
        &keyring,
        &answers,
        Some(id),
    )))
}

pub async fn use_key(
    ctx: &Context,
    id: u32,
    wait_ms: u64,
    force: bool,
) -> Result<Response, CtlError> {
    let consensus = consensus(ctx)?;
    let cluster = require_cluster(&consensus)?;
    if cluster.gossip_keys.get(id).is_none() {
        return Err(no_such_key(id));
    }
    if !force {
        wait_for(ctx, &cluster.cluster_id, Step::Use(id), wait_ms)
            .await
            .map_err(|(_, missing)| {
                refusal(format!(
                    "{} do not hold gossip key {id} yet, and would not understand packets sealed with it; nothing was changed. Nodes learn a new key within seconds (workers at their next session): wait and try again, or pass --force",
                    nodes(&missing)
                ))
            })?;
    }
    propose_key(&consensus, GossipKeyCommand::Use { id }).await?;
    tracing::info!(id, "gossip key in use");
    // Best effort, as for install: the answer says how many nodes seal with the key already.
    let answers = match cluster
        .gossip_keys
        .primary
        .filter(|previous| *previous != id)
    {
        Some(previous) => wait_for(ctx, &cluster.cluster_id, Step::Remove(previous), wait_ms)
            .await
            .unwrap_or_else(|(answers, _)| answers),
        None => survey(ctx).await,
    };
    let keyring = require_cluster(&consensus)?.gossip_keys;
    Ok(Response::GossipKeys(summary(
        &cluster.cluster_id,
        &keyring,
        &answers,
        Some(id),
    )))
}

pub async fn remove(
    ctx: &Context,
    id: u32,
    wait_ms: u64,
    force: bool,
) -> Result<Response, CtlError> {
    let consensus = consensus(ctx)?;
    let cluster = require_cluster(&consensus)?;
    if cluster.gossip_keys.get(id).is_none() {
        return Err(no_such_key(id));
    }
    if cluster.gossip_keys.primary == Some(id) {
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            format!(
                "gossip key {id} is the primary: every node seals with it. Install and use another key first"
            ),
        )
        .not_applied());
    }
    if !force {
        wait_for(ctx, &cluster.cluster_id, Step::Remove(id), wait_ms)
            .await
            .map_err(|(_, missing)| {
                refusal(format!(
                    "{} still seal gossip with key {id}, and would not be heard without it; nothing was changed. Wait for them to take up the primary and try again, or pass --force",
                    nodes(&missing)
                ))
            })?;
    }
    propose_key(&consensus, GossipKeyCommand::Remove { id }).await?;
    tracing::info!(id, "removed a gossip key");
    let answers = survey(ctx).await;
    let keyring = require_cluster(&consensus)?.gossip_keys;
    Ok(Response::GossipKeys(summary(
        &cluster.cluster_id,
        &keyring,
        &answers,
        Some(id),
    )))
}

/// Proposes a keyring change; the key id and the keyring's version after it.
async fn propose_key(
    consensus: &Consensus,
    command: GossipKeyCommand,
) -> Result<(u32, u64), CtlError> {
    match propose_client(
        consensus,
        Command::Cluster(Box::new(ClusterCommand::GossipKey(command))),
    )
    .await?
    {
        CommandResult::GossipKey { id, version } => Ok((id, version)),
        other => Err(unexpected_result(other)),
    }
}

/// Asks the nodes until none is behind for `step` (their answers), or until `wait_ms` has
/// passed (the last answers and the nodes behind).
async fn wait_for(
    ctx: &Context,
    cluster_id: &str,
    step: Step,
    wait_ms: u64,
) -> Result<Vec<Answer>, (Vec<Answer>, Vec<u64>)> {
    let deadline = Instant::now() + Duration::from_millis(wait_ms).min(MAX_WAIT);
    loop {
        let answers = survey(ctx).await;
        let missing = behind(step, cluster_id, &answers);
        if missing.is_empty() {
            return Ok(answers);
        }
        if Instant::now() + ASK_AGAIN_EVERY > deadline {
            return Err((answers, missing));
        }
        tokio::time::sleep(ASK_AGAIN_EVERY).await;
    }
}

fn no_such_key(id: u32) -> CtlError {
    CtlError::new(
        ErrorCode::NotFound,
        format!("gossip key {id} is not installed; see `symphony-ctl gossip key list`"),
    )
    .not_applied()
}

fn refusal(message: String) -> CtlError {
    CtlError::new(ErrorCode::Unavailable, message).not_applied()
}

/// "node 7" or "nodes 7, 9 and 12".
fn nodes(ids: &[u64]) -> String {
    let shown: Vec<String> = ids.iter().take(10).map(u64::to_string).collect();
    let more = ids.len().saturating_sub(shown.len());
    match (shown.as_slice(), more) {
        ([one], 0) => format!("node {one}"),
        (_, 0) => format!("nodes {}", shown.join(", ")),
        _ => format!("nodes {} and {more} more", shown.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_read_as_sentences() {
        assert_eq!(nodes(&[7]), "node 7");
        assert_eq!(nodes(&[7, 9]), "nodes 7, 9");
        let many: Vec<u64> = (1..=12).collect();
        assert_eq!(
            nodes(&many),
            "nodes 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more"
        );
    }
}
