//! The lives of certificates, end to end with real agents: `node rm` makes a node's
//! certificate useless at once (new connections fail in the handshake, calls on open ones are
//! refused, its assignments stream ends) while the other nodes go on; every node renews its
//! certificate before it ends while the cluster works; a worker whose certificate expired
//! while it was off re-enrols with a token as the same node, and a copy of its id without its
//! key cannot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::{node_tls, start_agent_with_ports};
use symphony_agent::remote::RemoteClient;
use symphony_agent::remote::proto::{RemoteReply, RemoteRequest};
use symphony_ctl::proto::{ErrorCode, ReadConsistency, Role};
use symphony_ctl::{Client, ClientError};
use symphony_wire::tls::ClientAuth;

const CALL: Duration = Duration::from_secs(10);

fn code_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Remote(error)) => error.code,
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}

/// The worker's own secret, from its `worker.json`.
fn secret_of(dir: &Path) -> String {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("worker.json")).unwrap()).unwrap();
    state["node_secret"].as_str().unwrap().to_string()
}

/// When the certificate in `dir`'s `tls/` ends.
fn not_after(dir: &Path) -> SystemTime {
    let cert = std::fs::read_to_string(dir.join("tls").join("node.crt")).unwrap();
    symphony_pki::verify::validity_of(&cert).unwrap().not_after
}

fn session(node_id: u64, secret: &str) -> RemoteRequest {
    RemoteRequest::Session {
        node_id,
        secret: secret.to_string(),
        members_seen: None,
        keyring_version: None,
    }
}

/// Polls `check` every 100 ms until it holds, for at most `within`.
async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A new connection with the certificate in `dir` (the worker `node_id`'s) opens a session.
async fn session_works(remote_port: u16, node_id: u64, dir: &Path) {
    let link = RemoteClient::connect(
        &format!("127.0.0.1:{remote_port}"),
        node_id,
        node_tls(dir, ClientAuth::Required),
    )
    .await
    .unwrap();
    let reply = link
        .call(session(node_id, &secret_of(dir)), CALL)
        .await
        .unwrap();
    assert!(matches!(reply, RemoteReply::Session(_)), "{reply:?}");
}

async fn status_of(manager: &Client, node_id: u64) -> Option<String> {
    manager
        .node_list(ReadConsistency::Linearizable)
        .await
        .ok()?
        .into_iter()
        .find(|node| node.node_id == node_id)
        .map(|node| node.status)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_nodes_certificate_is_refused_at_once_and_the_others_are_not() {
    let manager_dir = tempfile::tempdir().unwrap();
    let (_manager, manager, ports) = start_agent_with_ports(manager_dir.path()).await;
    manager.init().await.unwrap();
    let token = manager.token_show(Role::Worker).await.unwrap().token;
    let remote_addr = format!("127.0.0.1:{}", ports.remote);
    let (gone_dir, kept_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_gone, gone, _) = start_agent_with_ports(gone_dir.path()).await;
    let (_kept, kept, kept_ports) = start_agent_with_ports(kept_dir.path()).await;
    let gone_id = gone
        .join(token.clone(), remote_addr.clone())
        .await
        .unwrap()
        .node_id;
    let kept_id = kept.join(token, remote_addr.clone()).await.unwrap().node_id;

    // Before the removal: the worker's link works, and it follows its assignments.
    let link = RemoteClient::connect(
        &remote_addr,
        gone_id,
        node_tls(gone_dir.path(), ClientAuth::Required),
    )
    .await
    .unwrap();
    let secret = secret_of(gone_dir.path());
    let reply = link.call(session(gone_id, &secret), CALL).await.unwrap();
    assert!(matches!(reply, RemoteReply::Session(_)), "{reply:?}");
    let mut assignments = link
        .stream(RemoteRequest::Assignments {
            node_id: gone_id,
            secret: secret.clone(),
            heartbeat_ms: Some(200),
        })
        .await
        .unwrap();
    assert!(assignments.next().await.unwrap().is_ok(), "the full set");

    // Ready, so only by force.
    manager.node_remove(gone_id, true).await.unwrap();

    // A call on the connection opened before is refused, and says why.
    wait_for(
        "a removed node's call refused",
        Duration::from_secs(10),
        || async {
            matches!(
                link.call(session(gone_id, &secret), CALL).await,
                Err(error) if error.code == ErrorCode::NodeRemoved
            )
        },
    )
    .await;
    // Its assignments stream ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(item) = assignments.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the removed node's assignments stream went on"
    );
    // A new connection with its certificate fails in the handshake (or, if the handshake
    // finishes on the client's side before the server's refusal reaches it, its first call).
    let refused = match RemoteClient::connect(
        &remote_addr,
        gone_id,
        node_tls(gone_dir.path(), ClientAuth::Required),
    )
    .await
    {
        Err(_) => true,
        Ok(again) => again.call(RemoteRequest::CaBundle, CALL).await.is_err(),
    };
    assert!(refused, "a removed node's certificate connected again");
    // The other worker refuses it too, once its session's stream has told it (workers hold no
    // state): a manager's certificate removed could otherwise still ask workers for logs.
    let kept_addr = format!("127.0.0.1:{}", kept_ports.remote);
    wait_for(
        "a worker refusing a removed node's certificate",
        Duration::from_secs(20),
        || async {
            match RemoteClient::connect(
                &kept_addr,
                gone_id,
                node_tls(gone_dir.path(), ClientAuth::Required),
            )
            .await
            {
                Err(_) => true,
                Ok(again) => again.call(RemoteRequest::CaBundle, CALL).await.is_err(),
            }
        },
    )
    .await;
    // Its id joins no more, even with a token (from a config dir with its id and a new key).
    let token = manager.token_show(Role::Worker).await.unwrap().token;
    let copy_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        gone_dir.path().join("key.json"),
        copy_dir.path().join("key.json"),
    )
    .unwrap();
    let (_copy_agent, copy, _) = start_agent_with_ports(copy_dir.path()).await;
    assert_eq!(
        code_of(copy.join(token, remote_addr.clone()).await),
        ErrorCode::NodeRemoved
    );
    drop(gone);

    // The other worker is unaffected: a new connection, its session, its status.
    let other = RemoteClient::connect(
        &remote_addr,
        kept_id,
        node_tls(kept_dir.path(), ClientAuth::Required),
    )
    .await
    .unwrap();
    let reply = other
        .call(session(kept_id, &secret_of(kept_dir.path())), CALL)
        .await
        .unwrap();
    assert!(matches!(reply, RemoteReply::Session(_)), "{reply:?}");
    assert_eq!(status_of(&manager, kept_id).await.as_deref(), Some("ready"));
    assert_eq!(
        status_of(&manager, gone_id).await,
        None,
        "the removed node is gone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_node_renews_its_certificate_while_the_cluster_works() {
    let manager_dir = tempfile::tempdir().unwrap();
    let (_manager, manager, ports) = start_agent_with_ports(manager_dir.path()).await;
    // Absurd lifetimes are refused before anything is created.
    assert_eq!(
        code_of(manager.init_with_cert_expiry(Duration::from_secs(5)).await),
        ErrorCode::BadRequest
    );
    manager
        .init_with_cert_expiry(Duration::from_secs(40))
        .await
        .unwrap();
    let token = manager.token_show(Role::Worker).await.unwrap().token;
    let remote_addr = format!("127.0.0.1:{}", ports.remote);
    let worker_dir = tempfile::tempdir().unwrap();
    let (_worker, worker, _) = start_agent_with_ports(worker_dir.path()).await;
    let worker_id = worker.join(token, remote_addr).await.unwrap().node_id;

    // Issued for the cluster's lifetime, backdated an hour.
    let cert = std::fs::read_to_string(worker_dir.path().join("tls").join("node.crt")).unwrap();
    let validity = symphony_pki::verify::validity_of(&cert).unwrap();
    let life = validity
        .not_after
        .duration_since(validity.issued_at())
        .unwrap();
    assert_eq!(life, Duration::from_secs(40));
    assert_eq!(
        validity
            .issued_at()
            .duration_since(validity.not_before)
            .unwrap(),
        symphony_pki::BACKDATE
    );

    let (manager_first, worker_first) =
        (not_after(manager_dir.path()), not_after(worker_dir.path()));
    let mut written = 0u64;
    // Renewed between 20 and 32 s into their 40: both ends move forward, while writes go on
    // and the worker stays ready.
    wait_for("both certificates renewed", Duration::from_secs(60), || {
        written += 1;
        let key = format!("renewal/{written}");
        let manager = &manager;
        let (manager_dir, worker_dir) = (manager_dir.path(), worker_dir.path());
        async move {
            manager.kv_put(key, "v", None).await.unwrap();
            not_after(manager_dir) > manager_first && not_after(worker_dir) > worker_first
        }
    })
    .await;
    let renewed = Instant::now();
    manager.kv_put("renewal/after", "v", None).await.unwrap();
    // The worker's own session goes on: its manager answers it after the renewal (the
    // worker's connections from before its renewal were dropped, so over the new one).
    wait_for(
        "a session after the renewal",
        Duration::from_secs(20),
        || async {
            worker
                .status()
                .await
                .ok()
                .and_then(|status| status.cluster)
                .and_then(|cluster| cluster.session_age_ms)
                .is_some_and(|age| Duration::from_millis(age) < renewed.elapsed())
        },
    )
    .await;
    assert_eq!(
        status_of(&manager, worker_id).await.as_deref(),
        Some("ready")
    );
    // The worker's new certificate is taken: its session goes on over it.
    session_works(ports.remote, worker_id, worker_dir.path()).await;
    drop(worker);
    // The cluster recorded what it issued.
    let ca = manager
        .ca_status(ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(ca.nodes.len(), 2, "{ca:?}");
    assert_eq!(ca.roots.len(), 1, "{ca:?}");
    assert_eq!(
        ca.roots[0].root_digest.as_deref(),
        Some(ca.root_digest.as_str())
    );
    let recorded = ca
        .nodes
        .iter()
        .find(|node| node.node_id == worker_id)
        .and_then(|node| node.not_after_ms)
        .unwrap();
    let first_ms = worker_first
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    assert!(u128::from(recorded) > first_ms, "the renewal was recorded");

    // The lifetime changes through the log; absurd values are refused.
    assert_eq!(
        code_of(manager.cluster_update(Some(Duration::from_secs(1))).await),
        ErrorCode::BadRequest
    );
    let settings = manager
        .cluster_update(Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(settings.cert_expiry_ms, 3_600_000);
    assert_eq!(
        manager.cluster_update(None).await.unwrap().cert_expiry_ms,
        3_600_000
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_certificate_expired_re_enrols_as_itself_and_a_copy_of_its_id_cannot() {
    let manager_dir = tempfile::tempdir().unwrap();
    let (_manager, manager, ports) = start_agent_with_ports(manager_dir.path()).await;
    manager
        .init_with_cert_expiry(Duration::from_secs(30))
        .await
        .unwrap();
    let token = manager.token_show(Role::Worker).await.unwrap().token;
    let remote_addr = format!("127.0.0.1:{}", ports.remote);
    let worker_dir = tempfile::tempdir().unwrap();
    let (worker_agent, worker, _) = start_agent_with_ports(worker_dir.path()).await;
    let worker_id = worker
        .join(token.clone(), remote_addr.clone())
        .await
        .unwrap()
        .node_id;
    manager
        .node_update(
            worker_id,
            None,
            BTreeMap::from([("zone".to_string(), "b".to_string())]),
            Vec::new(),
        )
        .await
        .unwrap();
    let joined_at = manager
        .node_list(ReadConsistency::Linearizable)
        .await
        .unwrap()
        .into_iter()
        .find(|node| node.node_id == worker_id)
        .unwrap()
        .joined_at_ms;

    // Off before it renews, until its certificate has ended.
    drop(worker_agent);
    drop(worker);
    let end = not_after(worker_dir.path());
    wait_for(
        "the worker's certificate expired",
        Duration::from_secs(45),
        || async { SystemTime::now() > end + Duration::from_secs(1) },
    )
    .await;
    let expired = RemoteClient::connect(
        &remote_addr,
        worker_id,
        node_tls(worker_dir.path(), ClientAuth::Required),
    )
    .await;
    let refused = match expired {
        Err(_) => true,
        Ok(link) => link.call(RemoteRequest::CaBundle, CALL).await.is_err(),
    };
    assert!(refused, "an expired certificate got through");

    // A copy of its id without its key (its key.json, a fresh tls/) may not take it.
    let copy_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        worker_dir.path().join("key.json"),
        copy_dir.path().join("key.json"),
    )
    .unwrap();
    let (_copy_agent, copy, _) = start_agent_with_ports(copy_dir.path()).await;
    assert_eq!(
        code_of(copy.join(token.clone(), remote_addr.clone()).await),
        ErrorCode::Forbidden
    );

    // Back, it re-enrols with the token: the same id, its record kept, a new certificate.
    let (_worker_agent, worker, _) = start_agent_with_ports(worker_dir.path()).await;
    let again = worker.join(token, remote_addr).await.unwrap();
    assert_eq!(again.node_id, worker_id);
    assert_eq!(again.role, Role::Worker);
    assert!(not_after(worker_dir.path()) > SystemTime::now());
    wait_for(
        "the re-enrolled worker ready",
        Duration::from_secs(20),
        || async { status_of(&manager, worker_id).await.as_deref() == Some("ready") },
    )
    .await;
    let record = manager
        .node_list(ReadConsistency::Linearizable)
        .await
        .unwrap()
        .into_iter()
        .find(|node| node.node_id == worker_id)
        .unwrap();
    assert_eq!(record.labels.get("zone").map(String::as_str), Some("b"));
    assert_eq!(record.joined_at_ms, joined_at);
    // Its links work with the new certificate.
    session_works(ports.remote, worker_id, worker_dir.path()).await;
}
