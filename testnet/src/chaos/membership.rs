//! Membership faults as an operator makes them: a manager `leave`s and later joins again with
//! the manager token, or a voter is demoted to a learner and later promoted back.
//!
//! Both are undone the same way at the end of a run if the nemesis could not undo them itself
//! (an [`Undone`]), so a run always ends with every manager back.

use std::time::Duration;

use serde::Serialize;
use symphony_ctl::proto::Role;
use symphony_ctl::{Client, ClientError};

use super::board::Board;
use crate::lab::Lab;
use crate::lab::rpc::{call, call_retrying};

/// How long a `leave` may take (a leader first hands its leadership over).
const LEAVE_TIMEOUT: Duration = Duration::from_secs(40);
/// How long one join attempt may take (the agent's own limit is 30 s), and all of them.
const JOIN_ATTEMPT: Duration = Duration::from_secs(40);
const JOIN_TOTAL: Duration = Duration::from_secs(90);
/// How long an operator request (token, demote, promote) may keep being retried.
const ADMIN_TOTAL: Duration = Duration::from_secs(30);
const ADMIN_ATTEMPT: Duration = Duration::from_secs(10);

/// A membership change the nemesis made and could not undo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "undo", content = "node", rename_all = "snake_case")]
pub enum Undone {
    /// The manager left and has not joined again.
    Rejoin(String),
    /// The manager was demoted and not promoted again.
    Promote(String),
}

/// `leave` on manager `name`; `Ok` once it is out of the cluster (also when the call failed
/// but the node left anyway, as a leave that timed out may have).
pub async fn leave(lab: &Lab, name: &str) -> Result<(), String> {
    let node = lab.node(name).map_err(|error| error.to_string())?;
    let socket = node.socket_path();
    let outcome = call(&socket, LEAVE_TIMEOUT, async |client: &mut Client| {
        client.leave().await
    })
    .await;
    match outcome {
        Ok(_) => Ok(()),
        Err(error) => {
            // Did it leave anyway?
            let status = call(&socket, ADMIN_ATTEMPT, async |client: &mut Client| {
                client.status().await
            })
            .await;
            match status {
                Ok(status) if status.cluster.is_none() => Ok(()),
                _ => Err(format!("leave on {name} failed: {error}")),
            }
        }
    }
}

/// Joins manager `name` again, with the manager token, through another serving manager.
pub async fn join_again(lab: &Lab, board: &Board, name: &str) -> Result<(), String> {
    let (via_name, via_socket, via_addr) = other_manager(lab, board, name)?;
    let token = call_retrying(
        &via_name,
        &via_socket,
        "token show manager",
        ADMIN_TOTAL,
        ADMIN_ATTEMPT,
        async |client: &mut Client| client.token_show(Role::Manager).await,
    )
    .await
    .map_err(|error| error.to_string())?
    .token;
    let node = lab.node(name).map_err(|error| error.to_string())?;
    call_retrying(
        name,
        &node.socket_path(),
        &format!("join through {via_name}"),
        JOIN_TOTAL,
        JOIN_ATTEMPT,
        async |client: &mut Client| client.join(token.clone(), via_addr.clone()).await,
    )
    .await
    .map(|_| ())
    .map_err(|error| error.to_string())
}

/// `node demote` of manager `name`, asked of another manager.
pub async fn demote(lab: &Lab, board: &Board, name: &str) -> Result<(), String> {
    ask_another_manager(lab, board, name, "demote", async |client, node_id| {
        client.node_demote(node_id).await.map(|_| ())
    })
    .await
}

/// `node promote` of manager `name`, asked of another manager.
pub async fn promote(lab: &Lab, board: &Board, name: &str) -> Result<(), String> {
    ask_another_manager(lab, board, name, "promote", async |client, node_id| {
        client.node_promote(node_id).await.map(|_| ())
    })
    .await
}

/// `node VERB` of manager `name` (by its node id), asked of another manager, with retries.
async fn ask_another_manager<F>(
    lab: &Lab,
    board: &Board,
    name: &str,
    verb: &str,
    mut op: F,
) -> Result<(), String>
where
    F: AsyncFnMut(&mut Client, u64) -> Result<(), ClientError>,
{
    let node_id = node_id(lab, name)?;
    let (via_name, via_socket, _) = other_manager(lab, board, name)?;
    call_retrying(
        &via_name,
        &via_socket,
        &format!("node {verb} {name}"),
        ADMIN_TOTAL,
        ADMIN_ATTEMPT,
        async |client: &mut Client| op(client, node_id).await,
    )
    .await
    .map_err(|error| error.to_string())
}

/// Undoes `undone`.
pub async fn undo(lab: &Lab, board: &Board, undone: &Undone) -> Result<(), String> {
    match undone {
        Undone::Rejoin(name) => {
            join_again(lab, board, name).await?;
            board.set_serving(name, true);
            Ok(())
        }
        Undone::Promote(name) => promote(lab, board, name).await,
    }
}

fn node_id(lab: &Lab, name: &str) -> Result<u64, String> {
    lab.node(name)
        .map_err(|error| error.to_string())?
        .node_id
        .ok_or_else(|| format!("{name} has no known node id"))
}

/// A serving manager other than `name`: its name, socket and remote address.
fn other_manager(
    lab: &Lab,
    board: &Board,
    name: &str,
) -> Result<(String, std::path::PathBuf, String), String> {
    board
        .serving_managers()
        .into_iter()
        .filter_map(|(index, _)| lab.state().nodes.get(index))
        .find(|node| node.name != name)
        .map(|node| {
            (
                node.name.clone(),
                node.socket_path(),
                node.remote_addr.to_string(),
            )
        })
        .ok_or_else(|| format!("no other manager is serving to change {name}'s membership"))
}
