//! Joins and the cluster CA: a join token pins the CA by digest, and a joining node that is
//! shown another CA stops before it sends its token; a join is issued a certificate naming the
//! node, its role and the cluster, for a key that stays in the node's `tls/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use common::start_agent;
use symphony_agent::remote::proto::{Remote, RemoteReply, RemoteRequest};
use symphony_ctl::ClientError;
use symphony_ctl::proto::{CtlError, ErrorCode, Role};
use symphony_pki::{CaBundle, CertRole, ClusterCa, JoinToken};
use symphony_wire::{Limits, LocalHello, Protocol, Reply, ServerConfig, Transport};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn code_of(error: ClientError) -> ErrorCode {
    match error {
        ClientError::Remote(error) => error.code,
        other => panic!("expected an error from the agent, got {other}"),
    }
}

/// A node-to-node server that is not the cluster's: it serves TLS with a certificate of `ca`
/// and shows `bundle` as its CA, and records the token of every join that reaches it.
async fn impostor(
    ca: &ClusterCa,
    bundle: CaBundle,
) -> (String, Arc<Mutex<Vec<Option<String>>>>, CancellationToken) {
    let key = symphony_pki::NodeKey::generate().unwrap();
    let identity = symphony_pki::CertIdentity {
        cluster_id: "impostor".into(),
        role: CertRole::Manager,
        node_id: 99,
    };
    let issued = ca
        .issue(&key.request("n").unwrap(), &identity, SystemTime::now())
        .unwrap();
    let material = symphony_wire::tls::TlsMaterial {
        cert_pem: issued.cert_pem,
        key_der: key.der(),
        bundle: ca.bundle(),
        cluster_id: "impostor".into(),
    };
    let transport = Transport::tls(
        symphony_wire::tls::TlsTransport::new(&material, symphony_wire::tls::ClientAuth::Optional)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let joins = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let config = ServerConfig {
        protocol: Remote::ID,
        transport,
        limits: Limits::default(),
        local: Arc::new(|| LocalHello {
            node_id: 99,
            agent_version: "impostor".into(),
        }),
    };
    let seen = joins.clone();
    tokio::spawn(symphony_wire::listen::serve(
        listener,
        config,
        shutdown.clone(),
        move |connection| {
            let bundle = bundle.clone();
            let seen = seen.clone();
            symphony_wire::serve::serve::<Remote, _, _>(connection, 16, move |_caller, call| {
                let bundle = bundle.clone();
                let seen = seen.clone();
                async move {
                    Reply::One(match call.request {
                        RemoteRequest::CaBundle => Ok(RemoteReply::CaBundle(Some(bundle.pem))),
                        RemoteRequest::Join(join) => {
                            seen.lock().unwrap().push(join.token);
                            Err(CtlError::new(
                                ErrorCode::Unavailable,
                                "the impostor admits no one",
                            ))
                        }
                        _ => Err(CtlError::new(ErrorCode::BadRequest, "not served here")),
                    })
                }
            })
        },
    ));
    (addr, joins, shutdown)
}

#[tokio::test]
async fn a_token_pinning_another_ca_stops_the_join_before_the_token_is_sent() {
    let theirs = ClusterCa::generate("impostor").unwrap();
    let (addr, joins, shutdown) = impostor(&theirs, theirs.bundle()).await;
    let dir = tempfile::tempdir().unwrap();
    let (_agent, client, _) = start_agent(dir.path()).await;

    // A token pinning some other CA: the join stops at the digest, nothing reaches the server.
    let ours = ClusterCa::generate("ours").unwrap();
    for role in [CertRole::Worker, CertRole::Manager] {
        let token = JoinToken::generate(role, &ours.bundle().digest().unwrap()).to_string();
        let refused = client.join(token, addr.clone()).await.unwrap_err();
        assert_eq!(code_of(refused), ErrorCode::UntrustedCa, "{role}");
    }
    assert!(
        joins.lock().unwrap().is_empty(),
        "a token was sent to a CA it does not pin"
    );
    assert!(client.status().await.unwrap().cluster.is_none());

    // The control: a token pinning the server's CA is sent (and the server refuses it).
    let token = JoinToken::generate(CertRole::Worker, &theirs.bundle().digest().unwrap());
    let refused = client
        .join(token.to_string(), addr.clone())
        .await
        .unwrap_err();
    assert_eq!(code_of(refused), ErrorCode::Unavailable);
    assert_eq!(*joins.lock().unwrap(), vec![Some(token.to_string())]);
    shutdown.cancel();
}

/// The identity the certificate in `dir/tls` proves, checked against the bundle beside it.
fn certificate_in(dir: &std::path::Path, cluster_id: &str) -> symphony_pki::CertIdentity {
    let tls = dir.join("tls");
    let mode = std::fs::metadata(tls.join("node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the node key is private");
    let bundle = CaBundle::new(std::fs::read_to_string(tls.join("ca.crt")).unwrap());
    let cert = std::fs::read_to_string(tls.join("node.crt")).unwrap();
    let der = symphony_pki::verify::first_der(&cert).unwrap();
    symphony_pki::verify_peer(&der, &bundle, cluster_id, SystemTime::now()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn joins_are_issued_certificates_and_rotated_tokens_refused() {
    let manager_dir = tempfile::tempdir().unwrap();
    let (_manager, manager, manager_port) = start_agent(manager_dir.path()).await;
    let init = manager.init().await.unwrap();
    let identity = certificate_in(manager_dir.path(), &init.cluster_id);
    assert_eq!(
        (identity.role, identity.node_id),
        (CertRole::Manager, init.node_id)
    );

    // The tokens pin the CA the manager's certificate chains to.
    let bundle =
        CaBundle::new(std::fs::read_to_string(manager_dir.path().join("tls/ca.crt")).unwrap());
    let token = manager.token_show(Role::Worker).await.unwrap().token;
    let parsed = JoinToken::parse(&token).unwrap();
    assert_eq!(parsed.role, CertRole::Worker);
    assert!(bundle.matches_digest(&parsed.ca_digest).unwrap());

    let addr = format!("127.0.0.1:{manager_port}");
    let worker_dir = tempfile::tempdir().unwrap();
    let (_worker, worker, _) = start_agent(worker_dir.path()).await;
    let joined = worker.join(token.clone(), addr.clone()).await.unwrap();
    assert_eq!(joined.role, Role::Worker);
    let identity = certificate_in(worker_dir.path(), &init.cluster_id);
    assert_eq!(
        (identity.role, identity.node_id),
        (CertRole::Worker, joined.node_id)
    );
    assert!(
        !std::fs::read_to_string(worker_dir.path().join("tls/node.crt"))
            .unwrap()
            .contains("PRIVATE KEY"),
        "only the certificate is kept beside the key"
    );

    // A rotation keeps the CA pinned, changes the secret, and turns the old token away at
    // once; the worker already in is unaffected.
    let rotated = manager.token_rotate(Role::Worker).await.unwrap().token;
    let rotated = JoinToken::parse(&rotated).unwrap();
    assert_eq!(rotated.ca_digest, parsed.ca_digest);
    assert_ne!(rotated.secret, parsed.secret);
    let late_dir = tempfile::tempdir().unwrap();
    let (_late, late, _) = start_agent(late_dir.path()).await;
    let refused = late.join(token, addr.clone()).await.unwrap_err();
    assert_eq!(code_of(refused), ErrorCode::InvalidToken);
    assert!(late.status().await.unwrap().cluster.is_none());
    assert!(
        !late_dir.path().join("tls/node.crt").exists(),
        "nothing issued to a refused join"
    );
    let status = worker.status().await.unwrap().cluster.unwrap();
    assert_eq!(status.cluster_id, init.cluster_id);
    assert_eq!(
        certificate_in(worker_dir.path(), &init.cluster_id).node_id,
        joined.node_id
    );
    late.join(rotated.to_string(), addr).await.unwrap();
}
