//! How a node comes to hold its certificate, and how it dials before it does.
//!
//! Every link of an enrolled node is mutual TLS (`crate::tls`), so a node without a
//! certificate cannot speak to the cluster as a member. Two ways in:
//! - **a join** (`join --token`, and `init --join-addr` of a node that holds one already): the
//!   joiner asks the node it was pointed at for its CA bundle over a discovery connection (TLS
//!   that trusts no server yet, and carries nothing secret), checks it against the token's
//!   digest, and sends its join over a newcomer connection that trusts only that bundle;
//! - **the bootstrap** (`init --peers`): the node that creates the cluster makes its CA before
//!   the Raft group starts, issues itself a certificate, and enrols each fresh peer — asks it
//!   for a certificate request and hands it the certificate and the bundle — so that the
//!   group's first election already runs over mutual TLS. A fresh node takes part only while
//!   it belongs to no cluster and holds no certificate; before that it has nothing to protect.

use std::time::Duration;

use symphony_ctl::proto::{CtlError, ErrorCode, Role};
use symphony_pki::{CaBundle, CertRole, ClusterCa};
use symphony_wire::Transport;
use symphony_wire::tls::TlsTransport;

use super::supervisor::Owner;
use crate::context::Context;
use crate::errors::internal;
use crate::remote::RemoteClient;
use crate::remote::proto::{RemoteReply, RemoteRequest};

/// How long one enrolment or discovery call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends one request to `addr` over `transport`, on a connection of its own (not the pool's,
/// whose connections are this node's ordinary links).
pub(crate) async fn call_once(
    owner: &Owner,
    addr: &str,
    transport: Transport,
    request: RemoteRequest,
    timeout: Duration,
) -> Result<RemoteReply, CtlError> {
    let node_id = owner.current().identity.node_id;
    RemoteClient::connect(addr, node_id, transport)
        .await?
        .call(request, timeout)
        .await
}

/// The CA bundle the node at `addr` shows; nothing in it is trusted yet.
pub(crate) async fn fetch_bundle(
    owner: &Owner,
    addr: &str,
    timeout: Duration,
) -> Result<Option<CaBundle>, CtlError> {
    // Over discovery even when this node holds a certificate: it may be another cluster's
    // (left over from a bootstrap that did not complete), which the node at `addr` would refuse.
    let discovery = TlsTransport::discovery()
        .map_err(|error| internal(format!("cannot set up TLS: {error}")))?;
    let reply = call_once(
        owner,
        addr,
        Transport::tls(discovery),
        RemoteRequest::CaBundle,
        timeout,
    )
    .await?;
    let RemoteReply::CaBundle(bundle) = reply else {
        return Err(internal(
            "the node asked for its CA bundle answered with something else",
        ));
    };
    Ok(bundle.map(CaBundle::new))
}

/// How a joining node sends its join: over its ordinary links (`None`) if it holds a valid
/// certificate of the CA the cluster showed (a manager of the bootstrap, a node joining
/// again), else as a newcomer that trusts only `bundle` (a fresh node, or one whose
/// certificate expired: the cluster refuses that one in the handshake).
pub(crate) fn join_transport(
    owner: &Owner,
    bundle: Option<&CaBundle>,
) -> Result<Option<Transport>, CtlError> {
    let own = owner.ctx.tls.ca_bundle();
    if owner.ctx.tls.enrolled()
        && owner.ctx.tls.holds_valid_certificate()
        && (bundle.is_none() || own.as_ref() == bundle)
    {
        return Ok(None);
    }
    let bundle = bundle.ok_or_else(|| {
        CtlError::new(
            ErrorCode::Forbidden,
            "this node holds no certificate of the cluster and the node it asked showed no CA; join with a token through a node of the cluster",
        )
        .not_applied()
    })?;
    let newcomer = TlsTransport::newcomer(bundle.clone(), None)
        .map_err(|error| internal(format!("cannot set up TLS: {error}")))?;
    Ok(Some(Transport::tls(newcomer)))
}

/// Issues this node, which creates cluster `cluster_id`, its own manager certificate, valid for
/// `lifetime`.
pub(crate) fn enrol_self(
    owner: &Owner,
    cluster_id: &str,
    ca: &ClusterCa,
    lifetime: Duration,
) -> Result<(), CtlError> {
    let node_id = owner.current().identity.node_id;
    let csr = owner
        .ctx
        .tls
        .request(node_id)
        .map_err(|error| internal(format!("cannot make a certificate request: {error}")))?;
    let cert = crate::manager::admission::issue_with(
        ca,
        cluster_id,
        &csr,
        node_id,
        Role::Manager,
        lifetime,
    )?;
    owner
        .ctx
        .tls
        .store(&cert, &ca.bundle())
        .map_err(|error| internal(format!("cannot keep this node's certificate: {error}")))
}

/// Enrols the fresh peer whose node-to-node API is at `remote_addr` as a manager of
/// `cluster_id`, with a certificate valid for `lifetime`. The peer has no certificate, so it
/// is spoken to in plain.
pub(crate) async fn enrol_peer(
    owner: &Owner,
    remote_addr: &str,
    cluster_id: &str,
    ca: &ClusterCa,
    lifetime: Duration,
) -> Result<(), CtlError> {
    let reply = call_once(
        owner,
        remote_addr,
        Transport::plain(),
        RemoteRequest::CertificateRequest,
        CALL_TIMEOUT,
    )
    .await?;
    let RemoteReply::CertificateRequest { node_id, csr } = reply else {
        return Err(internal(
            "the peer asked for a certificate request answered with something else",
        ));
    };
    let certificate = crate::manager::admission::issue_with(
        ca,
        cluster_id,
        &csr,
        node_id,
        Role::Manager,
        lifetime,
    )?;
    let reply = call_once(
        owner,
        remote_addr,
        Transport::plain(),
        RemoteRequest::Enrol {
            cluster_id: cluster_id.to_string(),
            certificate,
            bundle: ca.bundle().pem,
        },
        CALL_TIMEOUT,
    )
    .await?;
    match reply {
        RemoteReply::Enrolled => Ok(()),
        _ => Err(internal(
            "the peer asked to keep its certificate answered with something else",
        )),
    }
}

/// A fresh node's answer to [`RemoteRequest::CertificateRequest`].
pub fn certificate_request(ctx: &Context) -> Result<RemoteReply, CtlError> {
    refuse_unless_fresh(ctx)?;
    let node_id = ctx.node.node_id();
    let csr = ctx
        .tls
        .request(node_id)
        .map_err(|error| internal(format!("cannot make a certificate request: {error}")))?;
    Ok(RemoteReply::CertificateRequest { node_id, csr })
}

/// A fresh node keeps the certificate a bootstrap issued it, once it checks out: issued by
/// `bundle`, for this node, as a manager of `cluster_id`.
pub fn keep_enrolment(
    ctx: &Context,
    cluster_id: &str,
    certificate: &str,
    bundle: &str,
) -> Result<RemoteReply, CtlError> {
    refuse_unless_fresh(ctx)?;
    let bundle = CaBundle::new(bundle);
    let bad = |detail: String| {
        CtlError::new(
            ErrorCode::BadRequest,
            format!("the certificate offered to this node was not kept: {detail}"),
        )
        .not_applied()
    };
    let identity = symphony_pki::verify::verify_pem(
        certificate,
        &bundle,
        Some(cluster_id),
        std::time::SystemTime::now(),
    )
    .map_err(|error| bad(error.to_string()))?;
    if identity.node_id != ctx.node.node_id() || identity.role != CertRole::Manager {
        return Err(bad(format!(
            "it names {identity}, and this is node {:x}",
            ctx.node.node_id()
        )));
    }
    ctx.tls
        .store(certificate, &bundle)
        .map_err(|error| internal(format!("cannot keep the certificate: {error}")))?;
    tracing::info!(%cluster_id, "enrolled by the node creating the cluster: this node's links are mutual TLS from now on");
    Ok(RemoteReply::Enrolled)
}

/// Enrolment is for a node that belongs to no cluster and holds no certificate: anyone who can
/// reach a fresh node may start it (as anyone could name it in `init --peers`), nobody may
/// change an enrolled one.
fn refuse_unless_fresh(ctx: &Context) -> Result<(), CtlError> {
    let state = ctx.node.state();
    if ctx.tls.enrolled() || state.worker.is_some() || state.cluster().is_some() {
        return Err(CtlError::new(
            ErrorCode::AlreadyInitialised,
            "this node already belongs to a cluster (or holds a certificate); only a fresh node is enrolled by a bootstrap",
        )
        .not_applied());
    }
    Ok(())
}
