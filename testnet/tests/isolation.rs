//! `--on-isolation stop` across a partition: a worker cut off from every manager stops the
//! service's task once its lease runs out, and the leader starts the replacement only after
//! that lease, so the slot never runs twice at once — checked by the tasks themselves: each
//! holds an exclusive lock on one file for as long as it runs, and one that finds it taken
//! leaves a mark.
//!
//! Needs partitions (root, nftables, cgroups): without them the test says so and passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use symphony_ctl::Client;
use symphony_ctl::proto::{ReadConsistency, ServiceSpecView, TaskInfo};
use symphony_testnet::harness::lab_tests::DownOnDrop;
use symphony_testnet::harness::{poll_until, task_processes};
use symphony_testnet::lab::nft::Nft;
use symphony_testnet::lab::{Lab, LabError, Subnet, UpOptions};

const WAIT: Duration = Duration::from_secs(60);

async fn leader_client(lab: &Lab) -> Result<Client, String> {
    let leader = lab.status().await.leader.ok_or("no leader")?;
    let node = lab.node(&leader).map_err(|e| e.to_string())?;
    Client::connect(&node.socket_path())
        .await
        .map_err(|e| e.to_string())
}

async fn tasks(lab: &Lab) -> Result<Vec<TaskInfo>, String> {
    leader_client(lab)
        .await?
        .service_ps("solo", ReadConsistency::Linearizable)
        .await
        .map_err(|e| e.to_string())
}

/// The node id of `name`, once it answered.
fn node_id(lab: &Lab, name: &str) -> u64 {
    lab.node(name).unwrap().node_id.unwrap()
}

/// Processes (not shims) running the service's task on worker `name` (flock and its sleep).
fn running_on(lab: &Lab, name: &str) -> usize {
    task_processes(&lab.node(name).unwrap().config_dir)
        .into_iter()
        .filter(|process| !process.is_shim())
        .count()
}

fn solo(lock: &Path, marks: &Path) -> ServiceSpecView {
    // `flock -n` takes the lock or fails at once: a second copy of the slot leaves a mark.
    let script = format!(
        "exec flock -n {} sleep 3600 || echo \"slot $SYMPHONY_SLOT ran twice (task $SYMPHONY_TASK_ID)\" >> {}",
        lock.display(),
        marks.display()
    );
    ServiceSpecView {
        driver: "process".into(),
        command: vec!["sh".into(), "-c".into(), script],
        env: BTreeMap::new(),
        workdir: None,
        mode: "replicated".into(),
        replicas: Some(1),
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

/// A running testnet with the `solo` service's slot running on one of its two workers.
struct Setup {
    lab: Lab,
    dir: tempfile::TempDir,
    _down: DownOnDrop,
    first: TaskInfo,
    /// The worker that runs the slot, and the other one.
    runs: &'static str,
    other: &'static str,
}

async fn setup(third_octet: u8) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let down = DownOnDrop(state_dir.clone());
    let options = UpOptions {
        dir: state_dir.clone(),
        managers: 3,
        workers: 2,
        subnet: Subnet::new(77, third_octet).unwrap(),
        agent_args: [
            "--gossip-probe-period-ms=200",
            "--gossip-probe-rtt-ms=100",
            "--gossip-suspect-ms=1000",
            "--liveness-grace-ms=500",
            "--node-loss-grace-ms=1000",
            "--isolation-lease-ms=3000",
        ]
        .map(String::from)
        .to_vec(),
        ..UpOptions::default()
    };
    let mut progress = |message: &str| println!("up: {message}");
    let lab = Lab::up(options, &mut progress).await.unwrap();
    let lock = dir.path().join("slot-0.lock");
    let marks = dir.path().join("ran-twice");
    leader_client(&lab)
        .await
        .unwrap()
        .service_create("solo", solo(&lock, &marks))
        .await
        .unwrap();
    let first = poll_until(WAIT, "the slot running", async || {
        let tasks = tasks(&lab).await?;
        match running(&tasks).as_slice() {
            [task] => Ok(task.clone()),
            _ => Err(format!("{tasks:?}")),
        }
    })
    .await
    .unwrap();
    let workers = ["worker-1", "worker-2"];
    let isolated = *workers
        .iter()
        .find(|name| Some(node_id(&lab, name)) == first.node_id)
        .unwrap();
    let other = *workers.iter().find(|name| **name != isolated).unwrap();
    poll_until(WAIT, "the task's process", async || {
        if running_on(&lab, isolated) > 0 {
            Ok(())
        } else {
            Err("not yet")
        }
    })
    .await
    .unwrap();
    Setup {
        lab,
        dir,
        _down: down,
        first,
        runs: isolated,
        other,
    }
}

fn running(tasks: &[TaskInfo]) -> Vec<TaskInfo> {
    tasks
        .iter()
        .filter(|task| task.desired == "running" && task.state == "running")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_isolated_worker_stops_its_slot_before_the_replacement_starts() {
    if let Err(reason) = Nft::detect() {
        println!("skipped: partitions are not available here: {reason}");
        return;
    }
    let Setup {
        mut lab,
        dir,
        _down,
        first,
        runs: isolated,
        other,
    } = setup(121).await;
    let marks = dir.path().join("ran-twice");

    match lab.partition(&[isolated.to_string()]) {
        Ok(_) => {}
        Err(LabError::PartitionUnavailable { reason }) => {
            println!("skipped: partitions are not available here: {reason}");
            return;
        }
        Err(error) => panic!("partition failed: {error}"),
    }
    // The replacement runs on the other worker, and the isolated one stopped its copy (its
    // lease ran out before the leader's wait for it did).
    let second = poll_until(WAIT, "the slot replaced on the other worker", async || {
        let tasks = tasks(&lab).await?;
        match running(&tasks).as_slice() {
            [task] if task.node_id == Some(node_id(&lab, other)) => Ok(task.clone()),
            _ => Err(format!("{tasks:?}")),
        }
    })
    .await
    .unwrap();
    assert_ne!(first.task_id, second.task_id);
    assert_eq!(
        running_on(&lab, isolated),
        0,
        "the isolated worker still runs its copy"
    );
    assert!(running_on(&lab, other) > 0);

    lab.heal().unwrap();
    poll_until(WAIT, "the isolated worker ready again", async || {
        let client = leader_client(&lab).await?;
        let nodes = client
            .node_list(ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        let node = nodes
            .iter()
            .find(|node| node.node_id == node_id(&lab, isolated))
            .ok_or("missing")?;
        if node.status == "ready" {
            Ok(())
        } else {
            Err(node.status.clone())
        }
    })
    .await
    .unwrap();
    // Back in touch, it does not start the old task again.
    let tasks = tasks(&lab).await.unwrap();
    assert_eq!(running(&tasks).len(), 1, "{tasks:?}");
    assert_eq!(running_on(&lab, isolated), 0);
    let twice = std::fs::read_to_string(&marks).unwrap_or_default();
    assert!(twice.is_empty(), "{twice}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_workers_slot_stops_by_its_lease_before_the_replacement_starts() {
    let Setup {
        mut lab,
        dir,
        _down,
        first,
        runs,
        other,
    } = setup(122).await;
    let marks = dir.path().join("ran-twice");
    // The agent dies; its task does not (tasks outlive their agent), so only the shim's hold
    // on the lease can stop it before the leader starts the replacement.
    lab.kill(runs).unwrap();
    let second = poll_until(WAIT, "the slot replaced on the other worker", async || {
        let tasks = tasks(&lab).await?;
        match running(&tasks).as_slice() {
            [task] if task.node_id == Some(node_id(&lab, other)) => Ok(task.clone()),
            _ => Err(format!("{tasks:?}")),
        }
    })
    .await
    .unwrap();
    assert_ne!(first.task_id, second.task_id);
    assert_eq!(
        running_on(&lab, runs),
        0,
        "the killed worker's task still runs"
    );
    lab.restart(runs).await.unwrap();
    poll_until(WAIT, "the restarted worker ready", async || {
        let client = leader_client(&lab).await?;
        let nodes = client
            .node_list(ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        let node = nodes
            .iter()
            .find(|node| node.node_id == node_id(&lab, runs))
            .ok_or("missing")?;
        if node.status == "ready" {
            Ok(())
        } else {
            Err(node.status.clone())
        }
    })
    .await
    .unwrap();
    assert_eq!(running(&tasks(&lab).await.unwrap()).len(), 1);
    assert_eq!(running_on(&lab, runs), 0);
    let twice = std::fs::read_to_string(&marks).unwrap_or_default();
    assert!(twice.is_empty(), "{twice}");
}
