//! Gossip encryption end to end: real agents on loopback whose gossip is sealed under the
//! cluster's keys. Forged, foreign-key and replayed packets are dropped, counted and change
//! nothing; a key rotation on a running cluster cuts no node off and loses no write; keys
//! never show in `--json`-able answers or in logs.
//!
//! Every agent gossips with the fast timings of `worker_fleet.rs`, so a node that stopped
//! being heard would be declared down within a few seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use symphony_ctl::proto::{NodeInfo, ReadConsistency, Role, StatusInfo};
use symphony_gossip::framing::Framing;
use symphony_gossip::packet;
use symphony_gossip::{GossipIdentity, GossipKey, Keyring};
use symphony_testnet::harness::{
    AgentOptions, AgentProcess, Cluster, ClusterOptions, HarnessError, free_port, poll_until,
};
use tokio::net::UdpSocket;

const FAST_GOSSIP: [&str; 8] = [
    "--gossip-probe-period-ms",
    "200",
    "--gossip-probe-rtt-ms",
    "100",
    "--gossip-suspect-ms",
    "2000",
    "--liveness-grace-ms",
    "1000",
];
/// Generous: debug builds of several agents on two cores, tests in parallel.
const TIMEOUT: Duration = Duration::from_secs(60);

fn fast_args() -> Vec<String> {
    FAST_GOSSIP.iter().map(|arg| (*arg).to_string()).collect()
}

async fn managers(count: usize) -> Cluster {
    Cluster::formed(count, ClusterOptions::with_agent_args(&FAST_GOSSIP))
        .await
        .unwrap()
}

async fn start_worker(extra: &[String]) -> AgentProcess {
    let mut extra_args = fast_args();
    extra_args.extend(extra.iter().cloned());
    AgentProcess::start_with(AgentOptions {
        extra_args,
        ..AgentOptions::default()
    })
    .await
    .unwrap()
}

async fn join(cluster: &Cluster, worker: &AgentProcess) -> u64 {
    let leader = cluster.leader().await.unwrap();
    let token = cluster
        .client(leader)
        .await
        .unwrap()
        .token_show(Role::Worker)
        .await
        .unwrap()
        .token;
    let addr = cluster.remote_addr(leader).unwrap().to_string();
    let joined = worker
        .client()
        .await
        .unwrap()
        .join(token, addr)
        .await
        .unwrap();
    joined.node_id
}

/// `node ls` through any running manager (linearizable: the leader's view).
async fn nodes(cluster: &Cluster) -> Result<BTreeMap<u64, NodeInfo>, String> {
    let mut last = String::from("no manager answered");
    for index in cluster.live_members() {
        let Ok(client) = cluster.client(index).await else {
            continue;
        };
        match client.node_list(ReadConsistency::Linearizable).await {
            Ok(nodes) => return Ok(nodes.into_iter().map(|n| (n.node_id, n)).collect()),
            Err(error) => last = error.to_string(),
        }
    }
    Err(last)
}

async fn wait_status(cluster: &Cluster, node_id: u64, expected: &str) {
    poll_until(
        TIMEOUT,
        &format!("node {node_id} {expected}"),
        async || match nodes(cluster).await?.get(&node_id) {
            Some(node) if node.status == expected => Ok(()),
            Some(node) => Err(format!("status {}", node.status)),
            None => Err("not listed".to_string()),
        },
    )
    .await
    .unwrap();
}

async fn status_of(agent: &AgentProcess) -> Result<StatusInfo, String> {
    let client = agent.client().await.map_err(|e| e.to_string())?;
    client.status().await.map_err(|e| e.to_string())
}

async fn gossip_members(agent: &AgentProcess) -> Result<usize, String> {
    status_of(agent)
        .await?
        .cluster
        .and_then(|cluster| cluster.gossip_members)
        .ok_or_else(|| "not gossiping".to_string())
}

async fn wait_members(agent: &AgentProcess, expected: usize) {
    poll_until(
        TIMEOUT,
        &format!("{expected} gossip members"),
        async || match gossip_members(agent).await? {
            count if count == expected => Ok(()),
            count => Err(format!("{count} members")),
        },
    )
    .await
    .unwrap();
}

/// The cluster keyring a node keeps in its config dir, as raw JSON.
fn keyring_file(config_dir: &std::path::Path) -> serde_json::Value {
    let bytes = std::fs::read(config_dir.join("gossip-keys.json")).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Every key's bytes in `file`, as the JSON array it is stored as and in hex.
fn key_spellings(file: &serde_json::Value) -> Vec<String> {
    let mut spellings = Vec::new();
    for key in file["keyring"]["keys"].as_array().unwrap() {
        let bytes: Vec<u8> = key["secret"]
            .as_array()
            .unwrap()
            .iter()
            .map(|byte| u8::try_from(byte.as_u64().unwrap()).unwrap())
            .collect();
        spellings.push(serde_json::to_string(&bytes).unwrap());
        spellings.push(bytes.iter().map(|b| format!("{b:02x}")).collect());
        spellings.push(format!("{bytes:?}"));
    }
    spellings
}

/// A UDP relay in front of a worker's gossip socket: forwards every datagram and keeps those
/// that come from `watched`, as an eavesdropper on the path would.
struct Relay {
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(listen: SocketAddr, target: SocketAddr, watched: SocketAddr) -> Relay {
        let socket = UdpSocket::bind(listen).await.unwrap();
        let captured = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&captured);
        let task = tokio::spawn(async move {
            let mut buffer = vec![0_u8; 65_536];
            while let Ok((len, from)) = socket.recv_from(&mut buffer).await {
                let datagram = &buffer[..len];
                if from == watched {
                    keep.lock().unwrap().push(datagram.to_vec());
                }
                let _ = socket.send_to(datagram, target).await;
            }
        });
        Relay { captured, task }
    }

    fn captured(&self) -> Vec<Vec<u8>> {
        self.captured.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_foreign_and_replayed_gossip_is_dropped_counted_and_changes_nothing() {
    let cluster = managers(1).await;
    let victim = start_worker(&[]).await;
    let victim_id = join(&cluster, &victim).await;

    // The watched worker gossips on 127.0.0.2 but is known at 127.0.0.1, where the relay
    // listens: everything sent to it passes the relay.
    let port = free_port().unwrap();
    let advertised: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let bound: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let relay = Relay::start(advertised, bound, victim.remote_addr()).await;
    let watched = start_worker(&[
        "--listen-gossip-addr".to_string(),
        bound.to_string(),
        "--advertise-addr".to_string(),
        "127.0.0.1".to_string(),
    ])
    .await;
    let watched_id = join(&cluster, &watched).await;
    wait_status(&cluster, victim_id, "ready").await;
    wait_status(&cluster, watched_id, "ready").await;
    wait_members(&watched, 3).await;
    wait_members(&victim, 3).await;

    let status = status_of(&watched).await.unwrap();
    let cluster_id = status.cluster.as_ref().unwrap().cluster_id.clone();
    let tag = packet::cluster_tag(&cluster_id);
    let drops = status.cluster.unwrap().gossip_drops.unwrap();
    assert_eq!(drops.sealing_key, Some(1), "a new cluster seals with key 1");

    // A spoofed member's real foca announce, unsealed and sealed with a foreign key.
    let spoofed = GossipIdentity::new(
        4_242_424_242,
        symphony_gossip::Role::Worker,
        "127.0.0.1:9".parse().unwrap(),
        "127.0.0.1:9".into(),
        None,
    );
    let announce = symphony_gossip::testing::announce_payload(spoofed, advertised).unwrap();
    let unsealed = packet::encode(tag, &announce);
    let foreign_keyring = Keyring::new(1, [(1, GossipKey::generate().unwrap())]).unwrap();
    let foreign = Framing::sealed(tag, foreign_keyring, 4_242_424_242, 1)
        .frame(&announce)
        .unwrap();
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let random: Vec<u8> = (0..300_u32).map(|i| (i * 7919 % 251) as u8).collect();
    for datagram in [&random[..], &unsealed[..], &foreign[..]] {
        raw.send_to(datagram, bound).await.unwrap();
        raw.send_to(datagram, cluster.remote_addr(0).unwrap())
            .await
            .unwrap();
    }
    poll_until(
        TIMEOUT,
        "the forged packets counted by reason",
        async || {
            let drops = status_of(&watched)
                .await?
                .cluster
                .and_then(|cluster| cluster.gossip_drops)
                .ok_or("no drops")?;
            if drops.bad_magic >= 1 && drops.unsealed >= 1 && drops.unauthenticated >= 1 {
                Ok(())
            } else {
                Err(format!("{drops:?}"))
            }
        },
    )
    .await
    .unwrap();
    // The spoofed member is nowhere: not in any gossip view, not in the cluster.
    assert_eq!(gossip_members(&watched).await.unwrap(), 3);
    assert_eq!(gossip_members(&victim).await.unwrap(), 3);
    assert!(!nodes(&cluster).await.unwrap().contains_key(&4_242_424_242));

    // Replays: the victim's packets to the watched worker, captured on the way, sent again
    // after the victim died. They must neither count as the victim's voice nor keep it up.
    poll_until(TIMEOUT, "packets of the victim captured", async || {
        let count = relay.captured().len();
        if count >= 5 {
            Ok(())
        } else {
            Err(format!("{count} captured"))
        }
    })
    .await
    .unwrap();
    let mut victim = victim;
    victim.kill9().unwrap();
    let captured = relay.captured();
    let replayer = async {
        // Bounded: until the checks below are done (or the test's own deadline).
        for _ in 0..1_000 {
            for datagram in &captured {
                let _ = raw.send_to(datagram, bound).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let checks = async {
        wait_status(&cluster, victim_id, "down").await;
        wait_members(&watched, 2).await;
        poll_until(TIMEOUT, "the replays counted", async || {
            let drops = status_of(&watched)
                .await?
                .cluster
                .and_then(|cluster| cluster.gossip_drops)
                .ok_or("no drops")?;
            if drops.replayed >= captured.len() as u64 {
                Ok(())
            } else {
                Err(format!("{drops:?}"))
            }
        })
        .await
        .unwrap();
        // Still down and still out of the watched worker's view while replays go on.
        for _ in 0..5 {
            assert_eq!(gossip_members(&watched).await.unwrap(), 2);
            assert_eq!(nodes(&cluster).await.unwrap()[&victim_id].status, "down");
        }
    };
    tokio::select! {
        () = replayer => panic!("the replayer ran out before the checks finished"),
        () = checks => {}
    }
    assert_eq!(nodes(&cluster).await.unwrap()[&watched_id].status, "ready");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_rotation_on_a_running_cluster_cuts_no_node_off_and_loses_no_write() {
    let cluster = managers(3).await;
    let mut workers = Vec::new();
    for _ in 0..5 {
        let worker = start_worker(&[]).await;
        join(&cluster, &worker).await;
        workers.push(worker);
    }
    let all = cluster.len() + workers.len();
    poll_until(TIMEOUT, "every node ready", async || {
        let nodes = nodes(&cluster).await?;
        let ready = nodes.values().filter(|node| node.status == "ready").count();
        if ready == all {
            Ok(())
        } else {
            Err(format!("{ready} ready"))
        }
    })
    .await
    .unwrap();
    for worker in &workers {
        wait_members(worker, all).await;
    }
    for index in 0..cluster.len() {
        poll_until(TIMEOUT, "every manager seeing every member", async || {
            let status = cluster.status(index).await.map_err(|e| e.to_string())?;
            match status.cluster.and_then(|cluster| cluster.gossip_members) {
                Some(count) if count == all => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap();
    }
    let leader = cluster.leader().await.unwrap();
    let client = cluster.client(leader).await.unwrap();
    let before = client.gossip_key_list().await.unwrap();
    assert_eq!(before.primary, Some(1));
    assert_eq!(before.keys.len(), 1);
    assert_eq!(before.keys[0].sealing_on, all as u64, "{before:?}");

    let done = AtomicBool::new(false);
    let downs = Mutex::new(Vec::<String>::new());
    let writer = async { cluster.write_until("rotation", &done).await.unwrap() };
    let watcher = async {
        while !done.load(Ordering::Relaxed) {
            if let Ok(nodes) = nodes(&cluster).await {
                for node in nodes.values().filter(|node| node.status != "ready") {
                    downs
                        .lock()
                        .unwrap()
                        .push(format!("node {} {}", node.node_id, node.status));
                }
            }
            for worker in &workers {
                if let Ok(count) = gossip_members(worker).await
                    && count != all
                {
                    downs
                        .lock()
                        .unwrap()
                        .push(format!("a worker saw {count} members"));
                }
            }
            for index in 0..cluster.len() {
                let members = cluster
                    .status(index)
                    .await
                    .ok()
                    .and_then(|status| status.cluster)
                    .and_then(|cluster| cluster.gossip_members);
                if let Some(count) = members
                    && count != all
                {
                    downs
                        .lock()
                        .unwrap()
                        .push(format!("manager {index} saw {count} members"));
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let rotation = async {
        let wait = Duration::from_secs(20);
        let installed = client.gossip_key_install(wait).await.unwrap();
        let new = installed.changed.unwrap();
        assert_eq!(new, 2);
        let key = installed.keys.iter().find(|key| key.id == new).unwrap();
        assert_eq!(key.installed_on, all as u64, "{installed:?}");
        assert!(!key.primary);
        let used = client.gossip_key_use(new, wait, false).await.unwrap();
        assert_eq!(used.primary, Some(new));
        let removed = client.gossip_key_remove(1, wait, false).await.unwrap();
        assert_eq!(removed.keys.len(), 1, "{removed:?}");
        // Some traffic under the new key only before the watch ends.
        let after = poll_until(TIMEOUT, "every node sealing with the new key", async || {
            let list = client.gossip_key_list().await.map_err(|e| e.to_string())?;
            if list.keys.len() == 1 && list.keys[0].sealing_on == all as u64 {
                Ok(list)
            } else {
                Err(format!("{list:?}"))
            }
        })
        .await
        .unwrap();
        for index in 0..cluster.len() {
            let status = cluster.status(index).await.unwrap();
            let sealing = status.cluster.unwrap().gossip_drops.unwrap().sealing_key;
            assert_eq!(sealing, Some(new));
        }
        // Watch a little longer, with nothing sealed under the old key any more.
        tokio::time::sleep(Duration::from_secs(3)).await;
        done.store(true, Ordering::Relaxed);
        after
    };
    let (written, (), after) = tokio::join!(writer, watcher, rotation);
    assert!(written > 0);
    assert_eq!(after.primary, Some(2));
    let downs = downs.into_inner().unwrap();
    assert!(downs.is_empty(), "nodes lost contact: {downs:?}");
    let verified = cluster.verify_acknowledged().await.unwrap();
    assert_eq!(verified as u64, written);

    // Refusals: the primary cannot be removed, an unknown key cannot be used.
    let primary = client.gossip_key_remove(2, Duration::ZERO, false).await;
    assert!(primary.is_err(), "{primary:?}");
    let unknown = client.gossip_key_use(1, Duration::ZERO, false).await;
    assert!(unknown.is_err(), "{unknown:?}");

    // Keys are kept 0600 in every config dir, and appear in no log and no answer.
    let file = keyring_file(workers[0].config_dir());
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(workers[0].config_dir().join("gossip-keys.json"))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode & 0o777, 0o600);
    let spellings = key_spellings(&file);
    assert!(!spellings.is_empty());
    let answer = serde_json::to_string(&client.gossip_key_list().await.unwrap()).unwrap();
    let mut logs: Vec<String> = workers.iter().map(AgentProcess::log).collect();
    logs.extend((0..cluster.len()).map(|index| cluster.run_log(index)));
    for spelling in &spellings {
        assert!(!answer.contains(spelling.as_str()), "a key in the answer");
        for log in &logs {
            assert!(!log.contains(spelling.as_str()), "a key in a log");
        }
    }

    // A worker restarted from its config dir seals with the new key at once.
    let restarted = &mut workers[0];
    restarted.kill9().unwrap();
    restarted
        .restart()
        .await
        .map_err(|e: HarnessError| e.to_string())
        .unwrap();
    wait_members(restarted, all).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_down_during_a_rotation_catches_up_when_it_returns() {
    let cluster = managers(1).await;
    let mut worker = start_worker(&[]).await;
    let worker_id = join(&cluster, &worker).await;
    wait_members(&worker, 2).await;
    worker.kill9().unwrap();
    wait_status(&cluster, worker_id, "down").await;

    // Down nodes are not waited for: the whole rotation goes through without --force.
    let client = cluster.client(0).await.unwrap();
    let wait = Duration::from_secs(20);
    let new = client
        .gossip_key_install(wait)
        .await
        .unwrap()
        .changed
        .unwrap();
    client.gossip_key_use(new, wait, false).await.unwrap();
    client.gossip_key_remove(1, wait, false).await.unwrap();
    let old = keyring_file(worker.config_dir());
    assert_eq!(old["keyring"]["primary"], 1, "the worker kept what it had");

    // It comes back sealing with a key nobody accepts any more; its session brings the new
    // keyring, and it is heard again.
    worker.restart().await.unwrap();
    wait_status(&cluster, worker_id, "ready").await;
    wait_members(&worker, 2).await;
    let file = keyring_file(worker.config_dir());
    assert_eq!(file["keyring"]["primary"], new);
    let list = client.gossip_key_list().await.unwrap();
    assert_eq!(list.keys.len(), 1);
    assert_eq!(list.keys[0].sealing_on, 2, "{list:?}");
}
