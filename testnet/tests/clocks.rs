//! Clocks that are wrong: a manager restarted with its clock an hour behind, and managers whose
//! clocks are a day apart leading in turn. Neither may cost a node its place in the pool, mark
//! a healthy node down, move a task, or fill a log.
//!
//! The clock is shifted with libfaketime (Debian's `faketime` package) through the agent's
//! environment; only the wall clock moves, as an NTP step would move it (the monotonic clock,
//! which timers and leases use, is left alone). Without libfaketime the tests say so and pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use symphony_ctl::proto::{ReadConsistency, ServiceSpecView};
use symphony_testnet::harness::{Cluster, ClusterOptions, poll_until};

const TIMEOUT: Duration = Duration::from_secs(60);

const AGENT_ARGS: [&str; 10] = [
    "--gossip-probe-period-ms",
    "200",
    "--gossip-probe-rtt-ms",
    "100",
    "--gossip-suspect-ms",
    "2000",
    "--liveness-grace-ms",
    "1000",
    "--node-loss-grace-ms",
    "3000",
];

fn libfaketime() -> Option<PathBuf> {
    let found = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|path| path.exists());
    if found.is_none() {
        eprintln!("skipped: libfaketime is not installed (apt-get install faketime)");
    }
    found
}

/// The environment that runs an agent with its wall clock shifted by `offset` (libfaketime's
/// syntax: "-1h", "+1d").
fn shifted_clock(library: &std::path::Path, offset: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("LD_PRELOAD".to_string(), library.display().to_string()),
        ("FAKETIME".to_string(), offset.to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manager_restarted_with_its_clock_an_hour_behind_is_ready_within_seconds() {
    let Some(library) = libfaketime() else {
        return;
    };
    let mut cluster = Cluster::start_with(3, ClusterOptions::with_agent_args(&AGENT_ARGS))
        .await
        .unwrap();
    cluster.bootstrap_static().await.unwrap();
    let ids: Vec<u64> = (0..3)
        .map(|index| cluster.node_id(index).unwrap())
        .collect();
    poll_until(TIMEOUT, "every manager ready", async || {
        let statuses = cluster.node_statuses().await?;
        if ids
            .iter()
            .all(|id| statuses.get(id).map(String::as_str) == Some("ready"))
        {
            Ok(())
        } else {
            Err(format!("{statuses:?}"))
        }
    })
    .await
    .unwrap();
    // Stopped (it leaves the pool, which keeps its last life as down for a while) and
    // restarted at once with the clock an hour behind that life's.
    let shifted = 2;
    cluster
        .terminate(shifted, Duration::from_secs(10))
        .await
        .unwrap();
    cluster
        .set_env(shifted, shifted_clock(&library, "-1h"))
        .unwrap();
    cluster.restart(shifted).await.unwrap();
    let restarted = Instant::now();
    // Ready, and seen by the others' gossip, within seconds. The old life was still in
    // everyone's view, so the new one must have won the address at once.
    poll_until(
        Duration::from_secs(20),
        "the restarted manager ready and in gossip",
        async || {
            let statuses = cluster.node_statuses().await?;
            let ready = statuses.get(&ids[shifted]).map(String::as_str) == Some("ready");
            let leader = cluster.leader().await.map_err(|e| e.to_string())?;
            let status = cluster.status(leader).await.map_err(|e| e.to_string())?;
            let members = status
                .cluster
                .and_then(|cluster| cluster.gossip_members)
                .unwrap_or(0);
            if ready && members == 3 {
                Ok(())
            } else {
                Err(format!("{statuses:?}, {members} gossip members"))
            }
        },
    )
    .await
    .unwrap();
    eprintln!("ready {:?} after the restart", restarted.elapsed());
    cluster.put_any("after-the-restart", b"1").await.unwrap();
    cluster.wait_replicated_on(shifted).await.unwrap();
    // A handful of lines, not thousands: no rejoin fight.
    let log = cluster.run_log(shifted);
    let lines = log.lines().count();
    let rejoins = log.lines().filter(|line| line.contains("Rejoin")).count();
    assert!(rejoins <= 3, "{rejoins} rejoins:\n{log}");
    assert!(lines < 200, "{lines} lines since the restart:\n{log}");
}

/// A service everywhere, restarted at once.
fn sleeper(replicas: u32) -> ServiceSpecView {
    ServiceSpecView {
        driver: "process".into(),
        command: vec!["sleep".into(), "3600".into()],
        env: BTreeMap::new(),
        workdir: None,
        mode: "replicated".into(),
        replicas: Some(replicas),
        constraints: Vec::new(),
        reserve_cpus_milli: 0,
        reserve_memory_bytes: 0,
        restart_condition: "any".into(),
        restart_delay_ms: 0,
        restart_max_attempts: None,
        restart_window_ms: None,
        on_isolation: "keep".into(),
        stop_grace_ms: 2_000,
        ..ServiceSpecView::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn managers_a_day_apart_keep_nodes_ready_and_tasks_in_place() {
    let Some(library) = libfaketime() else {
        return;
    };
    let mut cluster = Cluster::start_with(3, ClusterOptions::with_agent_args(&AGENT_ARGS))
        .await
        .unwrap();
    // Every manager on its own clock before the cluster forms: a day ahead, an hour behind,
    // and right. Whoever leads, the others' clocks disagree with it.
    for (index, offset) in [(0, "+1d"), (1, "-1h")] {
        cluster
            .terminate(index, Duration::from_secs(10))
            .await
            .unwrap();
        cluster
            .set_env(index, shifted_clock(&library, offset))
            .unwrap();
        cluster.restart(index).await.unwrap();
    }
    cluster.bootstrap_static().await.unwrap();
    let ids: Vec<u64> = (0..3)
        .map(|index| cluster.node_id(index).unwrap())
        .collect();
    let all_ready = async |cluster: &Cluster, expected: &[u64]| -> Result<(), String> {
        let statuses = cluster.node_statuses().await?;
        if expected
            .iter()
            .all(|id| statuses.get(id).map(String::as_str) == Some("ready"))
        {
            Ok(())
        } else {
            Err(format!("{statuses:?}"))
        }
    };
    poll_until(TIMEOUT, "every manager ready", async || {
        all_ready(&cluster, &ids).await
    })
    .await
    .unwrap();
    let leader = cluster.leader().await.unwrap();
    let client = cluster.client(leader).await.unwrap();
    client.service_create("sleepers", sleeper(3)).await.unwrap();
    let running = async |cluster: &Cluster| -> Result<BTreeSet<u64>, String> {
        let leader = cluster.leader().await.map_err(|e| e.to_string())?;
        let tasks = cluster
            .client(leader)
            .await
            .map_err(|e| e.to_string())?
            .service_ps("sleepers", ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        let wanted: Vec<_> = tasks
            .iter()
            .filter(|task| task.desired == "running")
            .collect();
        let ids: BTreeSet<u64> = wanted
            .iter()
            .filter(|task| task.state == "running")
            .map(|task| task.task_id)
            .collect();
        if ids.len() == 3 && wanted.len() == 3 {
            Ok(ids)
        } else {
            Err(format!("{tasks:?}"))
        }
    };
    let tasks = poll_until(TIMEOUT, "three sleepers running", async || {
        running(&cluster).await
    })
    .await
    .unwrap();
    // Several liveness grace periods and leases: nothing is marked down, nothing moves.
    let watched = Instant::now() + Duration::from_secs(8);
    while Instant::now() < watched {
        all_ready(&cluster, &ids).await.unwrap();
        assert_eq!(running(&cluster).await.unwrap(), tasks, "a task moved");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The leader goes; the next one (with another clock) keeps the others ready and puts
    // only the lost node's task elsewhere.
    cluster.kill9(leader).unwrap();
    let survivors: Vec<u64> = (0..3)
        .filter(|index| *index != leader)
        .map(|index| ids[index])
        .collect();
    let after = poll_until(TIMEOUT, "three sleepers again", async || {
        all_ready(&cluster, &survivors).await?;
        running(&cluster).await
    })
    .await
    .unwrap();
    assert!(
        after.intersection(&tasks).count() >= 2,
        "tasks on surviving nodes were replaced: before {tasks:?}, after {after:?}"
    );
    let watched = Instant::now() + Duration::from_secs(5);
    while Instant::now() < watched {
        all_ready(&cluster, &survivors).await.unwrap();
        assert_eq!(running(&cluster).await.unwrap(), after, "a task moved");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
