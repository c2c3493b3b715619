//! The cluster lab on the docker backend, end to end: every node a container on the testnet's
//! own bridge network, from an image assembled from the local agent binary, driven through the
//! library as `testnet up --backend docker|kill|pause|resume|restart|partition|heal|down` drive
//! it.
//!
//! Without Docker the container tests print why and pass (only the test of the refusal runs).
//! Each test has its own state dir, hence its own network, containers and firewall table, so
//! they run in parallel with each other and with the local lab's tests; a guard runs `down`
//! when a test ends, passed or failed, so nothing is left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use symphony_ctl::proto::Role;
use symphony_testnet::harness::lab_tests::{
    DownOnDrop, put, settled, up, wait_caught_up, wait_status,
};
use symphony_testnet::harness::poll_until;
use symphony_testnet::lab::docker::DockerBackend;
use symphony_testnet::lab::{BackendKind, Lab, LabError, Nft, UpOptions};

const WAIT: Duration = Duration::from_secs(60);

/// The backend, or `None` (having said why) when Docker cannot be used here.
fn docker_or_skip() -> Option<DockerBackend> {
    match DockerBackend::detect() {
        Ok(backend) => Some(backend),
        Err(error) => {
            println!("skipped: {error}");
            None
        }
    }
}

fn options(dir: &Path, managers: usize, workers: usize) -> UpOptions {
    UpOptions {
        dir: dir.to_path_buf(),
        managers,
        workers,
        backend: BackendKind::Docker,
        ..UpOptions::default()
    }
}

/// Takes the testnet down and checks that nothing of it is left: no container, no network, no
/// firewall table, no state dir.
fn down_leaves_nothing(lab: Lab, backend: &DockerBackend) {
    let state = lab.state().clone();
    assert!(
        !backend.leftovers(&state).unwrap().is_empty(),
        "a running testnet has containers"
    );
    lab.down().unwrap();
    let left = backend.leftovers(&state).unwrap();
    assert!(left.is_empty(), "down left {left:?}");
    assert!(!state.dir.exists(), "down left {}", state.dir.display());
}

#[tokio::test]
async fn three_managers_in_containers_survive_kill_restart_pause_and_resume() {
    let Some(backend) = docker_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let _down = DownOnDrop(state_dir.clone());
    let mut lab = up(options(&state_dir, 3, 0)).await.unwrap();

    let status = lab.status().await;
    println!("{}", symphony_testnet::lab::table::render(&status));
    settled(&status).unwrap();
    assert_eq!(status.ready(), 3);
    // Containers, each on its own address of one private /24.
    let subnet = lab.state().nodes[0].ip.octets()[..3].to_vec();
    for node in &lab.state().nodes {
        assert!(node.handle.as_ref().unwrap().container().is_some());
        assert!(node.ip.is_private(), "{}", node.ip);
        assert_eq!(node.ip.octets()[..3], subnet[..]);
    }
    let first_leader = status.leader.clone().unwrap();

    // Killing the leader's container: it shows as killed, another manager takes over and
    // accepts writes.
    println!("{}", lab.kill(&first_leader).unwrap());
    let status = wait_status(&lab, WAIT, "a new leader after the kill", |status| {
        let killed = status.node(&first_leader).unwrap();
        if killed.process != "killed" {
            return Err(format!("{first_leader} is {}", killed.process));
        }
        match &status.leader {
            Some(leader) if *leader != first_leader => Ok(()),
            other => Err(format!("leader {other:?}")),
        }
    })
    .await
    .unwrap();
    let second_leader = status.leader.clone().unwrap();
    poll_until(WAIT, "a write to the new leader", async || {
        put(&lab, &second_leader, "lab/after-kill", "1").await
    })
    .await
    .unwrap();

    // Restarting it: the same container (same address, same config dir) is back, following.
    let before = lab.node(&first_leader).unwrap().handle.clone();
    lab.restart(&first_leader).await.unwrap();
    assert_eq!(lab.node(&first_leader).unwrap().handle, before);
    wait_status(&lab, WAIT, "everyone back after the restart", settled)
        .await
        .unwrap();

    // Pausing a follower: it shows as paused and the others keep a leader; unpausing it
    // brings it back.
    let status = lab.status().await;
    let follower = status
        .nodes
        .iter()
        .find(|node| !node.leader)
        .map(|node| node.name.clone())
        .unwrap();
    println!("{}", lab.pause(&follower).unwrap());
    wait_status(&lab, WAIT, "the paused node shown as paused", |status| {
        let paused = status.node(&follower).unwrap();
        match (paused.process.as_str(), &status.leader) {
            ("paused", Some(_)) => Ok(()),
            (process, leader) => Err(format!("{follower} is {process}, leader {leader:?}")),
        }
    })
    .await
    .unwrap();
    let leader = lab.status().await.leader.unwrap();
    poll_until(WAIT, "a write while a follower is paused", async || {
        put(&lab, &leader, "lab/while-paused", "2").await
    })
    .await
    .unwrap();
    println!("{}", lab.resume(&follower).unwrap());
    wait_status(&lab, WAIT, "everyone back after the resume", settled)
        .await
        .unwrap();

    down_leaves_nothing(lab, &backend);
}

#[tokio::test]
async fn a_partitioned_leader_is_replaced_and_catches_up_after_heal_workers_included() {
    let Some(backend) = docker_or_skip() else {
        return;
    };
    if let Err(reason) = Nft::detect() {
        println!("skipped: partitions are not available here: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let _down = DownOnDrop(state_dir.clone());
    let mut lab = up(options(&state_dir, 3, 1)).await.unwrap();
    let status = lab.status().await;
    println!("{}", symphony_testnet::lab::table::render(&status));
    settled(&status).unwrap();
    assert_eq!(status.ready(), 4);
    assert_eq!(status.node("worker-1").unwrap().role, Role::Worker);
    let old_leader = status.leader.unwrap();

    // Cut the leader off from the other two managers and the worker.
    let partition = match lab.partition(std::slice::from_ref(&old_leader)) {
        Ok(partition) => partition,
        Err(LabError::PartitionUnavailable { reason }) => {
            println!("skipped: partitions are not available here: {reason}");
            return;
        }
        Err(error) => panic!("partition failed: {error}"),
    };
    assert_eq!(partition.cuts.len(), 6);
    let status =
        wait_status(
            &lab,
            WAIT,
            "the majority electing a new leader",
            |status| match &status.leader {
                Some(leader) if *leader != old_leader => Ok(()),
                other => Err(format!("leader {other:?}")),
            },
        )
        .await
        .unwrap();
    assert_eq!(status.partition, Some(partition.sides.clone()));
    let new_leader = status.leader.unwrap();

    // The majority accepts writes; the cut-off node cannot commit one.
    let key = "lab/during-partition";
    let revision = poll_until(WAIT, "a write on the majority side", async || {
        put(&lab, &new_leader, key, "majority").await
    })
    .await
    .unwrap();
    assert!(
        put(&lab, &old_leader, "lab/minority", "x").await.is_err(),
        "the cut-off node committed a write"
    );

    // Heal: one leader again, and the old leader has the write.
    assert!(lab.heal().unwrap());
    wait_status(&lab, WAIT, "one leader again after heal", settled)
        .await
        .unwrap();
    wait_caught_up(&lab, WAIT, &old_leader, key, revision)
        .await
        .unwrap();

    // Down with a partition in place removes its rules too.
    lab.partition(std::slice::from_ref(&new_leader)).unwrap();
    assert!(
        backend
            .leftovers(lab.state())
            .unwrap()
            .iter()
            .any(|thing| thing.starts_with("nft table")),
        "the partition has a table"
    );
    down_leaves_nothing(lab, &backend);
}

/// The `testnet` command on a machine without Docker (a `PATH` with no `docker`, or one whose
/// `docker info` fails): one sentence, a failure exit, nothing created. Runs everywhere.
#[test]
fn without_docker_up_says_so_in_one_sentence_and_creates_nothing() {
    let bin = env!("CARGO_BIN_EXE_testnet");
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let no_docker = dir.path().join("empty-bin");
    let dead_docker = dir.path().join("dead-bin");
    std::fs::create_dir_all(&no_docker).unwrap();
    std::fs::create_dir_all(&dead_docker).unwrap();
    std::os::unix::fs::symlink("/bin/false", dead_docker.join("docker")).unwrap();
    for (path, expected) in [
        (&no_docker, "Docker is not installed here"),
        (&dead_docker, "the Docker daemon does not answer"),
    ] {
        let output = Command::new(bin)
            .args(["up", "--backend", "docker", "--dir"])
            .arg(&state_dir)
            .env("PATH", path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains("--backend local"), "{stderr}");
        assert!(
            !state_dir.exists(),
            "a refused up created {}",
            state_dir.display()
        );
    }
}
