//! The docker driver end to end: real agents running services as containers of this machine's
//! Docker engine, from a tiny image assembled offline (`symphony/probe:1`: a shell and two
//! tools; nothing is ever pulled). A docker service runs in labelled containers on the node
//! with an engine only, its output is in `service logs`, a node without an engine takes no
//! docker task (and `explain` says so), a missing image rejects its task with a clear error,
//! health checks run in the container (or come from the image), a killed container is a failed
//! task replaced in a new container, a restarted worker adopts its running containers and
//! removes those of tasks it no longer has, an `--on-isolation stop` container stops without
//! its agent, and a node whose agent finds an engine at its next start takes docker tasks. A
//! second test cuts a worker off its engine (through a proxy of the engine's socket) and sees
//! its task fail with a clear error.
//!
//! Without a Docker engine (or `ldd` to assemble the image) the test says why and passes.
//! A guard removes every container of the test's nodes when it ends, passed or failed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use symphony_ctl::Client;
use symphony_ctl::proto::{
    HealthView, ReadConsistency, Response, Role, ServicePatchView, ServiceSpecView, TaskInfo,
    UpdatePatchView,
};
use symphony_testnet::harness::{
    AgentOptions, AgentProcess, Cluster, ClusterOptions, FAST_GOSSIP_ARGS, fast_gossip_args,
    poll_until,
};
use symphony_testnet::lab::docker::{Docker, ensure_probe_image};

const IMAGE: &str = "symphony/probe:1";
/// The probe with a `HEALTHCHECK` (`cat /tmp/ready`), built from it offline.
const HEALTH_IMAGE: &str = "symphony/probe-health:1";
const TIMEOUT: Duration = Duration::from_secs(90);

/// Removes the containers of the test's nodes when dropped.
struct RemoveContainers {
    docker: Docker,
    node_ids: Vec<u64>,
}

impl Drop for RemoveContainers {
    fn drop(&mut self) {
        for id in &self.node_ids {
            for (container, _) in containers(&self.docker, *id) {
                let _ = self.docker.output(&["rm", "-f", &container]);
            }
        }
    }
}

/// The containers of node `node_id`: id → (name, state, task id) as `docker ps -a` lists them.
fn containers(docker: &Docker, node_id: u64) -> BTreeMap<String, (String, String, String)> {
    let filter = format!("label=io.symphony.node-id={node_id}");
    let format = "{{.ID}} {{.Names}} {{.State}} {{.Label \"io.symphony.task-id\"}}";
    let listed = docker
        .run(&[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &filter,
            "--format",
            format,
        ])
        .unwrap();
    listed
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let id = fields.next()?.to_string();
            let name = fields.next()?.to_string();
            let state = fields.next()?.to_string();
            let task = fields.next().unwrap_or_default().to_string();
            Some((id, (name, state, task)))
        })
        .collect()
}

fn docker_service(replicas: u32, image: &str, script: &str) -> ServiceSpecView {
    ServiceSpecView {
        driver: "docker".into(),
        image: Some(image.into()),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        env: BTreeMap::from([("VERSION".into(), "1".into())]),
        mode: "replicated".into(),
        replicas: Some(replicas),
        constraints: vec!["node.role==worker".into()],
        restart_condition: "any".into(),
        restart_delay_ms: 0,
        on_isolation: "keep".into(),
        stop_grace_ms: 3_000,
        ..ServiceSpecView::default()
    }
}

/// Prints, then counts until it is stopped (SIGTERM ends it between two sleeps).
const TALKER: &str = "trap 'exit 0' TERM; echo started slot $SYMPHONY_SLOT version $VERSION; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.5; done";

async fn leader_client(cluster: &Cluster) -> Client {
    let leader = cluster.leader().await.unwrap();
    cluster.client(leader).await.unwrap()
}

async fn ps(cluster: &Cluster, name: &str) -> Vec<TaskInfo> {
    leader_client(cluster)
        .await
        .service_ps(name, ReadConsistency::Linearizable)
        .await
        .unwrap()
}

/// Waits until `name` has exactly `count` tasks that should run and do; returns them.
async fn wait_running(cluster: &Cluster, name: &str, count: usize) -> Vec<TaskInfo> {
    poll_until(
        TIMEOUT,
        &format!("{count} running tasks of {name}"),
        async || {
            let tasks = ps(cluster, name).await;
            let wanted: Vec<TaskInfo> = tasks
                .iter()
                .filter(|task| task.desired == "running")
                .cloned()
                .collect();
            let running = wanted.iter().filter(|task| task.state == "running").count();
            if running == count && wanted.len() == count {
                Ok(wanted)
            } else {
                Err(format!("{tasks:?}"))
            }
        },
    )
    .await
    .unwrap()
}

/// Waits until node `node_id`'s running containers are exactly those of `tasks`; returns them.
async fn wait_containers(
    docker: &Docker,
    node_id: u64,
    tasks: &BTreeSet<u64>,
) -> BTreeMap<String, (String, String, String)> {
    poll_until(
        TIMEOUT,
        "the node's containers are its tasks'",
        async || {
            let listed = containers(docker, node_id);
            let running: BTreeSet<u64> = listed
                .values()
                .filter(|(_, state, _)| state == "running")
                .filter_map(|(_, _, task)| task.parse().ok())
                .collect();
            if &running == tasks && listed.len() == tasks.len() {
                Ok(listed)
            } else {
                Err(format!("{listed:?}"))
            }
        },
    )
    .await
    .unwrap()
}

/// Waits until the one running task of `name` has health `health`.
async fn wait_health(cluster: &Cluster, name: &str, health: &str) {
    poll_until(TIMEOUT, &format!("{name} {health}"), async || {
        let tasks = ps(cluster, name).await;
        match tasks.first() {
            Some(task) if task.state == "running" && task.health.as_deref() == Some(health) => {
                Ok(())
            }
            _ => Err(format!("{tasks:?}")),
        }
    })
    .await
    .unwrap();
}

/// Builds `tag` from the probe image with a `HEALTHCHECK`, with the classic builder (which
/// needs no registry for a local base image); says why it could not.
fn build_health_image(tag: &str) -> Result<(), String> {
    use std::io::Write;
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", tag])
        .output()
        .map_err(|error| error.to_string())?;
    if present.status.success() {
        return Ok(());
    }
    let mut build = std::process::Command::new("docker")
        .args(["build", "-q", "-t", tag, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|error| error.to_string())?;
    let dockerfile = format!(
        "FROM {IMAGE}\nHEALTHCHECK --interval=1s --timeout=5s --retries=1 CMD [\"/bin/cat\", \"/tmp/ready\"]\n"
    );
    build
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(dockerfile.as_bytes())
        .map_err(|error| error.to_string())?;
    let output = build
        .wait_with_output()
        .map_err(|error| error.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

async fn log_texts(client: &Client, name: &str) -> Vec<String> {
    log_lines(client, name)
        .await
        .into_iter()
        .map(|(_, text)| text)
        .collect()
}

/// Every line of `name`'s logs, with its task.
async fn log_lines(client: &Client, name: &str) -> Vec<(u64, String)> {
    let mut stream = client.service_logs(name, None, false).await.unwrap();
    let mut lines = Vec::new();
    while let Some(item) = stream.next().await {
        if let Ok(Response::Logs(batch)) = item {
            lines.extend(batch.into_iter().map(|line| (line.task_id, line.text)));
        }
    }
    lines
}

/// Each task's ticks, in the order its log has them.
fn ticks(lines: &[(u64, String)]) -> BTreeMap<u64, Vec<u64>> {
    let mut ticks: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (task, text) in lines {
        if let Some(n) = text.strip_prefix("tick ").and_then(|n| n.parse().ok()) {
            ticks.entry(*task).or_default().push(n);
        }
    }
    ticks
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_services_run_log_restart_reject_missing_images_and_survive_a_worker_restart() {
    let docker = match Docker::detect() {
        Ok(docker) => docker,
        Err(reason) => {
            eprintln!("skipping the docker driver test: {reason}");
            return;
        }
    };
    if let Err(error) = ensure_probe_image(&docker, IMAGE) {
        eprintln!("skipping the docker driver test: cannot assemble {IMAGE}: {error}");
        return;
    }

    let started = std::time::Instant::now();
    let mut cluster = Cluster::start_with(1, ClusterOptions::with_agent_args(&FAST_GOSSIP_ARGS))
        .await
        .unwrap();
    cluster.bootstrap_dynamic().await.unwrap();
    let client = leader_client(&cluster).await;
    let token = client.token_show(Role::Worker).await.unwrap().token;
    let manager_addr = cluster.remote_addr(0).unwrap().to_string();
    // Worker 0 has the engine; worker 1 is pointed at a socket where none answers.
    let mut workers = Vec::new();
    let mut worker_ids = Vec::new();
    for socket in [None, Some("/nonexistent/docker.sock")] {
        let mut options = AgentOptions {
            extra_args: fast_gossip_args(),
            ..AgentOptions::default()
        };
        if let Some(socket) = socket {
            options.extra_args.push("--docker-socket".into());
            options.extra_args.push(socket.into());
        }
        let worker = AgentProcess::start_with(options).await.unwrap();
        let joined = worker
            .client()
            .await
            .unwrap()
            .join(&token, &manager_addr)
            .await
            .unwrap();
        worker_ids.push(joined.node_id);
        workers.push(worker);
    }
    let _cleanup = RemoveContainers {
        docker: docker.clone(),
        node_ids: worker_ids.clone(),
    };
    let with_engine = worker_ids[0];
    // Each node says whether it has an engine.
    let nodes = client
        .node_list(ReadConsistency::Linearizable)
        .await
        .unwrap();
    let engines: BTreeMap<u64, bool> = nodes
        .iter()
        .map(|node| (node.node_id, node.docker.is_some()))
        .collect();
    assert!(engines[&worker_ids[0]]);
    assert!(!engines[&worker_ids[1]]);

    eprintln!(
        "docker driver test: docker service created ({:?})",
        started.elapsed()
    );
    // A docker service runs in containers of the engine's node only, labelled as its tasks.
    client
        .service_create("dockweb", docker_service(2, IMAGE, TALKER))
        .await
        .unwrap();
    let first = wait_running(&cluster, "dockweb", 2).await;
    assert!(
        first.iter().all(|task| task.node_id == Some(with_engine)),
        "only the node with an engine takes docker tasks: {first:?}"
    );
    let first_ids: BTreeSet<u64> = first.iter().map(|task| task.task_id).collect();
    let listed = wait_containers(&docker, with_engine, &first_ids).await;
    for (name, _, task) in listed.values() {
        assert!(
            name.starts_with("symphony-dockweb-") && name.ends_with(&format!("-{task}")),
            "{name}"
        );
    }
    assert!(containers(&docker, worker_ids[1]).is_empty());

    eprintln!(
        "docker driver test: containers running ({:?})",
        started.elapsed()
    );
    // Its output is in `service logs`.
    poll_until(TIMEOUT, "both containers' first lines", async || {
        let texts = log_texts(&client, "dockweb").await;
        let started: BTreeSet<&str> = texts
            .iter()
            .filter(|text| text.starts_with("started slot"))
            .map(String::as_str)
            .collect();
        if started.contains("started slot 0 version 1")
            && started.contains("started slot 1 version 1")
        {
            Ok(())
        } else {
            Err(format!("{texts:?}"))
        }
    })
    .await
    .unwrap();

    eprintln!("docker driver test: logs seen ({:?})", started.elapsed());
    // An update replaces the containers, rolling: new tasks in new containers with the new
    // environment, the old containers removed.
    client
        .service_update(
            "dockweb",
            ServicePatchView {
                env_set: BTreeMap::from([("VERSION".to_string(), "2".to_string())]),
                update: UpdatePatchView {
                    monitor_ms: Some(500),
                    ..UpdatePatchView::default()
                },
                ..ServicePatchView::default()
            },
        )
        .await
        .unwrap();
    poll_until(TIMEOUT, "the docker update completed", async || {
        let info = client
            .service_inspect("dockweb", ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        match info.update {
            Some(update) if update.state == "completed" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let updated = wait_running(&cluster, "dockweb", 2).await;
    assert!(
        updated.iter().all(|task| task.template_version == 2),
        "{updated:?}"
    );
    let updated_ids: BTreeSet<u64> = updated.iter().map(|task| task.task_id).collect();
    assert!(updated_ids.is_disjoint(&first_ids));
    // From here on, the containers are the new tasks'.
    let listed = wait_containers(&docker, with_engine, &updated_ids).await;
    poll_until(TIMEOUT, "the new containers' first lines", async || {
        let texts = log_texts(&client, "dockweb").await;
        let count = texts
            .iter()
            .filter(|text| text.starts_with("started slot") && text.ends_with("version 2"))
            .count();
        if count == 2 {
            Ok(())
        } else {
            Err(format!("{texts:?}"))
        }
    })
    .await
    .unwrap();
    eprintln!("docker driver test: updated ({:?})", started.elapsed());
    // The node without an engine is named for it in `explain`.
    let pinned = ServiceSpecView {
        constraints: vec![format!("node.id=={}", worker_ids[1])],
        replicas: Some(1),
        ..docker_service(1, IMAGE, TALKER)
    };
    client.service_create("nodocker", pinned).await.unwrap();
    let explained = poll_until(TIMEOUT, "the pending docker task explained", async || {
        let info = client
            .service_explain("nodocker", ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        match info.pending.first() {
            Some(task) if task.reason.is_some() => Ok(info),
            _ => Err(format!("{info:?}")),
        }
    })
    .await
    .unwrap();
    let verdict = explained.pending[0]
        .nodes
        .iter()
        .find(|node| node.node_id == worker_ids[1])
        .unwrap();
    assert!(
        verdict
            .failures
            .iter()
            .any(|failure| failure.filter == "driver"
                && failure.detail == "no Docker engine on this node"),
        "{verdict:?}"
    );

    eprintln!(
        "docker driver test: explain says no engine ({:?})",
        started.elapsed()
    );
    // A missing image is the task's error, at once: never a pull, never a hang.
    let missing = ServiceSpecView {
        restart_condition: "none".into(),
        ..docker_service(1, "symphony/absent:1", TALKER)
    };
    client.service_create("noimage", missing).await.unwrap();
    let rejected = poll_until(TIMEOUT, "the task without its image rejected", async || {
        let tasks = ps(&cluster, "noimage").await;
        match tasks.first() {
            Some(task) if task.state == "rejected" => Ok(task.clone()),
            _ => Err(format!("{tasks:?}")),
        }
    })
    .await
    .unwrap();
    assert_eq!(
        rejected.error.as_deref(),
        Some("image symphony/absent:1 is not present on this node (Symphony does not pull images)")
    );
    client.service_remove("noimage").await.unwrap();

    eprintln!(
        "docker driver test: missing image rejected ({:?})",
        started.elapsed()
    );
    // Health checks of the spec run inside the container: a passing one makes the task
    // healthy, a failing one fails it.
    let ready = "trap 'exit 0' TERM; echo ok > /tmp/ready; while :; do sleep 0.5; done";
    let check = |path: &str| HealthView {
        command: vec!["/bin/cat".into(), path.into()],
        interval_ms: 300,
        timeout_ms: 5_000,
        retries: 1,
        start_period_ms: 0,
    };
    let healthy = ServiceSpecView {
        health: Some(check("/tmp/ready")),
        ..docker_service(1, IMAGE, ready)
    };
    client.service_create("dockhealth", healthy).await.unwrap();
    let sick = ServiceSpecView {
        health: Some(check("/tmp/never")),
        restart_condition: "none".into(),
        ..docker_service(1, IMAGE, ready)
    };
    client.service_create("docksick", sick).await.unwrap();
    wait_health(&cluster, "dockhealth", "healthy").await;
    let failed = poll_until(TIMEOUT, "the unhealthy task failed", async || {
        let tasks = ps(&cluster, "docksick").await;
        match tasks.first() {
            Some(task) if task.state == "failed" => Ok(task.clone()),
            _ => Err(format!("{tasks:?}")),
        }
    })
    .await
    .unwrap();
    let error = failed.error.unwrap_or_default();
    assert!(
        error.starts_with("unhealthy: the health check exited with 1"),
        "{error}"
    );
    // Without a check in the spec, the image's own HEALTHCHECK is what the engine says.
    match build_health_image(HEALTH_IMAGE) {
        Ok(()) => {
            let by_image = docker_service(1, HEALTH_IMAGE, ready);
            client.service_create("dockimage", by_image).await.unwrap();
            wait_health(&cluster, "dockimage", "healthy").await;
            client.service_remove("dockimage").await.unwrap();
        }
        Err(reason) => eprintln!("skipping the image health check part: {reason}"),
    }
    client.service_remove("dockhealth").await.unwrap();
    client.service_remove("docksick").await.unwrap();
    eprintln!(
        "docker driver test: health checked ({:?})",
        started.elapsed()
    );

    // A container killed from outside is a failed task (its exit code from the engine), which
    // the restart policy replaces with a new task in a new container; the old one is removed.
    let (victim, (_, _, victim_task)) = listed.iter().next().unwrap();
    docker.run(&["kill", victim.as_str()]).unwrap();
    let victim_task: u64 = victim_task.parse().unwrap();
    let failed = poll_until(TIMEOUT, "the killed container's task failed", async || {
        let tasks = ps(&cluster, "dockweb").await;
        match tasks.iter().find(|task| task.task_id == victim_task) {
            Some(task) if task.state == "failed" => Ok(task.clone()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    assert_eq!(failed.exit_code, Some(137), "{failed:?}");
    assert_eq!(failed.error.as_deref(), Some("exited with code 137"));
    let second = wait_running(&cluster, "dockweb", 2).await;
    let second_ids: BTreeSet<u64> = second.iter().map(|task| task.task_id).collect();
    assert!(!second_ids.contains(&victim_task));
    let replaced = wait_containers(&docker, with_engine, &second_ids).await;
    assert!(
        !replaced.contains_key(victim),
        "the killed container was removed"
    );
    poll_until(TIMEOUT, "the new container's output", async || {
        let texts = log_texts(&client, "dockweb").await;
        if texts
            .iter()
            .filter(|text| text.starts_with("started slot"))
            .count()
            >= 3
        {
            Ok(())
        } else {
            Err(format!("{texts:?}"))
        }
    })
    .await
    .unwrap();

    eprintln!(
        "docker driver test: killed container replaced ({:?})",
        started.elapsed()
    );
    // A restarted worker adopts its running containers: same tasks, same containers.
    workers[0].kill9().unwrap();
    workers[0].respawn().unwrap();
    workers[0].wait_ready().await.unwrap();
    let adopted = wait_running(&cluster, "dockweb", 2).await;
    let adopted_ids: BTreeSet<u64> = adopted.iter().map(|task| task.task_id).collect();
    assert_eq!(adopted_ids, second_ids);
    let after = wait_containers(&docker, with_engine, &second_ids).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        replaced.keys().collect::<Vec<_>>(),
        "the same containers, none new"
    );
    eprintln!(
        "docker driver test: containers adopted ({:?})",
        started.elapsed()
    );
    // The output copy picks up where it was: new ticks come, none is copied twice.
    let before = ticks(&log_lines(&client, "dockweb").await);
    poll_until(TIMEOUT, "new ticks after the adoption", async || {
        let now = ticks(&log_lines(&client, "dockweb").await);
        for task in &second_ids {
            let seen = now.get(task).cloned().unwrap_or_default();
            assert!(
                seen.windows(2).all(|pair| pair[0] < pair[1]),
                "task {task}'s ticks repeat or go back: {seen:?}"
            );
            let last_before = before
                .get(task)
                .and_then(|t| t.last().copied())
                .unwrap_or(0);
            if seen.last().copied().unwrap_or(0) < last_before + 3 {
                return Err(format!("task {task}: {seen:?}"));
            }
        }
        Ok(())
    })
    .await
    .unwrap();

    eprintln!(
        "docker driver test: log copy resumed ({:?})",
        started.elapsed()
    );
    // A worker that comes back to find its tasks gone removes their containers.
    workers[0].kill9().unwrap();
    client.service_remove("dockweb").await.unwrap();
    workers[0].respawn().unwrap();
    workers[0].wait_ready().await.unwrap();
    wait_containers(&docker, with_engine, &BTreeSet::new()).await;

    // An --on-isolation stop container stops when its agent dies: its lease guard outlives the
    // agent and stops it once the lease (10 s by default) runs out unrenewed.
    eprintln!(
        "docker driver test: stale containers removed ({:?})",
        started.elapsed()
    );
    let leased = ServiceSpecView {
        on_isolation: "stop".into(),
        ..docker_service(1, IMAGE, TALKER)
    };
    client.service_create("docklease", leased).await.unwrap();
    let tasks = wait_running(&cluster, "docklease", 1).await;
    let ids: BTreeSet<u64> = tasks.iter().map(|task| task.task_id).collect();
    wait_containers(&docker, with_engine, &ids).await;
    workers[0].kill9().unwrap();
    poll_until(
        TIMEOUT,
        "the leased container stopped without its agent",
        async || {
            let listed = containers(&docker, with_engine);
            if listed.values().all(|(_, state, _)| state == "exited") && !listed.is_empty() {
                Ok(())
            } else {
                Err(format!("{listed:?}"))
            }
        },
    )
    .await
    .unwrap();

    // Once the engine-less node's agent starts again and finds an engine, it says so, and the
    // docker task that waited for it runs there.
    workers[1].kill9().unwrap();
    workers[1].set_extra_args(fast_gossip_args());
    workers[1].respawn().unwrap();
    workers[1].wait_ready().await.unwrap();
    let placed = wait_running(&cluster, "nodocker", 1).await;
    assert_eq!(placed[0].node_id, Some(worker_ids[1]));
    let task = placed[0].task_id.to_string();
    poll_until(TIMEOUT, "its container runs", async || {
        let listed = containers(&docker, worker_ids[1]);
        if listed
            .values()
            .any(|(_, state, id)| state == "running" && *id == task)
        {
            Ok(())
        } else {
            Err(format!("{listed:?}"))
        }
    })
    .await
    .unwrap();
}

/// A stand-in for the engine's socket: a proxy to the real one that can be cut, connections
/// and all, as if the engine went away.
struct EngineProxy {
    path: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl EngineProxy {
    fn start(dir: &std::path::Path) -> EngineProxy {
        let path = dir.join("docker.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(async move {
                    if let Ok(mut engine) =
                        tokio::net::UnixStream::connect("/var/run/docker.sock").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        });
        EngineProxy { path, task }
    }

    /// The engine "goes away": no new connection, and every open one is cut (the join set and
    /// its connections go with the task).
    fn cut(&self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_whose_engine_goes_away_fails_with_a_clear_error() {
    let docker = match Docker::detect() {
        Ok(docker) => docker,
        Err(reason) => {
            eprintln!("skipping the engine-loss test: {reason}");
            return;
        }
    };
    if !std::path::Path::new("/var/run/docker.sock").exists() {
        eprintln!("skipping the engine-loss test: the engine is not at /var/run/docker.sock");
        return;
    }
    if let Err(error) = ensure_probe_image(&docker, IMAGE) {
        eprintln!("skipping the engine-loss test: cannot assemble {IMAGE}: {error}");
        return;
    }
    let proxy_dir = tempfile::tempdir().unwrap();
    let proxy = EngineProxy::start(proxy_dir.path());

    let mut cluster = Cluster::start_with(1, ClusterOptions::with_agent_args(&FAST_GOSSIP_ARGS))
        .await
        .unwrap();
    cluster.bootstrap_dynamic().await.unwrap();
    let client = leader_client(&cluster).await;
    let token = client.token_show(Role::Worker).await.unwrap().token;
    let manager_addr = cluster.remote_addr(0).unwrap().to_string();
    let mut options = AgentOptions {
        extra_args: fast_gossip_args(),
        ..AgentOptions::default()
    };
    options.extra_args.push("--docker-socket".into());
    options
        .extra_args
        .push(proxy.path.to_string_lossy().into_owned());
    let worker = AgentProcess::start_with(options).await.unwrap();
    let worker_id = worker
        .client()
        .await
        .unwrap()
        .join(&token, &manager_addr)
        .await
        .unwrap()
        .node_id;
    let _cleanup = RemoveContainers {
        docker: docker.clone(),
        node_ids: vec![worker_id],
    };

    let spec = ServiceSpecView {
        restart_condition: "none".into(),
        ..docker_service(1, IMAGE, TALKER)
    };
    client.service_create("doomed", spec).await.unwrap();
    let running = wait_running(&cluster, "doomed", 1).await;
    assert_eq!(running[0].node_id, Some(worker_id));
    proxy.cut();
    let failed = poll_until(
        TIMEOUT,
        "the task failed with its engine gone",
        async || {
            let tasks = ps(&cluster, "doomed").await;
            match tasks.first() {
                Some(task) if task.state == "failed" => Ok(task.clone()),
                _ => Err(format!("{tasks:?}")),
            }
        },
    )
    .await
    .unwrap();
    let error = failed.error.unwrap_or_default();
    assert!(
        error.starts_with("the Docker engine stopped answering"),
        "{error}"
    );
    drop(worker);
}
