//! A simulated worker's join, as a real worker's (`node/init.rs::prepare_join` and
//! `worker/join.rs` in the agent): ask the node it was pointed at for its CA bundle and stop
//! unless the token pins it, then send the join with the token and a certificate request for a
//! key of its own, check the issued certificate against the pinned bundle, and keep it.
//!
//! The differences are what a simulation does not have: the key and certificate live in
//! memory (in the [`TlsMaterial`] the links will need for mutual TLS), the node ids are drawn
//! at random here (as the agent draws them for `key.json`), and the record says the node
//! serves no node-to-node API and does not gossip (`remote_addr` is port 0, no gossip
//! address), which is the truth.

use std::time::{Duration, SystemTime};

use symphony_agent::remote::proto::{
    JoinReply, JoinRequest, ManagerContact, RemoteCall, RemoteReply, RemoteRequest,
};
use symphony_ctl::proto::Role;
use symphony_pki::{CaBundle, CertRole, JoinToken, NodeKey};
use symphony_wire::tls::TlsMaterial;

use super::error::SimError;
use super::link;

/// How long the CA bundle and join calls may take; joins queue behind each other on the
/// leader's Raft log while a thousand workers join.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// What each simulated worker reports it has. Tasks of the bench reserve nothing, so this only
/// has to be plausible.
const CPUS: u32 = 4;
const MEMORY_BYTES: u64 = 8 << 30;

/// A worker the cluster admitted: who it is, its secret, and its TLS material.
pub struct Joined {
    pub name: String,
    pub node_id: u64,
    /// The worker's own secret, which its sessions, streams and reports carry.
    pub secret: String,
    pub cluster_id: String,
    pub managers: Vec<ManagerContact>,
    /// The version of the gossip keyring the join brought, which its sessions say it holds.
    pub keyring_version: Option<u64>,
    /// The certificate it was issued, its key and the bundle it was checked against.
    pub material: TlsMaterial,
}

impl std::fmt::Debug for Joined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joined")
            .field("name", &self.name)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// A random non-zero id, as the agent makes its node ids.
fn random_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

async fn call(
    link: &symphony_wire::Mux<symphony_agent::remote::proto::Remote>,
    request: RemoteRequest,
) -> Result<RemoteReply, SimError> {
    let call = RemoteCall {
        request,
        forwarded: false,
    };
    Ok(link.call(&call, Some(CALL_TIMEOUT)).await?)
}

/// Joins worker `name` with the worker token `token` through the node at `addr`.
pub async fn join(name: &str, token: &str, addr: &str) -> Result<Joined, SimError> {
    let pinned = JoinToken::parse(token)?;
    let node_id = random_id();
    let link = link::dial(addr, node_id, link::As::Discovery).await?;
    let RemoteReply::CaBundle(bundle) = call(&link, RemoteRequest::CaBundle).await? else {
        return Err(SimError::Unexpected(format!(
            "{addr} answered the CA bundle request with something else"
        )));
    };
    let untrusted = |why: &str| SimError::UntrustedCa {
        addr: addr.to_string(),
        why: why.to_string(),
    };
    let bundle = CaBundle::new(bundle.ok_or_else(|| untrusted("it belongs to no cluster"))?);
    let matches = bundle
        .matches_digest(&pinned.ca_digest)
        .map_err(|error| untrusted(&format!("its CA bundle does not read ({error})")))?;
    if !matches {
        return Err(untrusted("its CA is not the one the token pins"));
    }
    let pki = |what| move |source| SimError::Pki { what, source };
    let key = NodeKey::generate().map_err(pki("cannot make a node key"))?;
    let csr = key
        .request(&format!("symphony node {node_id}"))
        .map_err(pki("cannot make a certificate request"))?;
    let request = JoinRequest {
        token: Some(token.to_string()),
        node_id,
        // A worker's Raft id and address are not recorded; a real worker sends its own.
        raft_node_id: random_id(),
        hostname: name.to_string(),
        raft_addr: String::new(),
        remote_addr: "127.0.0.1:0".to_string(),
        agent_version: symphony_agent::VERSION.to_string(),
        cpus: CPUS,
        memory_bytes: MEMORY_BYTES,
        docker: None,
        cluster_id: None,
        gossip_addr: None,
        labels: Default::default(),
        csr: Some(csr),
    };
    // The token goes only over a link that trusts the bundle the token pins.
    let link = link::dial(addr, node_id, link::As::Newcomer(&bundle)).await?;
    let RemoteReply::Joined(reply) = call(&link, RemoteRequest::Join(request)).await? else {
        return Err(SimError::Unexpected(format!(
            "{addr} answered the join with something else"
        )));
    };
    let JoinReply {
        cluster_id,
        role: Role::Worker,
        node_secret: Some(secret),
        managers,
        gossip_keys,
        certificate: Some(cert_pem),
        ..
    } = reply
    else {
        return Err(SimError::Unexpected(
            "the cluster did not admit the node as a worker with a secret and a certificate".into(),
        ));
    };
    let identity = symphony_pki::verify::first_der(&cert_pem)
        .and_then(|der| symphony_pki::verify_peer(&der, &bundle, &cluster_id, SystemTime::now()))
        .map_err(pki("the issued certificate does not check out"))?;
    if identity.node_id != node_id || identity.role != CertRole::Worker {
        return Err(SimError::Unexpected(format!(
            "the cluster issued a certificate for {identity}, not worker {node_id}"
        )));
    }
    Ok(Joined {
        name: name.to_string(),
        node_id,
        secret,
        material: TlsMaterial {
            cert_pem,
            key_der: key.der(),
            bundle,
            cluster_id: cluster_id.clone(),
        },
        cluster_id,
        managers,
        keyring_version: gossip_keys.map(|keyring| keyring.version),
    })
}
