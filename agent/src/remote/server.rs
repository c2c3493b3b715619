//! Serving the node-to-node API on `--listen-remote-addr`: each call routed by its declared
//! [`RemoteRoute`] and answered by the manager-side handler, or — on a worker — relayed.

use std::sync::Arc;
use std::time::Duration;

use symphony_ctl::proto::{CtlError, ErrorCode};
use symphony_wire::{Caller, Reply};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::authorize::authorize;
use super::forward::{leader_elsewhere, refuse_unless_leading};
use super::proto::{Remote, RemoteCall, RemoteReply, RemoteRequest, RemoteRoute};
use crate::context::Context;
use crate::errors::not_initialised;
use crate::manager::{admission, dispatcher, membership, sessions};
use crate::metrics::{Api, Requests};
use crate::serving::Served;
use crate::tokens::constant_time_eq;

const MAX_IN_FLIGHT: usize = 1024;

/// Accepts node-to-node connections until `shutdown`, counting each call and connection in
/// `requests`.
pub async fn serve(
    listener: TcpListener,
    ctx: Context,
    requests: Requests,
    shutdown: CancellationToken,
) {
    let served = Served::<Remote> {
        api: Api::Remote,
        transport: ctx.node.config().remote_transport.clone(),
        max_in_flight: MAX_IN_FLIGHT,
        kind: |call| metric_kind(&call.request),
    };
    crate::serving::serve(listener, ctx, requests, shutdown, served, answer).await;
}

/// One call's reply, once the caller's certificate allows it.
async fn answer(ctx: Context, caller: Arc<Caller>, call: RemoteCall) -> Reply<Remote> {
    let identity = caller.peer.identity.as_ref();
    // Checked per call, so a connection opened before its node was removed makes no call
    // after.
    let allowed = authorize(
        &call.request,
        identity,
        ctx.tls.enrolled(),
        &ctx.tls.removed(),
    );
    match allowed {
        Err(error) => Reply::One(Err(error)),
        Ok(()) => match call.request {
            // The one call answered for the identity the caller's certificate proves, not for
            // anything the request says.
            RemoteRequest::RenewCertificate { csr } => Reply::One(
                crate::manager::renewal::renew(&ctx, identity, &csr)
                    .await
                    .map(|(certificate, bundle)| RemoteReply::Renewed {
                        certificate,
                        bundle,
                    }),
            ),
            request => {
                let call = RemoteCall {
                    request,
                    forwarded: call.forwarded,
                };
                serve_call(&ctx, call).await
            }
        },
    }
}

/// The kind a call is counted under: its declared name, except that every forwarded control
/// request is one kind here; the manager that forwarded it counted it by its own name on its
/// control socket already.
fn metric_kind(request: &RemoteRequest) -> &'static str {
    match request {
        RemoteRequest::Forward { .. } => "forward",
        other => other.spec().0,
    }
}

/// Answers one call: a stream for the requests that are streams, one reply for the rest.
async fn serve_call(ctx: &Context, call: RemoteCall) -> Reply<Remote> {
    match call.request {
        RemoteRequest::Assignments {
            node_id,
            secret,
            heartbeat_ms,
        } => {
            let asked = heartbeat_ms.map(Duration::from_millis);
            match stream_assignments(ctx, node_id, &secret, asked) {
                Ok(stream) => Reply::Stream(stream),
                Err(error) => Reply::One(Err(error)),
            }
        }
        RemoteRequest::TaskLogs {
            task_id,
            secret,
            tail,
            follow,
        } => match crate::exec::logs::serve(ctx, task_id, &secret, tail, follow) {
            Ok(stream) => Reply::Stream(stream),
            Err(error) => Reply::One(Err(error)),
        },
        request => Reply::One(
            handle(
                ctx,
                RemoteCall {
                    request,
                    forwarded: call.forwarded,
                },
            )
            .await,
        ),
    }
}

/// A node's assignments, for the node itself.
fn stream_assignments(
    ctx: &Context,
    node_id: u64,
    secret: &str,
    heartbeat: Option<Duration>,
) -> Result<tokio::sync::mpsc::Receiver<Result<RemoteReply, CtlError>>, CtlError> {
    if ctx.node.is_worker() {
        return Err(CtlError::new(
            ErrorCode::NotManager,
            "this node is a worker; ask a manager for assignments",
        ));
    }
    let consensus = ctx.node.consensus().ok_or_else(not_initialised)?;
    if consensus.has_stopped() {
        // Its replica no longer moves: the node must follow one that does.
        return Err(CtlError::new(
            ErrorCode::Unavailable,
            "this manager's Raft node has stopped; ask another manager for assignments",
        ));
    }
    sessions::authenticate_worker(&consensus, node_id, secret)?;
    let heartbeat =
        dispatcher::heartbeat_for(heartbeat, ctx.node.config().settings.isolation_lease);
    let mut updates = dispatcher::assignments(consensus, node_id, heartbeat);
    let (replies, receiver) = tokio::sync::mpsc::channel(8);
    let session = ctx.metrics.sessions.open();
    tokio::spawn(async move {
        let _session = session;
        while let Some(update) = updates.recv().await {
            if replies
                .send(Ok(RemoteReply::Assignments(update)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    Ok(receiver)
}

/// Answers one call from another node.
pub async fn handle(ctx: &Context, call: RemoteCall) -> Result<RemoteReply, CtlError> {
    // Every node answers this one, from what its own gossip driver holds.
    if let RemoteRequest::GossipKeysHeld = call.request {
        return Ok(RemoteReply::GossipKeysHeld(ctx.keys.applied()));
    }
    // And this one, from the cluster state on a manager (so a manager that joined before
    // its node held a certificate still answers) or from its own `tls/ca.crt` on a worker.
    if let RemoteRequest::CaBundle = call.request {
        return Ok(RemoteReply::CaBundle(ca_bundle(ctx)));
    }
    // And this one, by any node that the caller proves to be a manager to.
    if let RemoteRequest::Diagnostics { secret } = &call.request {
        return crate::api::diagnostics::serve_remote(ctx, secret).await;
    }
    // The bootstrap enrolment, which only a fresh node takes part in.
    match &call.request {
        RemoteRequest::CertificateRequest => return crate::node::enrol::certificate_request(ctx),
        RemoteRequest::Enrol {
            cluster_id,
            certificate,
            bundle,
        } => return crate::node::enrol::keep_enrolment(ctx, cluster_id, certificate, bundle),
        _ => {}
    }
    if let RemoteRequest::RenewCertificate { .. } = call.request {
        // Answered by the server loop, which knows the caller's certificate; never relayed
        // or forwarded, which would lose it.
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            "a certificate renewal is answered only by the manager it is sent to",
        )
        .not_applied());
    }
    if ctx.node.is_worker() {
        return crate::worker::relay::handle(ctx, call.request).await;
    }
    let (_, route) = call.request.spec();
    if route == RemoteRoute::Leader {
        if call.forwarded {
            refuse_unless_leading(&ctx.node.state())?;
        } else if let Some(leader_addr) = leader_elsewhere(&ctx.node, &ctx.remote).await? {
            return ctx
                .remote
                .forward(&leader_addr, call.request, super::forward::FORWARD_TIMEOUT)
                .await;
        }
    }
    let consensus = ctx.node.consensus().ok_or_else(not_initialised)?;
    match call.request {
        RemoteRequest::Forward { secret, request } => {
            check_manager_secret(ctx, &secret)?;
            crate::api::handle(ctx, request, true)
                .await
                .map(RemoteReply::Forwarded)
        }
        RemoteRequest::Join(join) => admission::admit(&consensus, join)
            .await
            .map(RemoteReply::Joined),
        RemoteRequest::CertificateIssued {
            secret,
            node_id,
            certificate,
        } => {
            check_manager_secret(ctx, &secret)?;
            let command = symphony_consensus::Command::Node(Box::new(
                symphony_consensus::NodeCommand::SetCertificate {
                    node_id,
                    certificate,
                },
            ));
            crate::manager::propose::propose(&consensus, command)
                .await
                .map(|_| RemoteReply::Recorded)
        }
        RemoteRequest::Leaving { secret, node_id } => {
            check_manager_secret(ctx, &secret)?;
            membership::remove_leaving(&consensus, node_id)
                .await
                .map(|()| RemoteReply::Left)
        }
        RemoteRequest::Session {
            node_id,
            secret,
            members_seen,
            keyring_version,
        } => sessions::serve_session(
            &consensus,
            &ctx.gossip,
            node_id,
            &secret,
            members_seen,
            keyring_version,
        )
        .await
        .map(RemoteReply::Session),
        RemoteRequest::WorkerLeaving { node_id, secret } => {
            sessions::worker_leaving(&consensus, node_id, &secret)
                .await
                .map(|()| RemoteReply::Left)
        }
        RemoteRequest::TaskReports {
            node_id,
            secret,
            reports,
        } => {
            // A worker proves itself with its own secret, a manager with the managers'.
            if check_manager_secret(ctx, &secret).is_err() {
                sessions::authenticate_worker(&consensus, node_id, &secret)?;
            }
            dispatcher::record_reports(&consensus, node_id, reports)
                .await
                .map(|()| RemoteReply::Recorded)
        }
        RemoteRequest::NodeResources {
            node_id,
            secret,
            resources,
            agent_version,
        } => {
            if check_manager_secret(ctx, &secret).is_err() {
                sessions::authenticate_worker(&consensus, node_id, &secret)?;
            }
            let unchanged = consensus.read_stale(|state| {
                state.nodes.get(&node_id).is_some_and(|record| {
                    record.resources == resources && record.agent_version == agent_version
                })
            });
            if !unchanged {
                let command = symphony_consensus::Command::Node(Box::new(
                    symphony_consensus::NodeCommand::SetResources {
                        node_id,
                        resources,
                        agent_version,
                    },
                ));
                crate::manager::propose::propose(&consensus, command).await?;
            }
            Ok(RemoteReply::Recorded)
        }
        RemoteRequest::WhoLeads => Ok(RemoteReply::Leader(
            super::forward::leader_now(&ctx.node.state())
                .ok()
                .map(|leader| {
                    leader.unwrap_or_else(|| ctx.node.config().advertised.remote_addr.clone())
                }),
        )),
        RemoteRequest::GossipKeysHeld => Ok(RemoteReply::GossipKeysHeld(ctx.keys.applied())),
        RemoteRequest::CaBundle => Ok(RemoteReply::CaBundle(ca_bundle(ctx))),
        RemoteRequest::Diagnostics { secret } => {
            crate::api::diagnostics::serve_remote(ctx, &secret).await
        }
        RemoteRequest::CertificateRequest => crate::node::enrol::certificate_request(ctx),
        RemoteRequest::Enrol {
            cluster_id,
            certificate,
            bundle,
        } => crate::node::enrol::keep_enrolment(ctx, &cluster_id, &certificate, &bundle),
        RemoteRequest::RenewCertificate { .. } => Err(internal_renewal()),
        RemoteRequest::Assignments { .. } | RemoteRequest::TaskLogs { .. } => Err(CtlError::new(
            ErrorCode::BadRequest,
            "this request is a stream",
        )),
    }
}

/// Unreachable: renewals are answered before [`handle`]'s routing.
fn internal_renewal() -> CtlError {
    crate::errors::internal("a certificate renewal reached the general handler")
}

/// The CA bundle this node trusts: a manager's from its replica, a worker's from its disk.
fn ca_bundle(ctx: &Context) -> Option<String> {
    let from_state = ctx.node.consensus().and_then(|consensus| {
        consensus.read_stale(|state| {
            state
                .cluster
                .as_ref()
                .and_then(symphony_consensus::ClusterInfo::trust_bundle)
                .map(|bundle| bundle.pem)
        })
    });
    from_state.or_else(|| ctx.tls.ca_bundle().map(|bundle| bundle.pem))
}

/// Refuses calls from anything that is not a manager of this cluster.
pub(crate) fn check_manager_secret(ctx: &Context, secret: &str) -> Result<(), CtlError> {
    let expected = ctx
        .node
        .state()
        .cluster()
        .ok_or_else(not_initialised)?
        .manager_secret;
    if expected.is_empty() || !constant_time_eq(expected.as_bytes(), secret.as_bytes()) {
        return Err(CtlError::new(
            ErrorCode::InvalidToken,
            "only managers of this cluster may forward requests here",
        ));
    }
    Ok(())
}
