//! One manager, end to end: a real `symphony-agent` process in a temp dir on OS-given ports,
//! driven through its control socket. Every test starts its own agent, so they run in parallel.
//!
//! Needs the agent binary: `cargo build -p symphony-agent` (or set SYMPHONY_AGENT_BIN).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use symphony_ctl::proto::{ErrorCode, KvEntry, KvListing, ReadConsistency, Role, StatusInfo};
use symphony_ctl::{Client, ClientError};
use symphony_testnet::harness::{AgentProcess, is_retryable, poll_until};

const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
const WRITE_TIMEOUT: Duration = Duration::from_secs(20);

const LINEARIZABLE: ReadConsistency = ReadConsistency::Linearizable;

/// A started, initialised agent that leads its one-node cluster, with a client on it.
async fn initialised_manager() -> (AgentProcess, Client, StatusInfo) {
    let agent = AgentProcess::start().await.unwrap();
    let client = agent.client().await.unwrap();
    client.init().await.unwrap();
    let status = agent.wait_leader(LEADER_TIMEOUT).await.unwrap();
    (agent, client, status)
}

/// The code of a remote error, or a panic naming what came back instead.
fn code_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Remote(error)) => error.code,
        other => panic!("expected an error reply from the agent, got {other:?}"),
    }
}

/// A put that retries while the node has no leader yet (just after a restart); any other
/// failure fails the test at once.
async fn put_when_leader(agent: &AgentProcess, key: &str, value: &[u8]) -> u64 {
    let socket = agent.socket_path();
    let outcome = poll_until(WRITE_TIMEOUT, "a write to be accepted", async || {
        let client = Client::connect(&socket).await.map_err(|e| e.to_string())?;
        match client.kv_put(key, value, None).await {
            Ok(result) => Ok(Ok(result.revision)),
            Err(error) if is_retryable(&error) => Err(error.to_string()),
            Err(error) => Ok(Err(error)),
        }
    })
    .await
    .unwrap();
    outcome.unwrap()
}

fn assert_entry(
    entry: &KvEntry,
    key: &str,
    value: &[u8],
    create: u64,
    modified: u64,
    version: u64,
) {
    assert_eq!(entry.key, key);
    assert_eq!(entry.value, value, "value of {key}");
    assert_eq!(
        (entry.create_revision, entry.mod_revision, entry.version),
        (create, modified, version),
        "(create_revision, mod_revision, version) of {key}"
    );
}

#[tokio::test]
async fn status_before_init_has_no_cluster() {
    let agent = AgentProcess::start().await.unwrap();
    let client = agent.client().await.unwrap();
    let status = client.status().await.unwrap();
    assert_eq!(
        status.cluster, None,
        "a fresh node must not be in a cluster"
    );
    assert_ne!(status.node_id, 0);
    assert_ne!(status.raft_node_id, 0);
    assert!(!status.agent_version.is_empty());
    assert_eq!(client.server_hello().node_id, status.node_id);

    // key.json holds the identity that status reports.
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(agent.key_path()).unwrap()).unwrap();
    assert_eq!(key["node_id"].as_u64(), Some(status.node_id));
    assert_eq!(key["raft_node_id"].as_u64(), Some(status.raft_node_id));

    // Cluster requests are refused until init, with the code that says so.
    assert_eq!(
        code_of(client.kv_put("k", b"v".to_vec(), None).await),
        ErrorCode::NotInitialised
    );
    assert_eq!(
        code_of(client.token_show(Role::Worker).await),
        ErrorCode::NotInitialised
    );
}

#[tokio::test]
async fn control_socket_is_private() {
    let agent = AgentProcess::start().await.unwrap();
    let mode = std::fs::metadata(agent.socket_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "control.sock mode is {:o}",
        mode & 0o777
    );
}

#[tokio::test]
async fn init_makes_the_node_the_leading_manager() {
    let agent = AgentProcess::start().await.unwrap();
    let client = agent.client().await.unwrap();
    let before = client.status().await.unwrap();
    let info = client.init().await.unwrap();
    assert_eq!(info.node_id, before.node_id);
    assert_eq!(info.raft_node_id, before.raft_node_id);
    assert!(!info.cluster_id.is_empty());

    let status = agent.wait_leader(LEADER_TIMEOUT).await.unwrap();
    let cluster = status.cluster.clone().unwrap();
    assert_eq!(cluster.cluster_id, info.cluster_id);
    assert_eq!(cluster.role, Role::Manager);
    assert_eq!(cluster.raft_state, "leader");
    assert_eq!(cluster.leader_raft_id, Some(status.raft_node_id));
    assert_eq!(cluster.voters, vec![status.raft_node_id]);
    assert!(cluster.learners.is_empty());
    assert_eq!(cluster.nodes, 1);
    assert!(cluster.term >= 1);
    assert!(cluster.commit_index.is_some());
    assert!(cluster.applied_index.is_some());
    assert_eq!(
        status.node_id, before.node_id,
        "init must not change the node id"
    );
}

#[tokio::test]
async fn second_init_is_refused_and_changes_nothing() {
    let (_agent, client, status) = initialised_manager().await;
    let cluster_id = status.cluster.unwrap().cluster_id;
    let revision = client
        .kv_put("keep", b"me".to_vec(), None)
        .await
        .unwrap()
        .revision;
    let worker_token = client.token_show(Role::Worker).await.unwrap().token;

    assert_eq!(code_of(client.init().await), ErrorCode::AlreadyInitialised);

    let after = client.status().await.unwrap();
    let after_cluster = after.cluster.unwrap();
    assert_eq!(after_cluster.cluster_id, cluster_id);
    assert_eq!(after_cluster.kv_revision, revision);
    let entry = client.kv_get("keep", LINEARIZABLE).await.unwrap().unwrap();
    assert_entry(&entry, "keep", b"me", revision, revision, 1);
    assert_eq!(
        client.token_show(Role::Worker).await.unwrap().token,
        worker_token
    );
}

#[tokio::test]
async fn kv_put_get_list_delete_with_revisions() {
    let (_agent, client, status) = initialised_manager().await;
    let start = status.cluster.unwrap().kv_revision;

    let r1 = client
        .kv_put("app/one", b"1".to_vec(), None)
        .await
        .unwrap()
        .revision;
    assert!(
        r1 > start,
        "a write must advance the revision ({start} -> {r1})"
    );
    let r2 = client
        .kv_put("app/two", b"2".to_vec(), None)
        .await
        .unwrap()
        .revision;
    let binary = vec![0u8, 159, 146, 150, 255];
    let r3 = client
        .kv_put("other/x", binary.clone(), None)
        .await
        .unwrap()
        .revision;
    assert!(
        r1 < r2 && r2 < r3,
        "revisions must increase: {r1}, {r2}, {r3}"
    );

    let one = client
        .kv_get("app/one", LINEARIZABLE)
        .await
        .unwrap()
        .unwrap();
    assert_entry(&one, "app/one", b"1", r1, r1, 1);
    let x = client
        .kv_get("other/x", ReadConsistency::Stale)
        .await
        .unwrap()
        .unwrap();
    assert_entry(&x, "other/x", &binary, r3, r3, 1);
    assert_eq!(client.kv_get("app/none", LINEARIZABLE).await.unwrap(), None);

    // Overwriting keeps create_revision and bumps mod_revision and version.
    let r4 = client
        .kv_put("app/one", b"uno".to_vec(), None)
        .await
        .unwrap()
        .revision;
    assert!(r4 > r3);
    let one = client
        .kv_get("app/one", LINEARIZABLE)
        .await
        .unwrap()
        .unwrap();
    assert_entry(&one, "app/one", b"uno", r1, r4, 2);

    let listing = client.kv_list("app/", LINEARIZABLE).await.unwrap();
    let keys: Vec<&str> = listing.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        ["app/one", "app/two"],
        "prefix listing, sorted by key"
    );
    assert_eq!(listing.revision, r4);
    let all = client.kv_list("", LINEARIZABLE).await.unwrap();
    assert_eq!(all.entries.len(), 3);
    assert!(
        client
            .kv_list("nothing/", LINEARIZABLE)
            .await
            .unwrap()
            .entries
            .is_empty()
    );

    let deleted = client.kv_delete("app/two", None).await.unwrap();
    assert!(deleted.deleted);
    assert!(deleted.revision > r4);
    assert_eq!(client.kv_get("app/two", LINEARIZABLE).await.unwrap(), None);
    let again = client.kv_delete("app/two", None).await.unwrap();
    assert!(
        !again.deleted,
        "deleting a missing key reports deleted = false"
    );
    assert_eq!(
        again.revision, deleted.revision,
        "a no-op delete keeps the revision"
    );

    // A key re-created after deletion starts a new life.
    let r6 = client
        .kv_put("app/two", b"2b".to_vec(), None)
        .await
        .unwrap()
        .revision;
    let two = client
        .kv_get("app/two", LINEARIZABLE)
        .await
        .unwrap()
        .unwrap();
    assert_entry(&two, "app/two", b"2b", r6, r6, 1);

    let status = client.status().await.unwrap();
    assert_eq!(status.cluster.unwrap().kv_revision, r6);
}

#[tokio::test]
async fn compare_and_set_on_revisions() {
    let (_agent, client, _) = initialised_manager().await;

    // 0 means "must not exist".
    let r1 = client
        .kv_put("lock", b"a".to_vec(), Some(0))
        .await
        .unwrap()
        .revision;
    assert_eq!(
        code_of(client.kv_put("lock", b"b".to_vec(), Some(0)).await),
        ErrorCode::CompareFailed
    );
    // The right revision wins, a stale one loses and changes nothing.
    let r2 = client
        .kv_put("lock", b"c".to_vec(), Some(r1))
        .await
        .unwrap()
        .revision;
    assert!(r2 > r1);
    assert_eq!(
        code_of(client.kv_put("lock", b"d".to_vec(), Some(r1)).await),
        ErrorCode::CompareFailed
    );
    let entry = client.kv_get("lock", LINEARIZABLE).await.unwrap().unwrap();
    assert_entry(&entry, "lock", b"c", r1, r2, 2);
    // A missing key has no revision to match.
    assert_eq!(
        code_of(client.kv_put("absent", b"x".to_vec(), Some(r2)).await),
        ErrorCode::CompareFailed
    );
    assert_eq!(client.kv_get("absent", LINEARIZABLE).await.unwrap(), None);

    // Compare-and-delete.
    assert_eq!(
        code_of(client.kv_delete("lock", Some(r1)).await),
        ErrorCode::CompareFailed
    );
    assert!(client.kv_get("lock", LINEARIZABLE).await.unwrap().is_some());
    let deleted = client.kv_delete("lock", Some(r2)).await.unwrap();
    assert!(deleted.deleted);
    assert_eq!(client.kv_get("lock", LINEARIZABLE).await.unwrap(), None);

    // Once deleted, "must not exist" holds again.
    let r3 = client
        .kv_put("lock", b"e".to_vec(), Some(0))
        .await
        .unwrap()
        .revision;
    let entry = client.kv_get("lock", LINEARIZABLE).await.unwrap().unwrap();
    assert_entry(&entry, "lock", b"e", r3, r3, 1);

    // Failed compares do not advance the cluster revision.
    let status = client.status().await.unwrap();
    assert_eq!(status.cluster.unwrap().kv_revision, r3);
}

fn assert_high_entropy(token: &str) {
    let distinct: BTreeSet<char> = token.chars().collect();
    assert!(
        token.len() >= 32 && distinct.len() >= 12,
        "token {token:?} does not look like a long random secret"
    );
}

#[tokio::test]
async fn tokens_show_and_rotate() {
    let (_agent, client, _) = initialised_manager().await;
    let worker = client.token_show(Role::Worker).await.unwrap();
    let manager = client.token_show(Role::Manager).await.unwrap();
    assert_eq!(worker.role, Role::Worker);
    assert_eq!(manager.role, Role::Manager);
    assert_ne!(worker.token, manager.token);
    assert_high_entropy(&worker.token);
    assert_high_entropy(&manager.token);

    let rotated = client.token_rotate(Role::Worker).await.unwrap();
    assert_eq!(rotated.role, Role::Worker);
    assert_ne!(rotated.token, worker.token);
    assert_high_entropy(&rotated.token);
    assert_eq!(
        client.token_show(Role::Worker).await.unwrap().token,
        rotated.token
    );
    assert_eq!(
        client.token_show(Role::Manager).await.unwrap().token,
        manager.token
    );

    let rotated_manager = client.token_rotate(Role::Manager).await.unwrap();
    assert_ne!(rotated_manager.token, manager.token);
    assert_eq!(
        client.token_show(Role::Manager).await.unwrap().token,
        rotated_manager.token
    );
    assert_eq!(
        client.token_show(Role::Worker).await.unwrap().token,
        rotated.token
    );
}

#[tokio::test]
async fn node_list_shows_this_manager() {
    let (agent, client, status) = initialised_manager().await;
    for consistency in [ReadConsistency::Linearizable, ReadConsistency::Stale] {
        let nodes = client.node_list(consistency).await.unwrap();
        assert_eq!(nodes.len(), 1, "{nodes:?}");
        let node = &nodes[0];
        assert_eq!(node.node_id, status.node_id);
        assert_eq!(node.raft_node_id, Some(status.raft_node_id));
        assert_eq!(node.role, Role::Manager);
        assert_eq!(node.status, "ready");
        assert_eq!(node.availability, "active");
        assert_eq!(node.raft_role.as_deref(), Some("leader"));
        let raft_addr = node.raft_addr.as_deref().unwrap_or_default();
        assert!(
            raft_addr.ends_with(&format!(":{}", agent.raft_addr().port())),
            "raft_addr {raft_addr:?} is not {}",
            agent.raft_addr()
        );
        assert!(
            node.remote_addr
                .ends_with(&format!(":{}", agent.remote_addr().port())),
            "remote_addr {:?} is not {}",
            node.remote_addr,
            agent.remote_addr()
        );
        assert!(!node.hostname.is_empty());
        assert!(node.joined_at_ms > 0);
    }
}

/// Everything a restart must keep.
#[derive(Debug, PartialEq)]
struct Durable {
    node_id: u64,
    raft_node_id: u64,
    cluster_id: String,
    kv_revision: u64,
    kv: KvListing,
    worker_token: String,
    manager_token: String,
    nodes: Vec<(u64, Role)>,
}

async fn durable_state(client: &mut Client) -> Durable {
    let status = client.status().await.unwrap();
    let cluster = status.cluster.unwrap();
    Durable {
        node_id: status.node_id,
        raft_node_id: status.raft_node_id,
        cluster_id: cluster.cluster_id,
        kv_revision: cluster.kv_revision,
        kv: client.kv_list("", LINEARIZABLE).await.unwrap(),
        worker_token: client.token_show(Role::Worker).await.unwrap().token,
        manager_token: client.token_show(Role::Manager).await.unwrap().token,
        nodes: client
            .node_list(LINEARIZABLE)
            .await
            .unwrap()
            .iter()
            .map(|node| (node.node_id, node.role))
            .collect(),
    }
}

/// How a test stops an agent before restarting it.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// SIGKILL: no chance to flush or clean up.
    Kill9,
    /// SIGTERM: must exit 0 within [`EXIT_TIMEOUT`].
    Sigterm,
}

/// Writes some state, stops the agent, restarts it and checks that it comes back as the same
/// leading node with the same state, without a new init, and takes writes again.
async fn survives_restart(stop: Stop) -> AgentProcess {
    let (mut agent, mut client, _) = initialised_manager().await;
    client.kv_put("a", b"alpha".to_vec(), None).await.unwrap();
    client.kv_put("b", b"beta".to_vec(), None).await.unwrap();
    client.kv_put("a", b"alpha2".to_vec(), None).await.unwrap();
    client.kv_put("gone", b"x".to_vec(), None).await.unwrap();
    client.kv_delete("gone", None).await.unwrap();
    client.token_rotate(Role::Worker).await.unwrap();
    let before = durable_state(&mut client).await;
    drop(client);

    match stop {
        Stop::Kill9 => {
            agent.kill9().unwrap();
        }
        Stop::Sigterm => {
            let stopping = Instant::now();
            let exit = agent.terminate(EXIT_TIMEOUT).await.unwrap();
            assert!(
                exit.success(),
                "SIGTERM must end the agent cleanly, got {exit}"
            );
            eprintln!("exited {:?} after SIGTERM", stopping.elapsed());
        }
    }
    let restarted_at = Instant::now();
    agent.restart().await.unwrap();
    let status = agent.wait_leader(LEADER_TIMEOUT).await.unwrap();
    eprintln!(
        "leader again {:?} after the restart",
        restarted_at.elapsed()
    );
    assert_eq!(status.node_id, before.node_id);

    let mut client = agent.client().await.unwrap();
    let after = durable_state(&mut client).await;
    assert_eq!(after, before, "state after the restart");
    let a = client.kv_get("a", LINEARIZABLE).await.unwrap().unwrap();
    assert_eq!((a.value.as_slice(), a.version), (&b"alpha2"[..], 2));

    let revision = put_when_leader(&agent, "after", b"restart").await;
    assert!(revision > before.kv_revision);
    agent
}

#[tokio::test]
async fn restart_after_kill9_keeps_everything() {
    let mut agent = survives_restart(Stop::Kill9).await;
    // A second crash right after the first restart's write loses nothing either.
    agent.kill9().unwrap();
    agent.restart().await.unwrap();
    agent.wait_leader(LEADER_TIMEOUT).await.unwrap();
    let client = agent.client().await.unwrap();
    let entry = client.kv_get("after", LINEARIZABLE).await.unwrap().unwrap();
    assert_eq!(entry.value, b"restart");
}

#[tokio::test]
async fn restart_after_sigterm_keeps_everything() {
    let mut agent = survives_restart(Stop::Sigterm).await;
    // And a clean stop right after a write keeps that write.
    assert!(agent.terminate(EXIT_TIMEOUT).await.unwrap().success());
    agent.restart().await.unwrap();
    agent.wait_leader(LEADER_TIMEOUT).await.unwrap();
    let client = agent.client().await.unwrap();
    let entry = client.kv_get("after", LINEARIZABLE).await.unwrap().unwrap();
    assert_eq!(entry.value, b"restart");
}

#[tokio::test]
async fn uninitialised_node_keeps_its_identity_across_restarts() {
    let mut agent = AgentProcess::start().await.unwrap();
    let first = agent.client().await.unwrap().status().await.unwrap();
    let key_bytes = std::fs::read(agent.key_path()).unwrap();

    agent.kill9().unwrap();
    let second = agent.restart().await.unwrap();
    assert_eq!(
        (second.node_id, second.raft_node_id),
        (first.node_id, first.raft_node_id)
    );
    assert_eq!(second.cluster, None);

    assert!(agent.terminate(EXIT_TIMEOUT).await.unwrap().success());
    let third = agent.restart().await.unwrap();
    assert_eq!(
        (third.node_id, third.raft_node_id),
        (first.node_id, first.raft_node_id)
    );
    assert_eq!(
        std::fs::read(agent.key_path()).unwrap(),
        key_bytes,
        "key.json is never rewritten"
    );
}

/// Replaces key.json with `damage(original)` and checks that the agent refuses to start, says
/// why, and leaves the file alone.
async fn refuses_damaged_key(damage: impl FnOnce(&[u8]) -> Vec<u8>) {
    let mut agent = AgentProcess::start().await.unwrap();
    assert!(agent.terminate(EXIT_TIMEOUT).await.unwrap().success());
    let original = std::fs::read(agent.key_path()).unwrap();
    let damaged = damage(&original);
    std::fs::write(agent.key_path(), &damaged).unwrap();

    agent.respawn().unwrap();
    let exit = agent.wait_exit(EXIT_TIMEOUT).await.unwrap();
    assert!(
        !exit.success(),
        "an agent with a damaged key.json must not start ({exit})"
    );
    let log = agent.run_log();
    assert!(
        log.contains("key.json"),
        "the error must name key.json; the agent said:\n{log}"
    );
    assert_eq!(
        std::fs::read(agent.key_path()).unwrap(),
        damaged,
        "a damaged key.json must be left as it is"
    );
}

#[tokio::test]
async fn corrupt_key_file_stops_the_agent() {
    refuses_damaged_key(|_| b"\x00\xff\xfegarbage\x13\x37{{{".to_vec()).await;
}

#[tokio::test]
async fn truncated_key_file_stops_the_agent() {
    refuses_damaged_key(|original| original[..original.len() / 2].to_vec()).await;
}

/// With a tiny snapshot interval the log is compacted many times over; a kill -9 and restart
/// must still bring back every write, from the durable state machine plus the log tail.
#[tokio::test]
async fn compacted_log_and_kill9_lose_nothing() {
    use symphony_testnet::harness::AgentOptions;
    let options = AgentOptions {
        extra_args: vec!["--snapshot-interval".into(), "20".into()],
        ..AgentOptions::default()
    };
    let mut agent = AgentProcess::start_with(options).await.unwrap();
    let client = agent.client().await.unwrap();
    client.init().await.unwrap();
    agent.wait_leader(LEADER_TIMEOUT).await.unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..300u32 {
        let key = format!("compact/{:03}", i % 120);
        let value = format!("v{i}");
        let revision = client
            .kv_put(key.clone(), value.clone(), None)
            .await
            .unwrap()
            .revision;
        acknowledged.push((key, value, revision));
    }
    let before = client.kv_list("compact/", LINEARIZABLE).await.unwrap();
    agent.kill9().unwrap();
    agent.restart().await.unwrap();
    agent.wait_leader(LEADER_TIMEOUT).await.unwrap();
    let client = agent.client().await.unwrap();
    let after = client.kv_list("compact/", LINEARIZABLE).await.unwrap();
    assert_eq!(before, after);
    // Every acknowledged write is there: the last value of each key, at its revision.
    let mut latest = std::collections::BTreeMap::new();
    for (key, value, revision) in acknowledged {
        latest.insert(key, (value, revision));
    }
    assert_eq!(after.entries.len(), latest.len());
    for entry in &after.entries {
        let (value, revision) = &latest[&entry.key];
        assert_eq!(entry.value, value.as_bytes());
        assert_eq!(entry.mod_revision, *revision);
    }
    assert_eq!(after.revision, 300);
}
