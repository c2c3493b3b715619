//! Rolling updates end to end, with real agents running process tasks: an update replaces a
//! slot at a time and never takes the service below its count minus the parallelism; a
//! template that fails its health check rolls back by itself, or pauses; a leader killed in the
//! middle of an update leaves it to the next, which finishes it; `service rollback` goes back;
//! a task whose health check fails is failed and replaced by its restart policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use symphony_ctl::Client;
use symphony_ctl::proto::{
    HealthView, ReadConsistency, Role, ServiceInfo, ServicePatchView, ServiceSpecView, TaskInfo,
    UpdatePatchView, UpdateView,
};
use symphony_testnet::harness::{
    AgentOptions, AgentProcess, Cluster, ClusterOptions, FAST_GOSSIP_ARGS, fast_gossip_args,
    poll_until,
};

/// Generous: debug builds of several agents on two cores, tests in parallel.
const TIMEOUT: Duration = Duration::from_secs(90);

struct Fleet {
    cluster: Cluster,
    _workers: Vec<AgentProcess>,
}

async fn fleet(managers: usize, workers: usize) -> Fleet {
    let cluster = Cluster::formed(managers, ClusterOptions::with_agent_args(&FAST_GOSSIP_ARGS))
        .await
        .unwrap();
    let mut processes = Vec::new();
    for _ in 0..workers {
        let options = AgentOptions {
            extra_args: fast_gossip_args(),
            ..AgentOptions::default()
        };
        let (worker, _) = cluster.join_worker(options).await.unwrap();
        processes.push(worker);
    }
    let fleet = Fleet {
        cluster,
        _workers: processes,
    };
    poll_until(TIMEOUT, "every worker ready", async || {
        let nodes = fleet
            .client()
            .await
            .node_list(ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        let ready = nodes
            .iter()
            .filter(|node| node.role == Role::Worker && node.status == "ready")
            .count();
        if ready == workers {
            Ok(())
        } else {
            Err(format!("{ready} of {workers} ready"))
        }
    })
    .await
    .unwrap();
    fleet
}

impl Fleet {
    async fn client(&self) -> Client {
        let leader = self.cluster.leader().await.unwrap();
        self.cluster.client(leader).await.unwrap()
    }

    async fn ps(&self, name: &str) -> Result<Vec<TaskInfo>, String> {
        self.client()
            .await
            .service_ps(name, ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())
    }

    async fn inspect(&self, name: &str) -> Result<ServiceInfo, String> {
        self.client()
            .await
            .service_inspect(name, ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits until the update of `name` is in `state` (`completed`, `paused`, `rolled back`).
    async fn wait_update(&self, name: &str, state: &str) -> ServiceInfo {
        poll_until(TIMEOUT, &format!("{name}'s update {state}"), async || {
            let info = self.inspect(name).await?;
            match &info.update {
                Some(update) if update.state == state => Ok(info),
                other => Err(format!("{other:?}")),
            }
        })
        .await
        .unwrap()
    }

    /// Waits until `name` runs `count` ready tasks and nothing else it wants running.
    async fn wait_running(&self, name: &str, count: usize) -> Vec<TaskInfo> {
        poll_until(
            TIMEOUT,
            &format!("{count} running tasks of {name}"),
            async || {
                let tasks = self.ps(name).await?;
                let wanted: Vec<TaskInfo> = tasks
                    .iter()
                    .filter(|task| task.desired == "running")
                    .cloned()
                    .collect();
                if wanted.len() == count && wanted.iter().all(serving) {
                    Ok(wanted)
                } else {
                    Err(format!("{wanted:?}"))
                }
            },
        )
        .await
        .unwrap()
    }
}

/// Running, and healthy when it has a check.
fn serving(task: &TaskInfo) -> bool {
    task.state == "running"
        && task
            .health
            .as_deref()
            .is_none_or(|health| health == "healthy")
}

/// A health check that fails while the task's `MODE` is `bad`.
fn mode_check() -> HealthView {
    HealthView {
        command: vec!["sh".into(), "-c".into(), r#"test "$MODE" != bad"#.into()],
        interval_ms: 200,
        timeout_ms: 2_000,
        retries: 2,
        start_period_ms: 0,
    }
}

fn web(replicas: u32, update: UpdateView) -> ServiceSpecView {
    ServiceSpecView {
        driver: "process".into(),
        command: vec!["sleep".into(), "1000".into()],
        env: BTreeMap::new(),
        mode: "replicated".into(),
        replicas: Some(replicas),
        constraints: vec!["node.role==worker".into()],
        restart_condition: "any".into(),
        restart_delay_ms: 0,
        on_isolation: "keep".into(),
        stop_grace_ms: 2_000,
        health: Some(mode_check()),
        update,
        ..ServiceSpecView::default()
    }
}

fn env(key: &str, value: &str) -> ServicePatchView {
    ServicePatchView {
        env_set: BTreeMap::from([(key.to_string(), value.to_string())]),
        ..ServicePatchView::default()
    }
}

/// What a poll of an update saw.
struct Watched {
    /// The fewest tasks serving at any poll.
    fewest: usize,
    /// Whether tasks of two templates served side by side.
    mixed: bool,
    /// The tasks when the fewest served.
    low: Vec<TaskInfo>,
}

/// Polls `name` every 100 ms until its update reaches `state`.
async fn watch_update(fleet: &Fleet, name: &str, state: &str) -> Watched {
    let mut fewest = usize::MAX;
    let mut low = Vec::new();
    let mut mixed = false;
    let started = std::time::Instant::now();
    loop {
        assert!(
            started.elapsed() < TIMEOUT,
            "{name}'s update never got {state}"
        );
        let Ok(tasks) = fleet.ps(name).await else {
            continue;
        };
        let serving: Vec<&TaskInfo> = tasks.iter().filter(|task| serving(task)).collect();
        if serving.len() < fewest {
            low.clone_from(&tasks);
        }
        fewest = fewest.min(serving.len());
        let versions: BTreeSet<u64> = serving.iter().map(|task| task.template_version).collect();
        mixed |= versions.len() > 1;
        if let Ok(info) = fleet.inspect(name).await
            && info
                .update
                .as_ref()
                .is_some_and(|update| update.state == state)
        {
            return Watched { fewest, mixed, low };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_replaces_slot_by_slot_never_below_its_count_minus_the_parallelism_and_rolls_back_on_request()
 {
    let fleet = fleet(1, 2).await;
    let client = fleet.client().await;
    let update = UpdateView {
        parallelism: 1,
        monitor_ms: 1_000,
        ..UpdateView::default()
    };
    client.service_create("web", web(4, update)).await.unwrap();
    let before = fleet.wait_running("web", 4).await;
    assert!(before.iter().all(|task| task.template_version == 1));

    let info = client
        .service_update("web", env("GREETING", "hi"))
        .await
        .unwrap();
    assert_eq!(info.template_version, 2);
    let watched = watch_update(&fleet, "web", "completed").await;
    assert!(
        watched.fewest >= 3,
        "4 replicas, parallelism 1: {} served at one point: {:?}",
        watched.fewest,
        watched.low
    );
    assert!(
        watched.mixed,
        "rolling: old and new tasks served side by side"
    );
    let after = fleet.wait_running("web", 4).await;
    assert!(
        after.iter().all(|task| task.template_version == 2),
        "{after:?}"
    );
    let info = fleet.inspect("web").await.unwrap();
    let update = info.update.unwrap();
    assert_eq!((update.done, update.total), (4, 4));
    assert_eq!(
        info.spec.env.get("GREETING").map(String::as_str),
        Some("hi")
    );

    // Scaling is not an update: nothing is replaced.
    client
        .service_update(
            "web",
            ServicePatchView {
                replicas: Some(5),
                ..ServicePatchView::default()
            },
        )
        .await
        .unwrap();
    let scaled = fleet.wait_running("web", 5).await;
    let kept: BTreeSet<u64> = after.iter().map(|task| task.task_id).collect();
    assert!(
        kept.iter()
            .all(|id| scaled.iter().any(|task| task.task_id == *id))
    );
    assert_eq!(fleet.inspect("web").await.unwrap().template_version, 2);

    // Back to the spec before the update, rolling too, with the rollback settings.
    let info = client.service_rollback("web").await.unwrap();
    assert_eq!(info.update.unwrap().state, "rolling back");
    let watched = watch_update(&fleet, "web", "rolled back").await;
    assert!(
        watched.fewest >= 4,
        "5 replicas, parallelism 1: {} served at one point: {:?}",
        watched.fewest,
        watched.low
    );
    let back = fleet.wait_running("web", 5).await;
    assert!(
        back.iter().all(|task| task.template_version == 3),
        "{back:?}"
    );
    let info = fleet.inspect("web").await.unwrap();
    assert!(
        !info.spec.env.contains_key("GREETING"),
        "{:?}",
        info.spec.env
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_that_fails_its_health_check_rolls_back_by_itself_or_pauses() {
    let fleet = fleet(1, 2).await;
    let client = fleet.client().await;
    let on_failure = |action: &str| UpdateView {
        parallelism: 1,
        monitor_ms: 3_000,
        failure_action: action.into(),
        ..UpdateView::default()
    };
    client
        .service_create("auto", web(3, on_failure("rollback")))
        .await
        .unwrap();
    client
        .service_create("careful", web(3, on_failure("pause")))
        .await
        .unwrap();
    fleet.wait_running("auto", 3).await;
    fleet.wait_running("careful", 3).await;
    for name in ["auto", "careful"] {
        client
            .service_update(name, env("MODE", "bad"))
            .await
            .unwrap();
    }

    // Rolled back by itself, saying why; one slot was tried, the others never left the old spec.
    let info = fleet.wait_update("auto", "rolled back").await;
    let message = info.update.as_ref().unwrap().message.clone().unwrap();
    assert!(message.starts_with("update failed: task"), "{message}");
    assert!(message.contains("unhealthy"), "{message}");
    assert!(!info.spec.env.contains_key("MODE"));
    let tasks = fleet.ps("auto").await.unwrap();
    let tried: BTreeSet<Option<u32>> = tasks
        .iter()
        .filter(|task| task.template_version == 2)
        .map(|task| task.slot)
        .collect();
    assert_eq!(tried.len(), 1, "parallelism 1: one slot tried: {tasks:?}");
    assert!(
        tasks
            .iter()
            .any(|task| task.template_version == 2 && task.state == "failed"),
        "{tasks:?}"
    );
    let serving = fleet.wait_running("auto", 3).await;
    assert!(serving.iter().all(|task| task.template_version != 2));

    // Paused, saying why; the untried slots still run the old template.
    let info = fleet.wait_update("careful", "paused").await;
    let message = info.update.as_ref().unwrap().message.clone().unwrap();
    assert!(message.contains("unhealthy"), "{message}");
    let old = fleet
        .ps("careful")
        .await
        .unwrap()
        .into_iter()
        .filter(|task| task.template_version == 1 && serving_task(task))
        .count();
    assert_eq!(old, 2, "the update went no further");
    // A fixed template continues from the paused state to the end.
    client
        .service_update(
            "careful",
            ServicePatchView {
                env_unset: vec!["MODE".into()],
                update: UpdatePatchView {
                    monitor_ms: Some(0),
                    ..UpdatePatchView::default()
                },
                ..ServicePatchView::default()
            },
        )
        .await
        .unwrap();
    fleet.wait_update("careful", "completed").await;
    let done = fleet.wait_running("careful", 3).await;
    assert!(
        done.iter().all(|task| task.template_version == 3),
        "{done:?}"
    );
}

fn serving_task(task: &TaskInfo) -> bool {
    task.desired == "running" && serving(task)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_mid_update_leaves_the_update_to_the_next_one() {
    let mut fleet = fleet(3, 2).await;
    let client = fleet.client().await;
    let update = UpdateView {
        parallelism: 1,
        monitor_ms: 1_500,
        ..UpdateView::default()
    };
    client.service_create("web", web(4, update)).await.unwrap();
    fleet.wait_running("web", 4).await;
    client.service_update("web", env("V", "2")).await.unwrap();
    // Once the first slot is done, and before the last is:
    poll_until(TIMEOUT, "the update under way", async || {
        let info = fleet.inspect("web").await?;
        match info.update {
            Some(update) if update.state == "updating" && (1..3).contains(&update.done) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let leader = fleet.cluster.leader().await.unwrap();
    fleet.cluster.kill9(leader).unwrap();
    poll_until(TIMEOUT, "a new leader", async || {
        match fleet.cluster.leader().await {
            Ok(index) if index != leader => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let watched = watch_update(&fleet, "web", "completed").await;
    assert!(
        watched.fewest >= 3,
        "{} served at one point: {:?}",
        watched.fewest,
        watched.low
    );
    let after = fleet.wait_running("web", 4).await;
    assert!(
        after.iter().all(|task| task.template_version == 2),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_that_fails_its_health_check_fails_and_its_restart_policy_replaces_it() {
    let fleet = fleet(1, 1).await;
    let client = fleet.client().await;
    let dir = tempfile::tempdir().unwrap();
    let sick = dir.path().join("sick");
    let spec = ServiceSpecView {
        health: Some(HealthView {
            command: vec![
                "test".into(),
                "!".into(),
                "-e".into(),
                sick.display().to_string(),
            ],
            interval_ms: 200,
            timeout_ms: 2_000,
            retries: 2,
            start_period_ms: 0,
        }),
        restart_delay_ms: 200,
        ..web(1, UpdateView::default())
    };
    client.service_create("probe", spec).await.unwrap();
    let first = fleet.wait_running("probe", 1).await;
    assert_eq!(first[0].health.as_deref(), Some("healthy"));
    std::fs::write(&sick, b"").unwrap();
    let failed = poll_until(TIMEOUT, "the task failed by its check", async || {
        let tasks = fleet.ps("probe").await?;
        match tasks.iter().find(|task| task.task_id == first[0].task_id) {
            Some(task) if task.state == "failed" => Ok(task.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let error = failed.error.clone().unwrap_or_default();
    assert!(error.contains("unhealthy"), "{failed:?}");
    std::fs::remove_file(&sick).unwrap();
    let replaced = fleet.wait_running("probe", 1).await;
    assert_ne!(replaced[0].task_id, first[0].task_id);
    assert!(replaced[0].attempt >= 1, "{replaced:?}");
    assert_eq!(replaced[0].health.as_deref(), Some("healthy"));
}

/// Where `tasks` run: node id → tasks serving there.
fn spread(tasks: &[TaskInfo]) -> BTreeMap<u64, usize> {
    let mut on = BTreeMap::new();
    for task in tasks.iter().filter(|task| serving(task)) {
        *on.entry(task.node_id.unwrap_or_default()).or_default() += 1;
    }
    on
}

/// Tasks crowd on the one worker there was; a second joins. `--rebalance auto` spreads its
/// service by itself, a manual one stays until `service rebalance`; both move start-first,
/// never serving fewer than their count, and end two and two.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_spreads_tasks_onto_a_new_worker_start_first_on_request_or_by_itself() {
    let mut fleet = fleet(1, 1).await;
    let client = fleet.client().await;
    let update = UpdateView {
        parallelism: 1,
        monitor_ms: 500,
        ..UpdateView::default()
    };
    client
        .service_create("web", web(4, update.clone()))
        .await
        .unwrap();
    let auto = ServiceSpecView {
        rebalance: "auto".into(),
        ..web(4, update)
    };
    client.service_create("api", auto).await.unwrap();
    let web_before = fleet.wait_running("web", 4).await;
    fleet.wait_running("api", 4).await;
    assert_eq!(spread(&web_before).len(), 1, "{web_before:?}");

    let options = AgentOptions {
        extra_args: fast_gossip_args(),
        ..AgentOptions::default()
    };
    let (second, _) = fleet.cluster.join_worker(options).await.unwrap();
    fleet._workers.push(second);
    let watched = watch_update(&fleet, "api", "rebalanced").await;
    assert!(
        watched.fewest >= 4,
        "start-first: {} served at one point: {:?}",
        watched.fewest,
        watched.low
    );
    let api = fleet.wait_running("api", 4).await;
    assert_eq!(
        spread(&api).values().copied().collect::<Vec<_>>(),
        [2, 2],
        "{api:?}"
    );
    // The manual service has not moved.
    let web_now = fleet.wait_running("web", 4).await;
    assert_eq!(spread(&web_now).len(), 1, "{web_now:?}");

    let info = client.service_rebalance("web").await.unwrap();
    assert_eq!(info.update.unwrap().state, "rebalancing");
    assert_eq!(info.template_version, 1, "a rebalance keeps the template");
    let watched = watch_update(&fleet, "web", "rebalanced").await;
    assert!(
        watched.fewest >= 4,
        "start-first: {} served at one point: {:?}",
        watched.fewest,
        watched.low
    );
    let web_after = fleet.wait_running("web", 4).await;
    assert_eq!(
        spread(&web_after).values().copied().collect::<Vec<_>>(),
        [2, 2],
        "{web_after:?}"
    );
    // A global service has nothing to rebalance, and says so.
    let global = ServiceSpecView {
        mode: "global".into(),
        replicas: None,
        ..web(1, UpdateView::default())
    };
    client.service_create("probe", global).await.unwrap();
    let refused = client.service_rebalance("probe").await.unwrap_err();
    assert!(refused.to_string().contains("global"), "{refused}");
}
