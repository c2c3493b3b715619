//! Becoming a manager: `init` (a one-voter cluster), `init --peers` (this node and the named
//! peers are the first voters; the peers then register with `init --join-addr`, no token), and
//! `join --token` with a manager token through any manager (the leader checks the token, adds
//! the node as a Raft learner, and its promoter makes it a voter once it has caught up).

use std::collections::BTreeMap;
use std::time::Duration;

use symphony_consensus::network::client::strip_scheme;
use symphony_consensus::network::{PeerIdentity, identify};
use symphony_consensus::{
    Availability, ClusterInfo, Command, GossipKeyring, ManagerNode, NodeRecord, NodeRole,
    NodeStatus, Resources,
};
use symphony_ctl::proto::{CtlError, ErrorCode, InitInfo, JoinInfo};
use symphony_pki::{CaBundle, ClusterCa};

use super::supervisor::Owner;
use crate::errors::{already_in, consensus_error, internal};
use crate::manager::propose::propose;
use crate::remote::proto::{JoinReply, JoinRequest, RemoteReply, RemoteRequest};
use crate::tokens;

/// How long a new cluster may take to elect its first leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a joining node waits for the cluster state to reach it.
const JOIN_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a join may take, through every hop to the leader.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `init`, `init --peers` or `init --join-addr`; `cert_expiry` is the new cluster's node
/// certificate lifetime (default [`symphony_pki::ca::DEFAULT_NODE_CERT_LIFETIME`]).
pub async fn init(
    owner: &mut Owner,
    peers: Vec<String>,
    join_addr: Option<String>,
    cert_expiry: Option<Duration>,
) -> Result<InitInfo, CtlError> {
    if let Some(worker) = owner.current().worker {
        return Err(already_in(&worker.cluster_id));
    }
    let cert_lifetime = cert_expiry
        .map(|asked| {
            symphony_pki::ca::check_lifetime(asked).map_err(|error| {
                CtlError::new(ErrorCode::BadRequest, format!("--cert-expiry: {error}"))
                    .not_applied()
            })
        })
        .transpose()?;
    if join_addr.is_some() && cert_lifetime.is_some() {
        return Err(CtlError::new(
            ErrorCode::BadRequest,
            "--cert-expiry is set when a cluster is created; a joining manager takes the cluster's (change it with `symphony-ctl cluster update --cert-expiry`)",
        )
        .not_applied());
    }
    let lifetime = cert_lifetime.unwrap_or(symphony_pki::ca::DEFAULT_NODE_CERT_LIFETIME);
    if let Some(addr) = join_addr {
        let joined = join(owner, None, &addr).await?;
        let identity = owner.current().identity;
        return Ok(InitInfo {
            cluster_id: joined.cluster_id,
            node_id: identity.node_id,
            raft_node_id: identity.raft_node_id,
        });
    }
    if let Some(cluster) = owner.current().cluster() {
        return Err(already_in(&cluster.cluster_id));
    }
    let consensus = owner.start_raft().await?;
    let identity = owner.current().identity;
    // The cluster's id and CA come first: the first managers' Raft links are mutual TLS from
    // the first election on, so each needs its certificate before the group starts. They are
    // kept aside until the cluster state holds them, so that an `init` that stopped between
    // its steps resumes with the CA its peers were enrolled with.
    let (cluster_id, ca) = match owner.ctx.tls.pending_ca() {
        Some(pending) => pending,
        None => {
            let cluster_id = tokens::cluster_id();
            let ca = ClusterCa::generate(&cluster_id)
                .map_err(|error| internal(format!("cannot create the cluster CA: {error}")))?;
            owner
                .ctx
                .tls
                .keep_pending_ca(&cluster_id, &ca)
                .map_err(|error| internal(format!("cannot keep the new cluster CA: {error}")))?;
            (cluster_id, ca)
        }
    };
    // A Raft group without cluster info means an earlier `init` stopped between its two
    // steps: finish the bootstrap instead of refusing.
    if !consensus.is_initialised().await.map_err(consensus_error)? {
        let mut members = BTreeMap::from([(identity.raft_node_id, manager_node(owner))]);
        let mut fresh = Vec::new();
        for peer in &peers {
            let (raft_id, node, enrolled) = identify_peer(owner, peer).await?;
            if !enrolled {
                fresh.push(node.remote_addr.clone());
            }
            if members.insert(raft_id, node).is_some() {
                return Err(CtlError::new(
                    ErrorCode::BadRequest,
                    format!("{peer} is named twice, or is this node itself"),
                ));
            }
        }
        super::enrol::enrol_self(owner, &cluster_id, &ca, lifetime)?;
        for remote_addr in &fresh {
            super::enrol::enrol_peer(owner, remote_addr, &cluster_id, &ca, lifetime)
                .await
                .map_err(|error| {
                    CtlError::new(
                        error.code,
                        format!("cannot enrol the peer at {remote_addr}: {}", error.message),
                    )
                })?;
        }
        consensus
            .initialise(members)
            .await
            .map_err(consensus_error)?;
    } else if !owner.ctx.tls.enrolled() {
        super::enrol::enrol_self(owner, &cluster_id, &ca, lifetime)?;
    }
    consensus.wait_for_leadership(ELECTION_TIMEOUT).await.map_err(|error| {
        CtlError::new(
            ErrorCode::Unavailable,
            format!(
                "the new cluster did not elect this node in time ({error}); are the peers running?"
            ),
        )
    })?;
    let now = crate::now_ms();
    let ca_digest = ca
        .bundle()
        .digest()
        .map_err(|error| internal(format!("cannot read the new cluster CA: {error}")))?;
    let cluster = ClusterInfo {
        cluster_id: cluster_id.clone(),
        created_at_ms: now,
        manager_token: tokens::join_token(&ca_digest, NodeRole::Manager),
        worker_token: tokens::join_token(&ca_digest, NodeRole::Worker),
        manager_secret: tokens::manager_secret(),
        gossip_keys: GossipKeyring::first(tokens::gossip_key()?, now),
        cert_lifetime_s: cert_lifetime.map(|lifetime| lifetime.as_secs()),
        removed_nodes: Default::default(),
        ca_rotation: None,
        ca: Some(ca.clone()),
    };
    let mut node = own_record(owner, now);
    // What this node was issued above (or by an earlier try of this `init`), recorded like
    // every node's.
    node.certificate = owner.ctx.tls.certificate().and_then(|cert| {
        crate::manager::admission::certificate_record(&cert, &ca.bundle())
            .map_err(|error| tracing::warn!(%error, "cannot record this node's certificate"))
            .ok()
    });
    // Just after its election a leader may still refuse writes for a moment; the bootstrap
    // is safe to repeat, since a second one is rejected and the first one's id is kept.
    let deadline = tokio::time::Instant::now() + ELECTION_TIMEOUT;
    loop {
        let command = Command::Bootstrap {
            cluster: Box::new(cluster.clone()),
            node: Box::new(node.clone()),
        };
        match propose(&consensus, command).await {
            Ok(_) => break,
            Err(error) if error.code == ErrorCode::BadRequest => {
                let existing = consensus.read_stale(|state| state.cluster.clone());
                if existing.is_some_and(|existing| existing.cluster_id == cluster_id) {
                    break;
                }
                return Err(CtlError::new(ErrorCode::AlreadyInitialised, error.message));
            }
            Err(error)
                if error.code == ErrorCode::NoLeader && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error),
        }
    }
    owner.ctx.tls.drop_pending_ca();
    tracing::info!(%cluster_id, peers = peers.len(), "initialised a new cluster");
    owner.membership_changed();
    Ok(InitInfo {
        cluster_id,
        node_id: identity.node_id,
        raft_node_id: identity.raft_node_id,
    })
}

/// What a joining node checks and brings before it asks: the CA bundle of the node at `addr`,
/// which must match the digest `token` pins (else nothing is sent, and the join stops), and a
/// certificate request for the node's own key. Without a token (`init --join-addr`, a peer
/// named by `init --peers`) nothing pins the CA: the bundle is taken as it comes, and a node
/// that has none to show yet (its replica has not caught up) does not stop the join.
pub(crate) async fn prepare_join(
    owner: &Owner,
    token: Option<&str>,
    addr: &str,
) -> Result<(Option<CaBundle>, String), CtlError> {
    let pinned = token.map(tokens::parse).transpose()?;
    let bundle = super::enrol::fetch_bundle(owner, addr, JOIN_TIMEOUT).await?;
    if let Some(pinned) = &pinned {
        let bundle = bundle.as_ref().ok_or_else(|| {
            CtlError::new(
                ErrorCode::NotInitialised,
                format!(
                    "the node at {addr} belongs to no cluster yet; join through a node of the cluster"
                ),
            )
            .not_applied()
        })?;
        let matches = bundle.matches_digest(&pinned.ca_digest).map_err(|error| {
            CtlError::new(
                ErrorCode::UntrustedCa,
                format!("the node at {addr} sent a CA bundle that does not read ({error}); nothing was sent to it"),
            )
        })?;
        if !matches {
            tracing::warn!(%addr, "the CA bundle of the node asked to admit this one does not match the join token; not joining");
            return Err(CtlError::new(
                ErrorCode::UntrustedCa,
                format!(
                    "the CA of the node at {addr} is not the one the join token pins; the token was not sent. Check the address and that the token is this cluster's (`symphony-ctl token show` on one of its managers)"
                ),
            )
            .not_applied());
        }
    }
    let csr = owner
        .ctx
        .tls
        .request(owner.current().identity.node_id)
        .map_err(|error| internal(format!("cannot make a certificate request: {error}")))?;
    Ok((bundle, csr))
}

/// Keeps the certificate a join brought, once it checks out against the bundle the join
/// trusted and names this node; anything else is logged and dropped.
pub(crate) fn keep_certificate(owner: &Owner, bundle: Option<&CaBundle>, reply: &JoinReply) {
    let Some(cert) = &reply.certificate else {
        return;
    };
    let Some(bundle) = bundle else {
        tracing::warn!(
            "the cluster issued a certificate, but showed no CA to check it against; not kept"
        );
        return;
    };
    let node_id = owner.current().identity.node_id;
    let checked = symphony_pki::verify::verify_pem(
        cert,
        bundle,
        Some(&reply.cluster_id),
        std::time::SystemTime::now(),
    );
    match checked {
        Ok(identity) if identity.node_id == node_id => {
            if let Err(error) = owner.ctx.tls.store(cert, bundle) {
                tracing::warn!(%error, "cannot keep the certificate the cluster issued");
            }
        }
        Ok(identity) => {
            tracing::warn!(%identity, node_id, "the cluster issued a certificate for another node; not kept");
        }
        Err(error) => {
            tracing::warn!(%error, "the certificate the cluster issued does not check out; not kept");
        }
    }
}

/// Learns a peer's ids from the peer itself, and checks it is free to join.
/// Also says whether the peer holds a certificate of this node's CA already (enrolled by an
/// earlier try of this `init` that stopped before the Raft group started).
async fn identify_peer(owner: &Owner, peer: &str) -> Result<(u64, ManagerNode, bool), CtlError> {
    let own_raft_id = owner.current().identity.raft_node_id;
    let unreachable = |error: &dyn std::fmt::Display| {
        CtlError::new(
            ErrorCode::Unavailable,
            format!(
                "cannot reach the peer {peer} on its Raft address: {error}; is its agent running with that --listen-raft-addr, and is it a fresh node?"
            ),
        )
    };
    // A fresh peer holds no certificate yet, so it serves in plain.
    let plain = identify(own_raft_id, symphony_wire::Transport::plain(), peer).await;
    let (identity, enrolled): (PeerIdentity, bool) = match plain {
        Ok(identity) => (identity, false),
        Err(error) if owner.ctx.tls.enrolled() => {
            // Our own TLS trusts only our CA: a peer it reaches was enrolled by us.
            match identify(own_raft_id, owner.config().raft_transport.clone(), peer).await {
                Ok(identity) => (identity, true),
                Err(_) => return Err(unreachable(&error)),
            }
        }
        Err(error) => return Err(unreachable(&error)),
    };
    if identity.initialised {
        return Err(CtlError::new(
            ErrorCode::WrongCluster,
            format!(
                "the peer {peer} already belongs to a cluster; only fresh nodes can be named in --peers"
            ),
        ));
    }
    Ok((
        identity.raft_node_id,
        ManagerNode {
            raft_addr: strip_scheme(peer).to_string(),
            remote_addr: identity.remote_addr,
        },
        enrolled,
    ))
}

/// `join --token` with a manager token (or, without a token, `init --join-addr`): asks the
/// cluster at `addr` to admit this node, then waits until the cluster state has reached it.
pub async fn join(
    owner: &mut Owner,
    token: Option<String>,
    addr: &str,
) -> Result<JoinInfo, CtlError> {
    if let Some(worker) = owner.current().worker {
        return Err(already_in(&worker.cluster_id));
    }
    let current = owner.current().cluster();
    let (bundle, csr) = prepare_join(owner, token.as_deref(), addr).await?;
    // The leader adds this node as a learner and starts replicating at once.
    let consensus = owner.start_raft().await?;
    let request = join_request(
        owner,
        token,
        current.as_ref().map(|cluster| cluster.cluster_id.clone()),
        Some(csr),
    );
    let reply = send_join(owner, addr, request, bundle.as_ref()).await?;
    keep_certificate(owner, bundle.as_ref(), &reply);
    // The leader replicates the state to this node; wait until it holds the cluster.
    let deadline = tokio::time::Instant::now() + JOIN_CATCH_UP_TIMEOUT;
    loop {
        let joined = consensus.read_stale(|state| {
            state.cluster.as_ref().map(|c| c.cluster_id.clone()) == Some(reply.cluster_id.clone())
        });
        if joined {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CtlError::new(
                ErrorCode::Unavailable,
                format!(
                    "cluster {} admitted this node, but its state has not reached it within {JOIN_CATCH_UP_TIMEOUT:?}; check that the managers can reach this node's Raft address {}",
                    reply.cluster_id,
                    owner.config().advertised.raft_addr
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(cluster_id = %reply.cluster_id, role = %reply.role, "joined the cluster");
    owner.membership_changed();
    Ok(JoinInfo {
        cluster_id: reply.cluster_id,
        node_id: owner.current().identity.node_id,
        role: reply.role,
        leader_raft_id: reply.leader_raft_id,
    })
}

/// Sends a join to the node at `addr` (any node of the cluster) and returns its answer.
pub(crate) async fn send_join(
    owner: &Owner,
    addr: &str,
    request: JoinRequest,
    bundle: Option<&CaBundle>,
) -> Result<JoinReply, CtlError> {
    let request = RemoteRequest::Join(request);
    let reply = match super::enrol::join_transport(owner, bundle)? {
        None => owner.ctx.remote.call(addr, request, JOIN_TIMEOUT).await?,
        Some(newcomer) => {
            super::enrol::call_once(owner, addr, newcomer, request, JOIN_TIMEOUT).await?
        }
    };
    match reply {
        RemoteReply::Joined(reply) => Ok(reply),
        _ => Err(internal(
            "the cluster answered the join with something else",
        )),
    }
}

/// What this node tells the cluster about itself when it joins.
pub(crate) fn join_request(
    owner: &Owner,
    token: Option<String>,
    cluster_id: Option<String>,
    csr: Option<String>,
) -> JoinRequest {
    let config = owner.config();
    let identity = owner.current().identity;
    JoinRequest {
        token,
        node_id: identity.node_id,
        raft_node_id: identity.raft_node_id,
        hostname: config.advertised.hostname.clone(),
        raft_addr: config.advertised.raft_addr.clone(),
        remote_addr: config.advertised.remote_addr.clone(),
        agent_version: crate::VERSION.to_string(),
        cpus: crate::system::cpus(),
        memory_bytes: crate::system::total_memory_bytes(),
        docker: config.settings.docker.clone(),
        cluster_id,
        gossip_addr: Some(config.advertised.gossip_addr.clone()),
        labels: config.settings.labels.clone(),
        csr,
    }
}

/// How the other managers reach this one.
pub(crate) fn manager_node(owner: &Owner) -> ManagerNode {
    ManagerNode {
        raft_addr: owner.config().advertised.raft_addr.clone(),
        remote_addr: owner.config().advertised.remote_addr.clone(),
    }
}

/// This node's record as a ready manager (a new cluster's first node, or a recovered one).
pub(crate) fn own_record(owner: &Owner, now: u64) -> NodeRecord {
    let config = owner.config();
    manager_record(
        &owner.current().identity,
        &config.advertised,
        config.settings.labels.clone(),
        config.settings.docker.clone(),
        now,
    )
}

/// The record of a ready manager with `identity` at `advertised`, as of `now`: a cluster's
/// first manager, a recovered one, or one seeded by `snapshot restore`.
pub fn manager_record(
    identity: &crate::identity::Identity,
    advertised: &super::Advertised,
    labels: BTreeMap<String, String>,
    docker: Option<String>,
    now: u64,
) -> NodeRecord {
    NodeRecord {
        node_id: identity.node_id,
        raft_node_id: Some(identity.raft_node_id),
        role: NodeRole::Manager,
        hostname: advertised.hostname.clone(),
        remote_addr: advertised.remote_addr.clone(),
        raft_addr: Some(advertised.raft_addr.clone()),
        labels,
        availability: Availability::Active,
        status: NodeStatus::Ready,
        resources: Resources {
            cpus: crate::system::cpus(),
            memory_bytes: crate::system::total_memory_bytes(),
            docker,
        },
        agent_version: crate::VERSION.to_string(),
        joined_at_ms: now,
        status_changed_at_ms: now,
        demoted: false,
        gossip_addr: Some(advertised.gossip_addr.clone()),
        node_secret: None,
        certificate: None,
    }
}
