//! Worker fleets end to end: real agents on loopback joining with the worker token, gossip
//! liveness turned into node status by the leader, and workers that outlive their manager.
//!
//! Every agent here gossips with fast timings (200 ms probes, 1 s suspicion, 500 ms grace), so
//! a killed worker is down within a few seconds; the logic is the same as with the defaults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::Duration;

use symphony_ctl::proto::{ErrorCode, NodeInfo, ReadConsistency, Role, StatusInfo};
use symphony_ctl::{Client, ClientError};
use symphony_testnet::harness::{
    AgentOptions, AgentProcess, Cluster, ClusterOptions, HarnessError, poll_until,
};

const FAST_GOSSIP: [&str; 8] = [
    "--gossip-probe-period-ms",
    "200",
    "--gossip-probe-rtt-ms",
    "100",
    // Suspicion and grace long enough that an agent starved of CPU for a second (debug builds
    // of ~20 agents on two cores while a leader is re-elected) is not declared down: CI once
    // saw a healthy worker marked down with 1 s and 500 ms.
    "--gossip-suspect-ms",
    "2000",
    "--liveness-grace-ms",
    "1000",
];
/// Generous: debug builds of several agents on two cores, tests in parallel.
const TIMEOUT: Duration = Duration::from_secs(40);

fn fast_args() -> Vec<String> {
    FAST_GOSSIP.iter().map(|arg| (*arg).to_string()).collect()
}

/// `count` managers formed into one cluster (static bootstrap), gossiping fast.
async fn managers(count: usize) -> Cluster {
    let mut cluster = Cluster::start_with(count, ClusterOptions::with_agent_args(&FAST_GOSSIP))
        .await
        .unwrap();
    if count == 1 {
        cluster.bootstrap_dynamic().await.unwrap();
    } else {
        cluster.bootstrap_static().await.unwrap();
    }
    cluster
}

async fn start_worker(labels: &[&str]) -> AgentProcess {
    let mut options = AgentOptions {
        extra_args: fast_args(),
        ..AgentOptions::default()
    };
    for label in labels {
        options.extra_args.push("--label".into());
        options.extra_args.push((*label).into());
    }
    AgentProcess::start_with(options).await.unwrap()
}

async fn worker_token(cluster: &Cluster) -> String {
    let leader = cluster.leader().await.unwrap();
    let client = cluster.client(leader).await.unwrap();
    client.token_show(Role::Worker).await.unwrap().token
}

async fn join(worker: &AgentProcess, token: &str, addr: &str) -> Result<u64, ClientError> {
    let client = worker.client().await.unwrap();
    let joined = client.join(token, addr).await?;
    assert_eq!(joined.role, Role::Worker);
    Ok(joined.node_id)
}

async fn worker_status(worker: &AgentProcess) -> StatusInfo {
    worker.client().await.unwrap().status().await.unwrap()
}

/// `node ls` through any running manager (linearizable, so it is the leader's view).
async fn nodes(cluster: &Cluster) -> Result<BTreeMap<u64, NodeInfo>, String> {
    let mut last = String::from("no manager answered");
    for index in cluster.live_members() {
        let Ok(client) = cluster.client(index).await else {
            continue;
        };
        match client.node_list(ReadConsistency::Linearizable).await {
            Ok(nodes) => {
                return Ok(nodes.into_iter().map(|node| (node.node_id, node)).collect());
            }
            Err(error) => last = error.to_string(),
        }
    }
    Err(last)
}

async fn wait_status(cluster: &Cluster, node_id: u64, expected: &str) -> NodeInfo {
    poll_until(TIMEOUT, &format!("node {node_id} {expected}"), async || {
        let nodes = nodes(cluster).await?;
        match nodes.get(&node_id) {
            Some(node) if node.status == expected => Ok(node.clone()),
            Some(node) => Err(format!("status {}", node.status)),
            None => Err("not listed".to_string()),
        }
    })
    .await
    .unwrap()
}

fn code_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Remote(error)) => error.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_join_through_a_manager_and_through_another_worker() {
    let cluster = managers(1).await;
    let token = worker_token(&cluster).await;
    let manager_addr = cluster.remote_addr(0).unwrap().to_string();

    let first = start_worker(&["zone=a"]).await;
    let first_id = join(&first, &token, &manager_addr).await.unwrap();
    let second = start_worker(&[]).await;
    let second_id = join(&second, &token, &first.remote_addr().to_string())
        .await
        .unwrap();

    for (id, labels) in [(first_id, vec![("zone", "a")]), (second_id, vec![])] {
        let node = wait_status(&cluster, id, "ready").await;
        assert_eq!(node.role, Role::Worker);
        assert_eq!(node.availability, "active");
        assert_eq!(node.raft_node_id, None);
        let expected: BTreeMap<String, String> = labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(node.labels, expected);
    }

    // A worker knows its managers and which one leads, from its session and gossip.
    let manager_id = cluster.node_id(0).unwrap();
    let status = poll_until(TIMEOUT, "the worker sees the leader", async || {
        let status = worker_status(&second).await;
        let cluster_status = status.cluster.clone().ok_or("no cluster")?;
        if cluster_status.leader_node_id == Some(manager_id)
            && cluster_status.gossip_members == Some(3)
        {
            Ok(cluster_status)
        } else {
            Err(format!("{cluster_status:?}"))
        }
    })
    .await
    .unwrap();
    assert_eq!(status.role, Role::Worker);
    assert_eq!(status.managers.len(), 1);
    assert_eq!(status.managers[0].node_id, manager_id);
    assert!(status.managers[0].leader);

    // Workers serve only what concerns themselves.
    let client = second.client().await.unwrap();
    assert_eq!(
        code_of(client.kv_put("k", b"v".to_vec(), None).await),
        ErrorCode::NotManager
    );
    assert_eq!(
        code_of(client.node_list(ReadConsistency::Stale).await),
        ErrorCode::NotManager
    );
    assert_eq!(
        code_of(client.token_show(Role::Worker).await),
        ErrorCode::NotManager
    );
    // Streams too, as their first and last item.
    let mut events = client
        .events(None, symphony_ctl::proto::EventFilter::default())
        .await
        .unwrap();
    match events.next().await {
        Some(Err(error)) => assert_eq!(
            code_of::<()>(Err(ClientError::from(error))),
            ErrorCode::NotManager
        ),
        other => panic!("a worker streamed events: {other:?}"),
    }
    assert_eq!(
        code_of(client.join(token.clone(), manager_addr.clone()).await),
        ErrorCode::AlreadyInitialised
    );

    // A ready worker is removed only by force; after `leave` it is `left` and removable.
    let manager = cluster.client(0).await.unwrap();
    assert_eq!(
        code_of(manager.node_remove(second_id, false).await),
        ErrorCode::BadRequest
    );
    client.leave().await.unwrap();
    wait_status(&cluster, second_id, "left").await;
    assert!(worker_status(&second).await.cluster.is_none());
    manager.node_remove(second_id, false).await.unwrap();
    assert!(!nodes(&cluster).await.unwrap().contains_key(&second_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_token_is_refused_and_nothing_is_written() {
    let cluster = managers(1).await;
    let token = worker_token(&cluster).await;
    let before = nodes(&cluster).await.unwrap();
    let worker = start_worker(&[]).await;
    let addr = cluster.remote_addr(0).unwrap().to_string();
    // The real token with its last digit changed.
    let last = if token.ends_with('0') { '1' } else { '0' };
    for wrong in [
        format!("{}{last}", &token[..token.len() - 1]),
        "SYMTKN-1-W-00000000-guess".to_string(),
        "not a token".to_string(),
    ] {
        let refused = join(&worker, &wrong, &addr).await;
        assert_eq!(code_of(refused), ErrorCode::InvalidToken, "{wrong}");
    }
    assert_eq!(nodes(&cluster).await.unwrap().len(), before.len());
    let status = worker_status(&worker).await;
    assert!(status.cluster.is_none(), "{status:?}");
    // The worker can still join with the right token afterwards.
    join(&worker, &token, &addr).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_goes_down_and_comes_back_ready_with_its_id() {
    let cluster = managers(1).await;
    let token = worker_token(&cluster).await;
    let mut worker = start_worker(&[]).await;
    let id = join(
        &worker,
        &token,
        &cluster.remote_addr(0).unwrap().to_string(),
    )
    .await
    .unwrap();
    wait_status(&cluster, id, "ready").await;

    worker.kill9().unwrap();
    let down = wait_status(&cluster, id, "down").await;
    assert!(down.status_changed_at_ms > 0);

    // Restarted on its config dir, it is the same node, without a token.
    let status = worker.restart().await.unwrap();
    assert_eq!(status.node_id, id);
    assert_eq!(status.cluster.unwrap().role, Role::Worker);
    wait_status(&cluster, id, "ready").await;
    assert_eq!(nodes(&cluster).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_keeps_working_when_its_manager_dies_and_no_healthy_worker_is_marked_down() {
    let mut cluster = managers(3).await;
    let token = worker_token(&cluster).await;
    let mut workers = Vec::new();
    for _ in 0..3 {
        let worker = start_worker(&[]).await;
        let id = join(
            &worker,
            &token,
            &cluster.remote_addr(0).unwrap().to_string(),
        )
        .await
        .unwrap();
        workers.push((worker, id));
    }
    for (_, id) in &workers {
        wait_status(&cluster, *id, "ready").await;
    }
    // Labels and drain set on a worker, to check they survive the leader change.
    let (_, drained) = &workers[0];
    let leader = cluster.leader().await.unwrap();
    cluster
        .client(leader)
        .await
        .unwrap()
        .node_update(
            *drained,
            Some("drain".into()),
            BTreeMap::from([("disk".to_string(), "ssd".to_string())]),
            Vec::new(),
        )
        .await
        .unwrap();

    // Kill the manager the first worker has its session with, and the leader if that is
    // another one: the worker must switch, and the new leader must not mark workers down.
    let (first, _) = &workers[0];
    let session_manager = poll_until(TIMEOUT, "a session", async || {
        let status = worker_status(first).await;
        let cluster_status = status.cluster.ok_or("no cluster")?;
        cluster_status
            .managers
            .iter()
            .find(|manager| manager.session)
            .map(|manager| manager.node_id)
            .ok_or_else(|| "no session yet".to_string())
    })
    .await
    .unwrap();
    let victim = cluster.index_of_node_id(session_manager).unwrap();
    let leader = cluster.leader().await.unwrap();
    eprintln!(
        "killing manager {session_manager} (the leader: {})",
        victim == leader
    );
    cluster.kill9(victim).unwrap();

    let new_session = poll_until(TIMEOUT, "the worker's session moves", async || {
        let status = worker_status(first).await;
        let cluster_status = status.cluster.ok_or("no cluster")?;
        let session = cluster_status
            .managers
            .iter()
            .find(|manager| manager.session)
            .map(|manager| manager.node_id);
        match (session, cluster_status.leader_node_id) {
            (Some(session), Some(leader))
                if session != session_manager && leader != session_manager =>
            {
                Ok(session)
            }
            other => Err(format!("session and leader {other:?}")),
        }
    })
    .await
    .unwrap();
    eprintln!("the worker's session is now with manager {new_session}");

    // Over the new leader's warm-up and well beyond, every worker stays ready while the
    // killed manager goes down.
    let victim_id = cluster.node_id(victim).unwrap();
    wait_status(&cluster, victim_id, "down").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < deadline {
        let nodes = nodes(&cluster).await.unwrap();
        for (_, id) in &workers {
            assert_eq!(nodes[id].status, "ready", "worker {id} was marked down");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let node = nodes(&cluster).await.unwrap()[drained].clone();
    assert_eq!(node.availability, "drain");
    assert_eq!(node.labels.get("disk").map(String::as_str), Some("ssd"));

    cluster.restart(victim).await.unwrap();
    wait_status(&cluster, victim_id, "ready").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_foreign_gossip_packets_are_dropped() {
    let cluster = managers(1).await;
    let token = worker_token(&cluster).await;
    let worker = start_worker(&[]).await;
    let id = join(
        &worker,
        &token,
        &cluster.remote_addr(0).unwrap().to_string(),
    )
    .await
    .unwrap();
    wait_status(&cluster, id, "ready").await;

    // The manager gossips on its remote address's port, over UDP.
    let target = cluster.remote_addr(0).unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let foreign = symphony_gossip::packet::encode(
        symphony_gossip::packet::cluster_tag("another-cluster"),
        b"not foca either",
    );
    let own_tag = symphony_gossip::packet::cluster_tag(
        &worker_status(&worker).await.cluster.unwrap().cluster_id,
    );
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"x".to_vec(),
        vec![0xff; 1400],
        foreign.to_vec(),
        symphony_gossip::packet::encode(own_tag, b"\x00\x01garbage for foca").to_vec(),
    ];
    let mut truncated = symphony_gossip::packet::encode(own_tag, b"0123456789").to_vec();
    truncated.truncate(truncated.len() - 3);
    garbage.push(truncated);
    for packet in &garbage {
        socket.send_to(packet, target).unwrap();
    }
    let dropped = poll_until(TIMEOUT, "the packets counted as dropped", async || {
        let status = cluster
            .status(0)
            .await
            .map_err(|e: HarnessError| e.to_string())?;
        let dropped = status.cluster.and_then(|c| c.gossip_dropped).unwrap_or(0);
        if dropped >= garbage.len() as u64 - 1 {
            Ok(dropped)
        } else {
            Err(format!("{dropped} dropped"))
        }
    })
    .await
    .unwrap();
    eprintln!("{dropped} packets dropped");
    // Nothing changed: the worker is still ready and the manager still answers.
    for _ in 0..5 {
        let nodes = nodes(&cluster).await.unwrap();
        assert_eq!(nodes[&id].status, "ready");
    }
    let client: Client = cluster.client(0).await.unwrap();
    client
        .kv_put("still", b"here".to_vec(), None)
        .await
        .unwrap();
}
