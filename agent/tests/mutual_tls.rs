//! Every TCP link of an enrolled node is mutual TLS, and what a caller may do follows from the
//! certificate it showed: a plaintext connection and a certificate of another CA fail in the
//! handshake on both ports; a worker's certificate of this very cluster makes no Raft RPC
//! (Nomad's and Consul's CVE-2021-37218/37219) and no manager's call; a node acts only as the
//! node its certificate names.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, SystemTime};

use common::{discovery, node_tls, start_agent_with_ports};
use symphony_agent::remote::RemoteClient;
use symphony_agent::remote::proto::{RemoteReply, RemoteRequest};
use symphony_consensus::network::identify;
use symphony_ctl::proto::{ErrorCode, Request, Role};
use symphony_pki::{CertIdentity, CertRole, ClusterCa, NodeKey};
use symphony_wire::Transport;
use symphony_wire::tls::{ClientAuth, TlsMaterial, TlsTransport};

const CALL: Duration = Duration::from_secs(10);

/// A manager's certificate for `cluster_id` from a CA that is not the cluster's.
fn foreign(cluster_id: &str, node_id: u64) -> Transport {
    let ca = ClusterCa::generate(cluster_id).unwrap();
    let key = NodeKey::generate().unwrap();
    let identity = CertIdentity {
        cluster_id: cluster_id.into(),
        role: CertRole::Manager,
        node_id,
    };
    let issued = ca
        .issue(&key.request("n").unwrap(), &identity, SystemTime::now())
        .unwrap();
    let material = TlsMaterial {
        cert_pem: issued.cert_pem,
        key_der: key.der(),
        bundle: ca.bundle(),
        cluster_id: cluster_id.into(),
    };
    Transport::tls(TlsTransport::new(&material, ClientAuth::Required).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_clusters_certificates_get_through_and_each_only_as_far_as_its_role() {
    let manager_dir = tempfile::tempdir().unwrap();
    let (_manager, manager, ports) = start_agent_with_ports(manager_dir.path()).await;
    let init = manager.init().await.unwrap();
    let token = manager.token_show(Role::Worker).await.unwrap().token;
    let worker_dir = tempfile::tempdir().unwrap();
    let (_worker, worker, _) = start_agent_with_ports(worker_dir.path()).await;
    let remote_addr = format!("127.0.0.1:{}", ports.remote);
    let raft_addr = format!("127.0.0.1:{}", ports.raft);
    let joined = worker.join(token, remote_addr.clone()).await.unwrap();

    let as_manager = node_tls(manager_dir.path(), ClientAuth::Required);
    let as_worker = node_tls(worker_dir.path(), ClientAuth::Required);

    // The control: the manager's own certificate speaks Raft.
    let identity = identify(1, as_manager.clone(), &raft_addr).await.unwrap();
    assert_eq!(identity.node_id, init.node_id);

    // The Raft port: plaintext, another CA's certificate (for this cluster's id), no
    // certificate, and a worker's certificate of this cluster are all refused.
    for (who, transport) in [
        ("plaintext", Transport::plain()),
        ("another CA", foreign(&init.cluster_id, init.node_id)),
        ("no certificate", discovery()),
        ("a worker's certificate", as_worker.clone()),
    ] {
        let refused = identify(1, transport, &raft_addr).await;
        assert!(
            refused.is_err(),
            "{who} made a Raft RPC: {:?}",
            refused.unwrap()
        );
    }

    // The node-to-node API: plaintext and another CA's certificate fail in the handshake.
    for (who, transport) in [
        ("plaintext", Transport::plain()),
        ("another CA", foreign(&init.cluster_id, init.node_id)),
    ] {
        let connected = RemoteClient::connect(&remote_addr, 1, transport).await;
        assert!(
            connected.is_err(),
            "{who} connected to the node-to-node API"
        );
    }

    // A worker's certificate makes no manager's call.
    let worker_link = RemoteClient::connect(&remote_addr, joined.node_id, as_worker)
        .await
        .unwrap();
    let secret = {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(worker_dir.path().join("worker.json")).unwrap())
                .unwrap();
        state["node_secret"].as_str().unwrap().to_string()
    };
    let managers_calls = [
        RemoteRequest::Forward {
            secret: secret.clone(),
            request: Request::TokenShow {
                role: Role::Manager,
            },
        },
        RemoteRequest::Leaving {
            secret: secret.clone(),
            node_id: joined.node_id,
        },
        RemoteRequest::WhoLeads,
        RemoteRequest::Diagnostics {
            secret: secret.clone(),
        },
    ];
    for call in managers_calls {
        let refused = worker_link.call(call.clone(), CALL).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden, "{call:?}: {refused:?}");
    }

    // And acts only as itself: reports for the manager's node, a session for it, are refused
    // even with the worker's own (valid) secret; its own session goes through.
    let impersonations = [
        RemoteRequest::TaskReports {
            node_id: init.node_id,
            secret: secret.clone(),
            reports: Vec::new(),
        },
        RemoteRequest::Session {
            node_id: init.node_id,
            secret: secret.clone(),
            members_seen: None,
            keyring_version: None,
        },
        RemoteRequest::WorkerLeaving {
            node_id: init.node_id,
            secret: secret.clone(),
        },
    ];
    for call in impersonations {
        let refused = worker_link.call(call.clone(), CALL).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden, "{call:?}: {refused:?}");
    }
    let own = worker_link
        .call(
            RemoteRequest::Session {
                node_id: joined.node_id,
                secret,
                members_seen: None,
                keyring_version: None,
            },
            CALL,
        )
        .await
        .unwrap();
    assert!(matches!(own, RemoteReply::Session(_)), "{own:?}");

    // Nothing the refused calls asked for happened: both nodes are there, the worker ready.
    let nodes = manager
        .node_list(symphony_ctl::proto::ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
}

/// A static bootstrap (`init --peers`) enrols its fresh peers before the first election, so
/// the new cluster's Raft links are mutual TLS from the start; a peer that has been enrolled
/// refuses plaintext like any member.
#[tokio::test(flavor = "multi_thread")]
async fn a_static_bootstrap_enrols_its_peers_before_their_first_election() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut agents = Vec::new();
    for dir in &dirs {
        agents.push(start_agent_with_ports(dir.path()).await);
    }
    let peers: Vec<String> = agents[1..]
        .iter()
        .map(|(_, _, ports)| format!("127.0.0.1:{}", ports.raft))
        .collect();
    let init = agents[0].1.init_with(peers.clone(), None).await.unwrap();
    let first_remote = format!("127.0.0.1:{}", agents[0].2.remote);
    for (_, client, _) in &agents[1..] {
        client
            .init_with(Vec::new(), Some(first_remote.clone()))
            .await
            .unwrap();
    }
    for (index, dir) in dirs.iter().enumerate() {
        let cert = std::fs::read_to_string(dir.path().join("tls/node.crt")).unwrap();
        let identity =
            symphony_pki::verify::identity_of_der(&symphony_pki::verify::first_der(&cert).unwrap())
                .unwrap();
        assert_eq!(
            (identity.cluster_id.as_str(), identity.role),
            (init.cluster_id.as_str(), CertRole::Manager),
            "node {index}"
        );
    }
    for peer in &peers {
        assert!(
            identify(1, Transport::plain(), peer).await.is_err(),
            "an enrolled peer still speaks Raft in plain"
        );
    }
    // The cluster works: a write through a peer is replicated to all three.
    agents[2]
        .1
        .kv_put("over-tls", b"yes".to_vec(), None)
        .await
        .unwrap();
    let members = agents[0].1.status().await.unwrap();
    assert!(members.cluster.is_some());
}
