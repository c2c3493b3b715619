//! Workers follow a manager whose replica moves. A manager whose store fails stops its Raft
//! node, and its supervisor later starts a new one from the file; the assignments streams it
//! served to workers must not go on reading the stopped replica (which once kept the workers'
//! leases alive on its stale word while they never heard of the tasks placed on them since).
//!
//! Each manager's store fails in turn (a failpoint) and heals; then a service is placed on the
//! workers, and every one of its tasks must run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use symphony_ctl::Client;
use symphony_ctl::proto::{ReadConsistency, ServiceSpecView};
use symphony_testnet::harness::lab_tests::DownOnDrop;
use symphony_testnet::harness::poll_until;
use symphony_testnet::lab::{Lab, Subnet, UpOptions};

const WAIT: Duration = Duration::from_secs(60);
const MANAGERS: [&str; 3] = ["manager-1", "manager-2", "manager-3"];

async fn client(lab: &Lab, name: &str) -> Result<Client, String> {
    let node = lab.node(name).map_err(|e| e.to_string())?;
    Client::connect(&node.socket_path())
        .await
        .map_err(|e| e.to_string())
}

async fn leader_client(lab: &Lab) -> Result<Client, String> {
    let leader = lab.status().await.leader.ok_or("no leader")?;
    client(lab, &leader).await
}

/// `name`'s own word on its store: `Some(error)` once a write failed, `None` while it writes.
async fn store_error(lab: &Lab, name: &str) -> Result<Option<String>, String> {
    let status = client(lab, name)
        .await?
        .status()
        .await
        .map_err(|e| e.to_string())?;
    let cluster = status.cluster.ok_or("not in a cluster")?;
    Ok(cluster.store_error)
}

fn spread(replicas: u32) -> ServiceSpecView {
    ServiceSpecView {
        driver: "process".into(),
        command: vec!["sleep".into(), "3600".into()],
        env: BTreeMap::new(),
        workdir: None,
        mode: "replicated".into(),
        replicas: Some(replicas),
        constraints: vec!["node.role==worker".into()],
        reserve_cpus_milli: 0,
        reserve_memory_bytes: 0,
        restart_condition: "any".into(),
        restart_delay_ms: 0,
        restart_max_attempts: None,
        restart_window_ms: None,
        on_isolation: "stop".into(),
        stop_grace_ms: 1_000,
        ..ServiceSpecView::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_hear_of_their_tasks_after_every_manager_s_raft_node_was_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let _down = DownOnDrop(state_dir.clone());
    let options = UpOptions {
        dir: state_dir,
        managers: 3,
        workers: 2,
        subnet: Subnet::new(77, 131).unwrap(),
        agent_args: [
            "--gossip-probe-period-ms=200",
            "--gossip-probe-rtt-ms=100",
            "--gossip-suspect-ms=1000",
            "--liveness-grace-ms=500",
            "--node-loss-grace-ms=2000",
            "--isolation-lease-ms=3000",
        ]
        .map(String::from)
        .to_vec(),
        ..UpOptions::default()
    };
    let mut progress = |message: &str| println!("up: {message}");
    let lab = Lab::up(options, &mut progress).await.unwrap();
    for name in MANAGERS {
        lab.set_failpoints(name, "store.commit=error").unwrap();
        // Writes reach every manager's store; the failpoint fails this one's.
        let mut key = 0;
        poll_until(WAIT, &format!("the store of {name} failing"), async || {
            key += 1;
            if let Ok(leader) = leader_client(&lab).await {
                let _ = leader.kv_put(format!("k{key}"), "v", None).await;
            }
            match store_error(&lab, name).await? {
                Some(error) => Ok(error),
                None => Err(format!("{name}'s store still writes")),
            }
        })
        .await
        .unwrap();
        lab.set_failpoints(name, "").unwrap();
        poll_until(
            WAIT,
            &format!("{name} healed and the cluster whole"),
            async || {
                if let Some(error) = store_error(&lab, name).await? {
                    return Err(format!("{name}'s store: {error}"));
                }
                let status = lab.status().await;
                let ready = status.ready();
                if ready == 5 && status.leader.is_some() {
                    Ok(())
                } else {
                    Err(format!(
                        "{ready} of 5 nodes ready, leader {:?}",
                        status.leader
                    ))
                }
            },
        )
        .await
        .unwrap();
    }
    // The leader may still be changing after the last heal: created once, whichever answer
    // came back.
    poll_until(WAIT, "the service created", async || {
        let leader = leader_client(&lab).await?;
        match leader.service_create("spread", spread(4)).await {
            Ok(_) => Ok(()),
            Err(error) => match leader
                .service_ps("spread", ReadConsistency::Linearizable)
                .await
            {
                Ok(_) => Ok(()),
                Err(_) => Err(error.to_string()),
            },
        }
    })
    .await
    .unwrap();
    poll_until(WAIT, "every task of the service running", async || {
        let tasks = leader_client(&lab)
            .await?
            .service_ps("spread", ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        let running = tasks
            .iter()
            .filter(|task| task.desired == "running" && task.state == "running")
            .count();
        if running == 4 {
            Ok(())
        } else {
            let states: Vec<(Option<u64>, &str)> = tasks
                .iter()
                .map(|task| (task.node_id, task.state.as_str()))
                .collect();
            Err(format!("{running} of 4 running: {states:?}"))
        }
    })
    .await
    .unwrap();
}
