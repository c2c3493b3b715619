//! Control requests: where each is answered, and one handler file per resource.
//!
//! - this file: [`handle`], which routes a request by its declared [`Route`] (see
//!   `symphony_ctl::proto::Request::spec`) and hands it to its resource's handler;
//! - [`status`]: `status` on a manager or a worker;
//! - [`membership`]: `init`, `join`, `leave`, `recover` (carried out by the node's supervisor)
//!   and `snapshot save`;
//! - [`kv`]: the key-value store; [`kv_watch`]: its watch stream;
//! - [`tokens`]: join tokens;
//! - [`cluster`]: cluster-wide settings (`cluster update`) and `ca status`;
//! - [`gossip_keys`]: the gossip keyring's rotation;
//! - [`nodes`]: `node ls`, `inspect`, `update`, `promote`, `demote`, `rm`;
//! - [`services`]: services and their tasks and logs;
//! - [`diagnostics`]: what a support bundle holds of a node.
//!
//! Adding a request: its type and route in the protocol, its handler in its resource's file and
//! one line in [`handle`], and its call in the client and the CLI.

pub mod cluster;
pub mod diagnostics;
pub mod events;
pub mod gossip_keys;
pub mod kv;
pub mod kv_watch;
pub mod membership;
pub mod nodes;
pub mod services;
pub mod status;
pub mod tokens;

use symphony_consensus::Consensus;
use symphony_ctl::proto::{CtlError, ErrorCode, Request, RequestSpec, Response, Route};

use crate::context::Context;
use crate::errors::not_initialised;
use crate::remote::forward::{forward_control, leader_elsewhere};

/// Answers one control request that is a stream (`service logs`), or gives it back.
#[allow(clippy::result_large_err)]
pub fn stream(
    ctx: &Context,
    request: Request,
) -> Result<Result<tokio::sync::mpsc::Receiver<Result<Response, CtlError>>, CtlError>, Request> {
    let spec = request.spec();
    if !spec.stream {
        return Err(request);
    }
    if let Some(refused) = refused_on_worker(ctx, spec) {
        return Ok(Err(refused));
    }
    Ok(match request {
        Request::ServiceLogs { name, tail, follow } => {
            services::logs::stream(ctx, name, tail, follow)
        }
        Request::Events { since, filter } => events::stream(ctx, since, filter),
        Request::KvWatch {
            prefix,
            from_revision,
        } => kv_watch::stream(ctx, prefix, from_revision),
        other => Ok(unanswered_stream(other.spec())),
    })
}

/// What a request declared a stream, that no stream here answers, gets.
fn unanswered_stream(spec: RequestSpec) -> tokio::sync::mpsc::Receiver<Result<Response, CtlError>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let _ = sender.try_send(Err(crate::errors::internal(format!(
        "{} is declared a stream but has no stream handler",
        spec.name
    ))));
    receiver
}

/// A worker refuses what its route says a manager answers.
fn refused_on_worker(ctx: &Context, spec: RequestSpec) -> Option<CtlError> {
    match spec.route {
        Route::Manager | Route::Leader if ctx.node.is_worker() => Some(not_manager(ctx, spec.name)),
        _ => None,
    }
}

/// Answers one control request. `forwarded` is set when another manager passed it on: it is
/// answered here (as leader) or refused, never passed on again.
pub async fn handle(
    ctx: &Context,
    request: Request,
    forwarded: bool,
) -> Result<Response, CtlError> {
    let spec = request.spec();
    if let Some(refused) = refused_on_worker(ctx, spec) {
        return Err(refused);
    }
    match spec.route {
        Route::Local | Route::Membership | Route::Manager => {}
        Route::Leader if forwarded => {}
        Route::Leader => {
            let cluster = ctx.node.state().cluster().ok_or_else(not_initialised)?;
            if let Some(leader_addr) = leader_elsewhere(&ctx.node, &ctx.remote).await? {
                return forward_control(&ctx.remote, &leader_addr, cluster.manager_secret, request)
                    .await;
            }
        }
    }
    match request {
        Request::Status => Ok(Response::Status(Box::new(status::status(ctx).await))),
        Request::Init {
            peers,
            join_addr,
            cert_expiry_ms,
        } => ctx
            .node
            .init(
                peers,
                join_addr,
                cert_expiry_ms.map(std::time::Duration::from_millis),
            )
            .await
            .map(Response::Init),
        Request::Join { token, addr } => ctx.node.join(token, addr).await.map(Response::Join),
        Request::Leave => ctx.node.leave().await.map(Response::Done),
        Request::RecoverForceNewCluster => ctx.node.recover().await.map(Response::Done),
        Request::SnapshotSave { path } => membership::snapshot_save(&consensus(ctx)?, &path).await,
        Request::KvPut {
            key,
            value,
            if_revision,
        } => kv::put(&consensus(ctx)?, key, value, if_revision).await,
        Request::KvGet {
            key,
            consistency,
            revision,
        } => kv::get(&consensus(ctx)?, key, consistency, revision).await,
        Request::KvHistory { keep } => kv::history(&consensus(ctx)?, keep).await,
        Request::KvList {
            prefix,
            consistency,
        } => kv::list(&consensus(ctx)?, prefix, consistency).await,
        Request::KvDelete { key, if_revision } => {
            kv::delete(&consensus(ctx)?, key, if_revision).await
        }
        Request::TokenShow { role } => tokens::show(&consensus(ctx)?, role).await,
        Request::TokenRotate { role } => tokens::rotate(&consensus(ctx)?, role).await,
        Request::ClusterUpdate { cert_expiry_ms } => {
            cluster::update(&consensus(ctx)?, cert_expiry_ms).await
        }
        Request::CaStatus { consistency } => {
            cluster::ca_status(&consensus(ctx)?, consistency).await
        }
        Request::CaRotate => cluster::ca_rotate(&consensus(ctx)?).await,
        Request::GossipKeyInstall { wait_ms } => gossip_keys::install(ctx, wait_ms).await,
        Request::GossipKeyUse { id, wait_ms, force } => {
            gossip_keys::use_key(ctx, id, wait_ms, force).await
        }
        Request::GossipKeyRemove { id, wait_ms, force } => {
            gossip_keys::remove(ctx, id, wait_ms, force).await
        }
        Request::GossipKeyList => gossip_keys::list(ctx).await,
        Request::NodeList { consistency } => nodes::list(&consensus(ctx)?, consistency).await,
        Request::NodeInspect {
            node_id,
            consistency,
        } => nodes::inspect(&consensus(ctx)?, node_id, consistency).await,
        Request::NodeUpdate {
            node_id,
            availability,
            label_add,
            label_rm,
        } => nodes::update(&consensus(ctx)?, node_id, availability, label_add, label_rm).await,
        Request::NodePromote { node_id } => nodes::promote(&consensus(ctx)?, node_id).await,
        Request::NodeDemote { node_id } => nodes::demote(&consensus(ctx)?, node_id).await,
        Request::NodeRemove { node_id, force } => {
            nodes::remove(&consensus(ctx)?, node_id, force).await
        }
        Request::ServiceCreate { name, spec } => {
            services::create(&consensus(ctx)?, name, *spec).await
        }
        Request::ServiceList { consistency } => services::list(&consensus(ctx)?, consistency).await,
        Request::ServiceInspect { name, consistency } => {
            services::inspect(&consensus(ctx)?, name, consistency).await
        }
        Request::ServicePs { name, consistency } => {
            services::ps(&consensus(ctx)?, name, consistency).await
        }
        Request::ServiceExplain { name, consistency } => {
            services::explain(&consensus(ctx)?, name, consistency).await
        }
        Request::ServiceScale { name, replicas } => {
            services::scale(&consensus(ctx)?, name, replicas).await
        }
        Request::ServiceRemove { name } => services::remove(&consensus(ctx)?, name).await,
        Request::ServiceUpdate { name, patch } => {
            services::update(&consensus(ctx)?, name, *patch).await
        }
        Request::ServiceRollback { name } => services::rollback(&consensus(ctx)?, name).await,
        Request::ServiceRebalance { name } => services::rebalance(&consensus(ctx)?, name).await,
        Request::Diagnostics { node_id } => diagnostics::handle(ctx, node_id).await,
        Request::ServiceLogs { .. } | Request::Events { .. } | Request::KvWatch { .. } => {
            Err(CtlError::new(
                ErrorCode::BadRequest,
                format!("`{}` is a stream; send it as one", spec.name),
            ))
        }
    }
}

/// The Raft node of a manager in a cluster.
fn consensus(ctx: &Context) -> Result<Consensus, CtlError> {
    let state = ctx.node.state();
    state.cluster().ok_or_else(not_initialised)?;
    state.consensus.ok_or_else(not_initialised)
}

/// A manager's request on a worker: refused, naming the managers to ask instead.
fn not_manager(ctx: &Context, what: &str) -> CtlError {
    let managers: Vec<String> = ctx
        .node
        .worker()
        .map(|worker| {
            worker
                .managers
                .into_iter()
                .map(|manager| manager.remote_addr)
                .collect()
        })
        .unwrap_or_default();
    CtlError::new(
        ErrorCode::NotManager,
        format!(
            "`{what}` needs a manager, and this node is a worker; run it on a manager's control socket (managers: {})",
            if managers.is_empty() {
                "see `symphony-ctl status`".to_string()
            } else {
                managers.join(", ")
            }
        ),
    )
}
