//! Join tokens: shown and rotated on the leader (they are secrets, and only its view is
//! current).

use symphony_consensus::{
    ClusterCommand, ClusterInfo, Command, CommandResult, Consensus, NodeRole,
};
use symphony_ctl::proto::{CtlError, ReadConsistency, Response, Role, TokenInfo};

use crate::errors::{not_initialised, unexpected_result};
use crate::manager::propose::{propose_client, read, require_cluster};
use crate::tokens;

pub async fn show(consensus: &Consensus, role: Role) -> Result<Response, CtlError> {
    let cluster = read(consensus, ReadConsistency::Linearizable, |state| {
        state.cluster.clone()
    })
    .await?
    .ok_or_else(not_initialised)?;
    Ok(Response::Token(TokenInfo {
        role,
        token: token_of(&cluster, role),
    }))
}

pub async fn rotate(consensus: &Consensus, role: Role) -> Result<Response, CtlError> {
    let cluster = require_cluster(consensus)?;
    let token = tokens::join_token_for(&cluster, node_role(role))?;
    let command = Command::Cluster(Box::new(ClusterCommand::RotateToken {
        role: node_role(role),
        token: token.clone(),
    }));
    match propose_client(consensus, command).await? {
        CommandResult::Done => Ok(Response::Token(TokenInfo { role, token })),
        other => Err(unexpected_result(other)),
    }
}

pub fn node_role(role: Role) -> NodeRole {
    match role {
        Role::Manager => NodeRole::Manager,
        Role::Worker => NodeRole::Worker,
    }
}

fn token_of(cluster: &ClusterInfo, role: Role) -> String {
    match role {
        Role::Manager => cluster.manager_token.clone(),
        Role::Worker => cluster.worker_token.clone(),
    }
}
