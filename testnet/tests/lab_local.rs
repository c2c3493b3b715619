//! The cluster lab on the local backend, end to end: real detached agents on their own loopback
//! addresses, driven through the library as `testnet up|kill|pause|resume|restart|partition|
//! heal|down` drive it.
//!
//! Each test has its own subnet (127.77.1xx) and state dir, so the tests run in parallel, and a
//! guard runs `down` when the test ends, passed or failed, so no agent or firewall rule is left
//! behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use symphony_ctl::proto::Role;
use symphony_testnet::harness::lab_tests::{
    DownOnDrop, put, settled, up, wait_caught_up, wait_status,
};
use symphony_testnet::harness::poll_until;
use symphony_testnet::lab::local::LocalBackend;
use symphony_testnet::lab::nft::{Family, Nft};
use symphony_testnet::lab::{Lab, LabError, Subnet, UpOptions};
use symphony_testnet::procfs;

const WAIT: Duration = Duration::from_secs(60);

fn options(dir: &Path, third_octet: u8, managers: usize, workers: usize) -> UpOptions {
    UpOptions {
        dir: dir.to_path_buf(),
        managers,
        workers,
        subnet: Subnet::new(77, third_octet).unwrap(),
        ..UpOptions::default()
    }
}

fn pids(lab: &Lab) -> Vec<u32> {
    lab.state()
        .nodes
        .iter()
        .filter_map(|node| node.pid())
        .collect()
}

fn process_exists(pid: u32) -> bool {
    // A zombie is gone for our purposes.
    procfs::stat(pid).is_ok_and(|stat| stat.state != 'Z')
}

#[tokio::test]
async fn three_managers_survive_kill_restart_pause_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let _down = DownOnDrop(state_dir.clone());
    let mut lab = up(options(&state_dir, 101, 3, 0)).await.unwrap();

    let status = lab.status().await;
    println!("{}", symphony_testnet::lab::table::render(&status));
    settled(&status).unwrap();
    assert_eq!(status.nodes.len(), 3);
    assert_eq!(status.ready(), 3);
    let first_leader = status.leader.clone().unwrap();

    // Killing the leader: it shows as killed, and another manager takes over.
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
    put(&lab, &second_leader, "lab/after-kill", "1")
        .await
        .unwrap();

    // Restarting it: the same node (same config dir) is back, following.
    lab.restart(&first_leader).await.unwrap();
    wait_status(&lab, WAIT, "everyone back after the restart", settled)
        .await
        .unwrap();

    // Pausing a follower: it shows as paused and the others keep a leader; resuming it brings
    // it back.
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
    put(&lab, &leader, "lab/while-paused", "2").await.unwrap();
    println!("{}", lab.resume(&follower).unwrap());
    wait_status(&lab, WAIT, "everyone back after the resume", settled)
        .await
        .unwrap();

    // Down removes every process and the state dir.
    let pids = pids(&lab);
    assert_eq!(pids.len(), 3);
    lab.down().unwrap();
    for pid in pids {
        assert!(!process_exists(pid), "agent {pid} survived down");
    }
    assert!(!state_dir.exists(), "down left {}", state_dir.display());
}

#[tokio::test]
async fn a_partitioned_leader_is_replaced_and_catches_up_after_heal() {
    if let Err(reason) = Nft::detect() {
        println!("skipped: partitions are not available here: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let _down = DownOnDrop(state_dir.clone());
    let mut lab = up(options(&state_dir, 102, 3, 0)).await.unwrap();
    let table = LocalBackend::table(lab.state());
    let old_leader = lab.status().await.leader.unwrap();

    // Cut the leader off from the other two.
    let partition = match lab.partition(std::slice::from_ref(&old_leader)) {
        Ok(partition) => partition,
        Err(LabError::PartitionUnavailable { reason }) => {
            println!("skipped: partitions are not available here: {reason}");
            return;
        }
        Err(error) => panic!("partition failed: {error}"),
    };
    assert_eq!(partition.cuts.len(), 4);
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
    assert_eq!(
        status.partition,
        Some(partition.sides.clone()),
        "the status shows the partition"
    );
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

    // Heal: the old leader follows the new one and has the write.
    assert!(lab.heal().unwrap());
    assert!(
        !Nft::detect().unwrap().exists(Family::Inet, &table),
        "heal left {table}"
    );
    wait_status(&lab, WAIT, "one leader again after heal", settled)
        .await
        .unwrap();
    wait_caught_up(&lab, WAIT, &old_leader, key, revision)
        .await
        .unwrap();

    // Down with a partition in place removes the table too.
    lab.partition(std::slice::from_ref(&new_leader)).unwrap();
    assert!(Nft::detect().unwrap().exists(Family::Inet, &table));
    lab.down().unwrap();
    assert!(
        !Nft::detect().unwrap().exists(Family::Inet, &table),
        "down left {table}"
    );
}

#[tokio::test]
async fn refusals_are_clear_and_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let _down = DownOnDrop(state_dir.clone());
    let mut progress = |message: &str| println!("up: {message}");

    // (A machine without Docker asking for `--backend docker`: see tests/lab_docker.rs.)

    // An address of the subnet is taken: said before anything starts.
    let _taken = TcpListener::bind("127.77.103.2:27242").unwrap();
    let _taken_udp = UdpSocket::bind("127.77.103.1:27242").unwrap();
    let mut busy = options(&state_dir, 103, 2, 0);
    busy.agent_bin = Some(PathBuf::from("/bin/true"));
    let error = Lab::up(busy, &mut progress).await.unwrap_err();
    assert!(matches!(error, LabError::AddressInUse { .. }), "{error}");
    assert!(!state_dir.join("state.json").exists());

    // No testnet in a dir: commands say how to start one.
    let error = Lab::open(&state_dir).unwrap_err();
    assert!(matches!(error, LabError::NoLab { .. }), "{error}");
    assert!(error.to_string().contains("testnet up"), "{error}");
}

#[tokio::test]
async fn a_second_up_in_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let _down = DownOnDrop(state_dir.clone());
    let lab = up(options(&state_dir, 104, 1, 0)).await.unwrap();
    settled(&lab.status().await).unwrap();
    let mut progress = |message: &str| println!("up: {message}");
    let error = Lab::up(options(&state_dir, 105, 1, 0), &mut progress)
        .await
        .unwrap_err();
    assert!(matches!(error, LabError::AlreadyUp { .. }), "{error}");
    // The first testnet is untouched, and other handles see it.
    let other = Lab::open(&state_dir).unwrap();
    settled(&other.status().await).unwrap();
}

/// Workers join with the worker token through manager-1 and show as ready workers.
#[tokio::test]
async fn workers_join_and_show_as_workers() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let _down = DownOnDrop(state_dir.clone());
    let lab = up(options(&state_dir, 106, 1, 2)).await.unwrap();
    let status = lab.status().await;
    println!("{}", symphony_testnet::lab::table::render(&status));
    assert_eq!(status.ready(), 3);
    let workers: Vec<&str> = status
        .nodes
        .iter()
        .filter(|node| node.role == Role::Worker)
        .map(|node| node.name.as_str())
        .collect();
    assert_eq!(workers, ["worker-1", "worker-2"]);
}
