//! The node-to-node API refuses what only managers may do when the caller cannot prove it is
//! one: forwarded requests without the manager secret, joins without a valid token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{AGENT, free_port};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use symphony_agent::remote::RemoteClient;
use symphony_agent::remote::proto::{JoinRequest, RemoteRequest};
use symphony_ctl::Client;
use symphony_ctl::proto::{ErrorCode, Request, Role};

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn forwarding_needs_the_manager_secret_and_joining_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let remote_port = free_port();
    let _agent = Agent(
        Command::new(AGENT)
            .arg("--config-dir")
            .arg(dir.path())
            .arg("--listen-raft-addr")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--listen-remote-addr")
            .arg(format!("127.0.0.1:{remote_port}"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = dir.path().join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = loop {
        if let Ok(client) = Client::connect(&socket).await {
            break client;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never opened its control socket"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    client.init().await.unwrap();
    let remote = RemoteClient::connect(&format!("127.0.0.1:{remote_port}"), 1)
        .await
        .unwrap();

    let forged = RemoteRequest::Forward {
        secret: "not-the-secret".into(),
        request: Request::TokenShow {
            role: Role::Manager,
        },
    };
    let refused = remote
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
        cluster_id: None,
        forwarded: false,
        gossip_addr: Some("127.0.0.1:2".into()),
        labels: Default::default(),
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

    // A worker's session and leave notice need that worker's own secret: the manager
    // itself has none, and an unknown node is not found.
    let own_id = client.status().await.unwrap().node_id;
    for node_id in [own_id, 42] {
        // Asking for the gossip view too: a forged session must not get it either.
        let session = RemoteRequest::Session {
            node_id,
            secret: "guess".into(),
            members_seen: Some(0),
        };
        let refused = remote
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
            forwarded: false,
        };
        let refused = remote
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
