//! The node-to-node API refuses what only managers may do when the caller cannot prove it is
//! one: calls that need a certificate from a caller without one, joins without a valid token,
//! forwarded requests without the manager secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{discovery, node_tls, start_agent};
use std::time::{Duration, Instant};
use symphony_wire::tls::ClientAuth;

use symphony_agent::remote::RemoteClient;
use symphony_agent::remote::proto::{JoinRequest, RemoteReply, RemoteRequest};
use symphony_ctl::proto::{ErrorCode, Request, Role};

#[tokio::test]
async fn forwarding_needs_the_manager_secret_and_joining_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, client, remote_port) = start_agent(dir.path()).await;
    client.init().await.unwrap();
    // A caller without a certificate, as a joining node is.
    let remote = RemoteClient::connect(&format!("127.0.0.1:{remote_port}"), 1, discovery())
        .await
        .unwrap();

    let forged = RemoteRequest::Forward {
        secret: "not-the-secret".into(),
        request: Request::TokenShow {
            role: Role::Manager,
        },
    };
    let refused = remote
        .call(forged.clone(), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Forbidden, "{}", refused.message);
    // The secret is the second line: even the manager's own certificate gets nothing for a
    // wrong one.
    let insider = RemoteClient::connect(
        &format!("127.0.0.1:{remote_port}"),
        1,
        node_tls(dir.path(), ClientAuth::Optional),
    )
    .await
    .unwrap();
    let refused = insider
        .call(forged, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::InvalidToken, "{}", refused.message);

    let join = RemoteRequest::Join(JoinRequest {
        token: Some("SYMTKN-1-M-guess".into()),
        node_id: 42,
        raft_node_id: 43,
        hostname: "intruder".into(),
        raft_addr: "127.0.0.1:1".into(),
        remote_addr: "127.0.0.1:2".into(),
        agent_version: "0".into(),
        cpus: 1,
        memory_bytes: 1,
        docker: None,
        cluster_id: None,
        gossip_addr: Some("127.0.0.1:2".into()),
        labels: Default::default(),
        csr: None,
    });
    let refused = remote
        .call(join.clone(), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::InvalidToken, "{}", refused.message);
    // A guessed worker token fares no better.
    let RemoteRequest::Join(mut worker_join) = join else {
        unreachable!()
    };
    worker_join.token = Some("SYMTKN-1-W-guess".into());
    let refused = remote
        .call(RemoteRequest::Join(worker_join), Duration::from_secs(10))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::InvalidToken, "{}", refused.message);

    // A worker's session and leave notice need a certificate (without one, refused whatever
    // the secret) and that worker's own secret: the manager itself has none, and an unknown
    // node is not found (asked with the manager's certificate, which may speak for any node).
    let own_id = client.status().await.unwrap().node_id;
    for node_id in [own_id, 42] {
        // Asking for the gossip view too: a forged session must not get it either.
        let session = RemoteRequest::Session {
            node_id,
            secret: "guess".into(),
            members_seen: Some(0),
            keyring_version: None,
        };
        let refused = remote
            .call(session.clone(), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::Forbidden, "{refused:?}");
        let refused = insider
            .call(session, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            matches!(refused.code, ErrorCode::InvalidToken | ErrorCode::NotFound),
            "{refused:?}"
        );
        let leaving = RemoteRequest::WorkerLeaving {
            node_id,
            secret: "guess".into(),
        };
        let refused = insider
            .call(leaving, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            matches!(refused.code, ErrorCode::InvalidToken | ErrorCode::NotFound),
            "{refused:?}"
        );
    }

    // Nothing was written: the cluster still has one node.
    let nodes = client
        .node_list(symphony_ctl::proto::ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(nodes.len(), 1);
}

/// A worker's session tells its manager how many members its gossip sees; the manager answers
/// with its whole view only when it sees more, so a newcomer learns the pool in one call and a
/// converged worker's session stays small.
#[tokio::test]
async fn a_session_brings_the_managers_gossip_view_only_to_a_worker_that_sees_less() {
    let manager_dir = tempfile::tempdir().unwrap();
    let worker_dir = tempfile::tempdir().unwrap();
    let (_manager, manager, manager_port) = start_agent(manager_dir.path()).await;
    manager.init().await.unwrap();
    let token = manager.token_show(Role::Worker).await.unwrap().token;
    let (_worker, worker, _) = start_agent(worker_dir.path()).await;
    let joined = worker
        .join(token, format!("127.0.0.1:{manager_port}"))
        .await
        .unwrap();
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(worker_dir.path().join("worker.json")).unwrap())
            .unwrap();
    let secret = state["node_secret"].as_str().unwrap().to_string();

    // The worker's own certificate: a session is the worker's to open.
    let remote = RemoteClient::connect(
        &format!("127.0.0.1:{manager_port}"),
        1,
        node_tls(worker_dir.path(), ClientAuth::Optional),
    )
    .await
    .unwrap();
    let session = |members_seen| RemoteRequest::Session {
        node_id: joined.node_id,
        secret: secret.clone(),
        members_seen,
        keyring_version: Some(u64::MAX),
    };
    // The manager's gossip meets the worker within moments of the join.
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let reply = remote
            .call(session(Some(0)), Duration::from_secs(10))
            .await
            .unwrap();
        let RemoteReply::Session(reply) = reply else {
            panic!("not a session reply: {reply:?}");
        };
        if !reply.members.is_empty() {
            break reply.members;
        }
        assert!(
            Instant::now() < deadline,
            "the manager never sent its gossip view"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        view.iter()
            .any(|member| member.id().node_id == joined.node_id),
        "the manager's view holds the worker: {view:?}"
    );
    // A worker that sees as many members (or says nothing) gets no view.
    for members_seen in [Some(1), Some(1_000), None] {
        let RemoteReply::Session(reply) = remote
            .call(session(members_seen), Duration::from_secs(10))
            .await
            .unwrap()
        else {
            panic!("not a session reply");
        };
        assert!(reply.members.is_empty(), "{members_seen:?}: {reply:?}");
    }
    // The gossip keyring travels only to a worker that holds an older one than the cluster.
    let keyring_session = |keyring_version| RemoteRequest::Session {
        node_id: joined.node_id,
        secret: secret.clone(),
        members_seen: None,
        keyring_version,
    };
    let RemoteReply::Session(fresh) = remote
        .call(keyring_session(None), Duration::from_secs(10))
        .await
        .unwrap()
    else {
        panic!("not a session reply");
    };
    let keyring = fresh.gossip_keys.expect("a worker without keys gets them");
    assert_eq!(keyring.primary, Some(1));
    let RemoteReply::Session(current) = remote
        .call(
            keyring_session(Some(keyring.version)),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
    else {
        panic!("not a session reply");
    };
    assert_eq!(current.gossip_keys, None, "a current worker gets no keys");
}
