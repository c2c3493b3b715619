//! `testnet bench fleet`: a real fleet of agent processes on loopback — three managers and
//! `--workers` workers — timed the way an operator would see it.
//!
//! What is measured, in order:
//! 1. **Forming.** The managers are formed with a static bootstrap (not timed). Then every
//!    worker process is spawned at once (each a node of the same [`Cluster`], so with its own
//!    dir and its own remote/gossip and Raft ports), and each worker, as soon as its control socket answers, joins with the worker token
//!    through one of the managers (round-robin), at most `--join-concurrency` joins in flight.
//!    Timed from the first spawn: all processes spawned, all control sockets answering, all
//!    joins acknowledged, all workers `ready` in the leader's `node ls`, and every agent's gossip
//!    seeing the whole pool (given up after `--converge-timeout-s`: agents still short of the
//!    full view are then left out of the later watches, and the figure is `null`).
//! 2. **Idle.** After `--settle-s` without any polling, the CPU time (utime + stime from
//!    `/proc/<pid>/stat`) of every agent process is summed over `--idle-window-s`, during which
//!    this process does nothing; divided by the window it is the fleet's idle CPU in cores.
//!    Then the resident memory (VmRSS of `/proc/<pid>/status`) of every worker agent.
//! 3. **Trials** (`--trials`), each: a new worker is started and answers (not timed); from the
//!    instant its `join` is sent, the time until every other agent's gossip sees it and the
//!    leader's `node ls` says `ready` (how much of the pool the newcomer itself sees by then is
//!    printed, not waited for); then a worker of the original fleet is killed with SIGKILL, and
//!    from that instant the time until every live agent's gossip no longer counts it and the
//!    leader's `node ls` says `down`.
//!
//! "Sees" is read from `status.cluster.gossip_members` (members alive in that agent's gossip,
//! itself included), asked of every agent in rounds: all agents at once (at most
//! [`POLL_CONCURRENCY`] calls in flight) over a control connection kept open per agent, then a
//! `--poll-ms` pause. An agent counts as seeing the change at the arrival of the first answer
//! whose count equals the expected pool size, so every figure is an upper bound, late by at
//! most one round (the mean round time is printed). The polling itself costs CPU on the same
//! machine the fleet runs on; the idle CPU window has no polling at all.
//!
//! Hundreds of agents can exhaust a shared machine's memory: the benchmark stops the fleet
//! (and fails) when available memory falls below `--min-available-mib`. It raises its own
//! open-files limit to the hard limit (one control connection per agent stays open); each
//! agent is one process with a few threads, well within the usual process limits.
//!
//! The fleet runs on the local backend only: its CPU and memory figures come from the agents'
//! processes.
//!
//! Agents run with production defaults (the `lan` gossip profile, the default liveness grace),
//! plus whatever `--agent-arg` adds, and `--log-level` (default `warn`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use symphony_ctl::Client;
use symphony_ctl::proto::{ErrorCode, ReadConsistency, Role, StatusInfo};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::figures::{millis, round2, round3};
use super::latency::Latencies;
use crate::harness::{AgentOptions, Cluster, ClusterOptions, find_agent_binary, is_retryable};
use crate::procfs;

/// Status calls in flight at once during a polling round.
const POLL_CONCURRENCY: usize = 128;
/// One status call may take this long before that agent counts as not answering this round.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one join call may take before it is abandoned and tried again.
const JOIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two tries of a worker's control socket while it starts, or of a join.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// Workers started between two looks at the available memory.
const SPAWN_BATCH: usize = 16;
/// How often a long wait reports progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What `testnet bench fleet` starts and measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetOptions {
    /// Worker agents of the fleet.
    pub workers: usize,
    /// Managers, formed with a static bootstrap before the workers start.
    pub managers: usize,
    /// Joins in flight at once while the fleet forms.
    pub join_concurrency: usize,
    /// Join-then-kill trials after the idle measurement; each kills one original worker.
    pub trials: usize,
    /// Pause between two rounds of `status` calls to every agent, in milliseconds.
    pub poll_ms: u64,
    /// Seconds the formed fleet is left alone before the idle measurement.
    pub settle_s: u64,
    /// Seconds over which the fleet's idle CPU is measured (nothing polls meanwhile).
    pub idle_window_s: u64,
    /// Seconds any one phase (forming, a join, a kill) may take before the benchmark gives up.
    pub timeout_s: u64,
    /// Seconds the formed fleet's gossip may take to converge; agents still short of the full
    /// view afterwards are left out of the join and kill measurements.
    pub converge_timeout_s: u64,
    /// Stop the fleet (and fail) below this much available memory, in MiB.
    pub min_available_mib: u64,
    /// The agent binary; `None`: `$SYMPHONY_AGENT_BIN` or next to this executable.
    pub agent_bin: Option<PathBuf>,
    /// More flags for every agent (production defaults otherwise).
    pub agent_args: Vec<String>,
    /// Passed to every agent as `--log-level`.
    pub log_level: String,
    /// Keep every agent's dir (and log) under this dir instead of a temp dir removed at the
    /// end.
    pub work_dir: Option<PathBuf>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            workers: 150,
            managers: 3,
            join_concurrency: 32,
            trials: 3,
            poll_ms: 100,
            settle_s: 10,
            idle_window_s: 20,
            timeout_s: 300,
            converge_timeout_s: 300,
            min_available_mib: 2048,
            agent_bin: None,
            agent_args: Vec::new(),
            log_level: "warn".to_string(),
            work_dir: None,
        }
    }
}

/// One worker agent of the fleet.
struct Worker {
    /// Its index in the cluster.
    index: usize,
    name: String,
    node_id: u64,
}

pub async fn run(options: FleetOptions) -> anyhow::Result<()> {
    if options.workers == 0
        || options.managers == 0
        || options.join_concurrency == 0
        || options.trials == 0
    {
        bail!("--workers, --managers, --join-concurrency and --trials must all be at least 1");
    }
    if options.trials > options.workers {
        bail!("--trials kills one original worker each, so it cannot exceed --workers");
    }
    let nofile = raise_nofile_limit();
    let clk_tck = procfs::clock_ticks_per_second();
    let timeout = Duration::from_secs(options.timeout_s);
    let min_available = options.min_available_mib * 1024;
    let bin = match &options.agent_bin {
        Some(bin) => bin.clone(),
        None => find_agent_binary()?,
    };
    println!(
        "fleet: {} managers + {} workers of {} (open files limit {nofile}, {} MiB available, \
         agent args {:?})",
        options.managers,
        options.workers,
        bin.display(),
        procfs::mem_available_kib().unwrap_or_default() / 1024,
        options.agent_args
    );
    let agent_options = AgentOptions {
        bin: Some(bin),
        work_dir: options.work_dir.clone(),
        log_level: options.log_level.clone(),
        ready_timeout: timeout,
        extra_args: options.agent_args.clone(),
    };

    // ----- the managers (not timed) -------------------------------------------------------
    let mut cluster = Cluster::start_with(
        options.managers,
        ClusterOptions {
            agent: agent_options.clone(),
            timeout,
            ..ClusterOptions::default()
        },
    )
    .await
    .context("cannot start the managers")?;
    if options.managers == 1 {
        cluster.bootstrap_dynamic().await
    } else {
        cluster.bootstrap_static().await
    }
    .context("cannot form the managers into a cluster")?;
    let leader = cluster.leader().await.context("no leader")?;
    let token = cluster
        .client(leader)
        .await?
        .token_show(Role::Worker)
        .await
        .context("cannot read the worker token")?
        .token;
    let manager_addrs: Vec<String> = (0..options.managers)
        .map(|index| cluster.remote_addr(index).map(|addr| addr.to_string()))
        .collect::<Result<_, _>>()?;
    println!(
        "{} managers formed; {} leads",
        options.managers,
        cluster.name(leader)
    );

    // ----- forming the fleet --------------------------------------------------------------
    let started = Instant::now();
    let mut workers = Vec::with_capacity(options.workers);
    while workers.len() < options.workers {
        // In batches, so that the memory is watched while the fleet grows.
        check_memory(min_available).with_context(|| {
            format!(
                "{} of {} workers were started",
                workers.len(),
                options.workers
            )
        })?;
        let batch = SPAWN_BATCH.min(options.workers - workers.len());
        for index in cluster
            .spawn_nodes(Role::Worker, batch)
            .context("cannot start the workers")?
        {
            workers.push(Worker {
                index,
                name: cluster.name(index),
                node_id: 0,
            });
        }
    }
    let spawned = started.elapsed();
    println!(
        "  {} worker processes spawned in {:.2} s",
        options.workers,
        spawned.as_secs_f64()
    );
    let joins = join_all(
        &cluster,
        &mut workers,
        &token,
        &manager_addrs,
        options.join_concurrency,
        timeout,
        min_available,
    )
    .await?;
    let answering = joins.iter().map(|join| join.answering).max();
    let joined = joins.iter().map(|join| join.joined).max();
    let join_latencies = Latencies::new(joins.iter().map(|join| join.latency));
    let answering = answering.unwrap_or_default();
    let joined = joined.unwrap_or_default();
    let worker_pids: Vec<u32> = workers
        .iter()
        .filter_map(|worker| cluster.pid(worker.index))
        .collect();
    let startup_cpu_ms =
        cpu_ticks_of(&worker_pids)? as f64 * 1000.0 / clk_tck / options.workers as f64;
    println!(
        "  all control sockets answering after {:.2} s; all joins acknowledged after {:.2} s \
         (join call p50 {:.0} ms, max {:.0} ms); {startup_cpu_ms:.0} ms CPU per worker so far",
        answering.as_secs_f64(),
        joined.as_secs_f64(),
        millis(join_latencies.median().unwrap_or_default()),
        millis(join_latencies.max().unwrap_or_default())
    );
    let worker_ids: Vec<u64> = workers.iter().map(|worker| worker.node_id).collect();
    let all_ready = wait_all_ready(&cluster, leader, &worker_ids, started, timeout).await?;
    println!(
        "  all {} workers ready in the leader's node ls after {:.2} s",
        options.workers,
        all_ready.as_secs_f64()
    );
    let mut poller = Poller::new();
    for index in 0..options.managers {
        poller.add(cluster.name(index), cluster.socket_path(index)?, true);
    }
    for worker in &workers {
        poller.add(
            worker.name.clone(),
            cluster.socket_path(worker.index)?,
            true,
        );
    }
    let mut pool = options.managers + options.workers;
    let converged = poller
        .watch(
            pool,
            started,
            None,
            Duration::from_secs(options.converge_timeout_s),
            options.poll_ms,
            min_available,
        )
        .await?;
    let converged_at = converged.all().filter(|_| converged.complete);
    match converged_at {
        Some(at) => println!(
            "  every agent's gossip sees all {pool} members after {:.2} s",
            at.as_secs_f64()
        ),
        None => {
            let lagging = poller.release_lagging(&converged);
            let counts: Vec<usize> = converged.last.iter().flatten().copied().collect();
            println!(
                "  gossip did NOT converge within {} s: {} agents see fewer than {pool} members \
                 (lowest count {}); they are left out of the join and kill measurements",
                options.converge_timeout_s,
                lagging.len(),
                counts.iter().min().copied().unwrap_or_default()
            );
        }
    }

    // ----- idle: CPU and memory ------------------------------------------------------------
    tokio::time::sleep(Duration::from_secs(options.settle_s)).await;
    let manager_pids: Vec<u32> = (0..options.managers)
        .filter_map(|index| cluster.pid(index))
        .collect();
    let idle = measure_idle(
        &manager_pids,
        &worker_pids,
        Duration::from_secs(options.idle_window_s),
        clk_tck,
    )
    .await?;
    println!(
        "  idle CPU over {} s: {:.3} cores for the fleet ({:.3} managers, {:.3} workers, \
         {:.2} millicores per worker); the whole machine was busy {:.2} cores",
        options.idle_window_s,
        idle.fleet_cores(),
        idle.manager_cores,
        idle.worker_cores,
        idle.worker_cores * 1000.0 / options.workers as f64,
        idle.machine_cores
    );
    let memory = measure_memory(&manager_pids, &worker_pids)?;
    println!(
        "  worker resident memory: median {:.1} MiB, max {:.1} MiB (private: median {:.1} MiB); \
         managers max {:.1} MiB; threads per worker: median {}",
        memory.worker_rss_median,
        memory.worker_rss_max,
        memory.worker_anon_median,
        memory.manager_rss_max,
        memory.worker_threads_median
    );

    // ----- trials: a join and a kill ------------------------------------------------------
    let mut trials = Vec::with_capacity(options.trials);
    // Per trial: seen by all after the join, seen down by all after the kill, down in node ls.
    let mut join_seen = Vec::with_capacity(options.trials);
    let mut kill_seen = Vec::with_capacity(options.trials);
    let mut kill_down = Vec::with_capacity(options.trials);
    for trial in 0..options.trials {
        // The join: a new worker, started and answering before the clock starts. Its own view
        // fills later (see the module docs), so the watch does not wait for it.
        let index = cluster
            .spawn_nodes(Role::Worker, 1)
            .context("cannot start a new worker")?
            .start;
        let name = cluster.name(index);
        cluster
            .wait_answers(index)
            .await
            .with_context(|| format!("{name} did not start"))?;
        let client = cluster.client(index).await?;
        let via = &manager_addrs[(options.workers + trial) % manager_addrs.len()];
        let sent = Instant::now();
        let node_id = client
            .join(token.clone(), via.clone())
            .await
            .with_context(|| format!("{name} cannot join"))?
            .node_id;
        let join_call = sent.elapsed();
        let newcomer = poller.add(name.clone(), cluster.socket_path(index)?, false);
        pool += 1;
        let seen = poller
            .watch(
                pool,
                sent,
                Some(StateCheck {
                    leader,
                    node_id,
                    status: "ready",
                }),
                timeout,
                options.poll_ms,
                min_available,
            )
            .await?;
        if !seen.complete {
            bail!(
                "{name} was not seen by {} agents within {timeout:?}",
                seen.waiting
            );
        }
        let join_seen_all = seen.all().unwrap_or_default();
        let join_seen_median = seen.median().unwrap_or_default();
        let newcomer_count = seen.last[newcomer].unwrap_or_default();
        let join_ready = seen.state.unwrap_or_default();

        // The kill: a worker of the original fleet, from its middle.
        let alive: Vec<usize> = (0..workers.len())
            .filter(|index| cluster.is_running(workers[*index].index))
            .collect();
        let victim = alive[alive.len() / 2];
        let victim_name = workers[victim].name.clone();
        let victim_id = workers[victim].node_id;
        poller.remove(&victim_name);
        pool -= 1;
        let killed = Instant::now();
        cluster
            .kill9(workers[victim].index)
            .with_context(|| format!("cannot kill {victim_name}"))?;
        let down = poller
            .watch(
                pool,
                killed,
                Some(StateCheck {
                    leader,
                    node_id: victim_id,
                    status: "down",
                }),
                timeout,
                options.poll_ms,
                min_available,
            )
            .await?;
        if !down.complete {
            bail!(
                "the kill of {victim_name} was not seen by {} agents within {timeout:?}",
                down.waiting
            );
        }
        let kill_seen_all = down.all().unwrap_or_default();
        let kill_seen_median = down.median().unwrap_or_default();
        let kill_down_state = down.state.unwrap_or_default();
        println!(
            "  trial {}: join call {:.0} ms; seen by all {:.2} s (median agent {:.2} s), ready \
             in node ls {:.2} s, the newcomer itself counts {newcomer_count} of {} members | \
             kill -9 {victim_name}: down for all {:.2} s (median agent {:.2} s), down in node \
             ls {:.2} s (poll round {:.0} ms / {:.0} ms)",
            trial + 1,
            millis(join_call),
            join_seen_all.as_secs_f64(),
            join_seen_median.as_secs_f64(),
            join_ready.as_secs_f64(),
            pool + 1,
            kill_seen_all.as_secs_f64(),
            kill_seen_median.as_secs_f64(),
            kill_down_state.as_secs_f64(),
            millis(seen.mean_round),
            millis(down.mean_round),
        );
        join_seen.push(join_seen_all);
        kill_seen.push(kill_seen_all);
        kill_down.push(kill_down_state);
        trials.push(json!({
            "join_call_ms": round2(millis(join_call)),
            "join_seen_by_all_s": round2(join_seen_all.as_secs_f64()),
            "join_seen_median_s": round2(join_seen_median.as_secs_f64()),
            "join_ready_in_state_s": round2(join_ready.as_secs_f64()),
            "newcomer_count": newcomer_count,
            "kill_seen_by_all_s": round2(kill_seen_all.as_secs_f64()),
            "kill_seen_median_s": round2(kill_seen_median.as_secs_f64()),
            "kill_down_in_state_s": round2(kill_down_state.as_secs_f64()),
            "join_poll_round_ms": round2(millis(seen.mean_round)),
            "kill_poll_round_ms": round2(millis(down.mean_round)),
        }));
    }
    // In seconds, as the per-trial figures.
    let median = |times: &[Duration]| {
        let times = Latencies::new(times.iter().copied());
        round2(times.median().unwrap_or_default().as_secs_f64())
    };
    let worst = |times: &[Duration]| {
        let times = Latencies::new(times.iter().copied());
        round2(times.max().unwrap_or_default().as_secs_f64())
    };
    println!(
        "  over {} trials: join seen by all median {:.2} s, max {:.2} s; kill seen down by all \
         median {:.2} s, max {:.2} s; down in node ls median {:.2} s, max {:.2} s",
        trials.len(),
        median(&join_seen),
        worst(&join_seen),
        median(&kill_seen),
        worst(&kill_seen),
        median(&kill_down),
        worst(&kill_down),
    );

    // Before the last line: the poller's connections, then every agent (SIGKILL, on drop).
    drop(poller);
    drop(cluster);

    // The last line is for scripts.
    println!(
        "{}",
        json!({
            "bench": "fleet",
            "managers": options.managers,
            "workers": options.workers,
            "agent_args": options.agent_args,
            "spawned_s": round2(spawned.as_secs_f64()),
            "all_answering_s": round2(answering.as_secs_f64()),
            "all_joined_s": round2(joined.as_secs_f64()),
            "all_ready_s": round2(all_ready.as_secs_f64()),
            "gossip_converged_s": converged_at.map(|at| round2(at.as_secs_f64())),
            "startup_cpu_ms_per_worker": round2(startup_cpu_ms),
            "join_call_p50_ms": round2(millis(join_latencies.median().unwrap_or_default())),
            "join_call_max_ms": round2(millis(join_latencies.max().unwrap_or_default())),
            "join_seen_by_all_s": median(&join_seen),
            "join_seen_by_all_max_s": worst(&join_seen),
            "kill_seen_by_all_s": median(&kill_seen),
            "kill_seen_by_all_max_s": worst(&kill_seen),
            "kill_down_in_state_s": median(&kill_down),
            "kill_down_in_state_max_s": worst(&kill_down),
            "worker_rss_median_mib": round2(memory.worker_rss_median),
            "worker_rss_max_mib": round2(memory.worker_rss_max),
            "worker_private_median_mib": round2(memory.worker_anon_median),
            "manager_rss_max_mib": round2(memory.manager_rss_max),
            "idle_cpu_cores": round3(idle.fleet_cores()),
            "idle_cpu_managers_cores": round3(idle.manager_cores),
            "idle_cpu_workers_cores": round3(idle.worker_cores),
            "idle_window_s": options.idle_window_s,
            "machine_busy_cores": round2(idle.machine_cores),
            "trials": trials,
        })
    );
    Ok(())
}

// ----- forming -----------------------------------------------------------------------------

/// When one worker answered and joined, counted from the first spawn.
struct Joined {
    answering: Duration,
    joined: Duration,
    /// How long the join call itself took.
    latency: Duration,
}

/// Waits for every worker's control socket and joins it, at most `concurrency` at a time.
/// Records each worker's node id.
async fn join_all(
    cluster: &Cluster,
    workers: &mut [Worker],
    token: &str,
    manager_addrs: &[String],
    concurrency: usize,
    timeout: Duration,
    min_available: u64,
) -> anyhow::Result<Vec<Joined>> {
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for (index, worker) in workers.iter().enumerate() {
        let socket = cluster.socket_path(worker.index)?;
        let token = token.to_string();
        let via = manager_addrs[index % manager_addrs.len()].clone();
        let slots = Arc::clone(&slots);
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let outcome = answer_and_join(&socket, &token, &via, started, timeout).await;
            (index, outcome)
        });
    }
    let mut results: Vec<Option<Joined>> = (0..workers.len()).map(|_| None).collect();
    let mut done = 0;
    let mut reported = Instant::now();
    while let Some(finished) = tasks.join_next().await {
        let (index, outcome) = finished.context("a join task failed")?;
        match outcome {
            Ok((node_id, joined)) => {
                workers[index].node_id = node_id;
                results[index] = Some(joined);
            }
            Err(error) => {
                let worker = &workers[index];
                bail!(
                    "{} did not join: {error} (process {:?}); the end of its log:\n{}",
                    worker.name,
                    cluster.process_state(worker.index),
                    cluster.log_tail(worker.index)
                );
            }
        }
        done += 1;
        check_memory(min_available)
            .with_context(|| format!("{done} of {} workers had joined", workers.len()))?;
        if reported.elapsed() >= PROGRESS_EVERY {
            eprintln!(
                "  ... {done} of {} workers joined after {:.1} s",
                workers.len(),
                started.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
    }
    Ok(results.into_iter().flatten().collect())
}

/// Waits until the worker's control socket answers, then joins it through `via`, retrying
/// while the cluster is busy, for up to `timeout`. A join call that takes longer than
/// [`JOIN_ATTEMPT_TIMEOUT`] is retried on a new connection; if the abandoned call did get
/// through, the worker then says it is already in a cluster, and its `status` names its id.
async fn answer_and_join(
    socket: &Path,
    token: &str,
    via: &str,
    started: Instant,
    timeout: Duration,
) -> Result<(u64, Joined), String> {
    let deadline = Instant::now() + timeout;
    let mut last: String;
    let mut client = loop {
        let attempt = async {
            let client = Client::connect(socket).await?;
            client.status().await.map(|_| client)
        };
        match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(client)) => break client,
            Ok(Err(error)) => last = error.to_string(),
            Err(_) => last = format!("status took over {CALL_TIMEOUT:?}"),
        }
        if Instant::now() >= deadline {
            return Err(format!("no answer within {timeout:?} (last: {last})"));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    };
    let answering = started.elapsed();
    let sent = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let call = client.join(token.to_string(), via.to_string());
        let reconnect = match tokio::time::timeout(JOIN_ATTEMPT_TIMEOUT, call).await {
            Ok(Ok(info)) => {
                let joined = Joined {
                    answering,
                    joined: started.elapsed(),
                    latency: sent.elapsed(),
                };
                return Ok((info.node_id, joined));
            }
            Ok(Err(error))
                if attempts > 1
                    && error.remote().map(|e| e.code) == Some(ErrorCode::AlreadyInitialised) =>
            {
                // An abandoned attempt got through after all.
                let status = client.status().await.map_err(|e| e.to_string())?;
                let joined = Joined {
                    answering,
                    joined: started.elapsed(),
                    latency: sent.elapsed(),
                };
                return Ok((status.node_id, joined));
            }
            Ok(Err(error)) if is_retryable(&error) => {
                last = error.to_string();
                error.remote().is_none()
            }
            Ok(Err(error)) => return Err(error.to_string()),
            Err(_) => {
                last = format!("a join call took over {JOIN_ATTEMPT_TIMEOUT:?}");
                true
            }
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "not joined within {timeout:?} after {attempts} attempts (last: {last})"
            ));
        }
        tokio::time::sleep(RETRY_PAUSE).await;
        // A failed reconnect leaves the broken connection: the next call fails and says why.
        if reconnect && let Ok(new) = Client::connect(socket).await {
            client = new;
        }
    }
}

/// Waits until the leader's `node ls` says every one of `ids` is ready; returns when, counted
/// from `started`.
async fn wait_all_ready(
    cluster: &Cluster,
    leader: usize,
    ids: &[u64],
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + timeout;
    let socket = cluster.socket_path(leader)?;
    loop {
        let attempt = async {
            let client = Client::connect(&socket).await?;
            client.node_list(ReadConsistency::Linearizable).await
        };
        let last = match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(nodes)) => {
                let ready = ids
                    .iter()
                    .filter(|id| {
                        nodes
                            .iter()
                            .any(|node| node.node_id == **id && node.status == "ready")
                    })
                    .count();
                if ready == ids.len() {
                    return Ok(started.elapsed());
                }
                format!("{ready} of {} workers ready", ids.len())
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {CALL_TIMEOUT:?}"),
        };
        if Instant::now() >= deadline {
            bail!("not every worker was ready in the leader's node ls within {timeout:?}: {last}");
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

// ----- polling every agent -------------------------------------------------------------------

/// One agent the poller asks, with its control connection once open.
struct Target {
    name: String,
    socket: PathBuf,
    client: Option<Client>,
    /// Whether a watch waits for this agent; an agent whose own view of the pool is not
    /// complete is only recorded.
    required: bool,
}

/// A condition on the leader's `node ls` that a watch also waits for.
struct StateCheck {
    leader: usize,
    node_id: u64,
    status: &'static str,
}

/// What a watch saw, every time counted from its start.
struct Watched {
    /// Whether every required agent (and the `node ls` check) got there in time.
    complete: bool,
    /// How many required agents did not.
    waiting: usize,
    /// Per target (in the poller's order): the first answer with the expected count.
    first: Vec<Option<Duration>>,
    /// Per target: the count in its last answer.
    last: Vec<Option<usize>>,
    /// Per target: whether the watch waited for it.
    required: Vec<bool>,
    /// When the leader's `node ls` first showed the expected status, if asked.
    state: Option<Duration>,
    mean_round: Duration,
}

impl Watched {
    /// When the last required agent got there.
    fn all(&self) -> Option<Duration> {
        self.required_times().max()
    }

    /// When the median required agent got there.
    fn median(&self) -> Option<Duration> {
        self.required_times().median()
    }

    /// The times of the required agents that got there.
    fn required_times(&self) -> Latencies {
        Latencies::new(
            self.first
                .iter()
                .zip(&self.required)
                .filter(|(_, required)| **required)
                .filter_map(|(time, _)| *time),
        )
    }
}

/// Asks every agent its `status` in rounds.
struct Poller {
    targets: Vec<Target>,
}

impl Poller {
    fn new() -> Poller {
        Poller {
            targets: Vec::new(),
        }
    }

    /// Adds an agent; returns its index.
    fn add(&mut self, name: String, socket: PathBuf, required: bool) -> usize {
        self.targets.push(Target {
            name,
            socket,
            client: None,
            required,
        });
        self.targets.len() - 1
    }

    fn remove(&mut self, name: &str) {
        self.targets.retain(|target| target.name != name);
    }

    /// One status call to every agent at once: each agent's gossip count (or why there is
    /// none) and when its answer arrived.
    async fn round(&mut self) -> Vec<(Result<usize, String>, Instant)> {
        let slots = Arc::new(Semaphore::new(POLL_CONCURRENCY));
        let mut tasks = JoinSet::new();
        for (index, target) in self.targets.iter_mut().enumerate() {
            let client = target.client.take();
            let socket = target.socket.clone();
            let slots = Arc::clone(&slots);
            tasks.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let (client, status) = status_once(client, &socket).await;
                (index, client, status, Instant::now())
            });
        }
        let mut answers: Vec<(Result<usize, String>, Instant)> = self
            .targets
            .iter()
            .map(|_| (Err("no answer".to_string()), Instant::now()))
            .collect();
        while let Some(finished) = tasks.join_next().await {
            let Ok((index, client, status, at)) = finished else {
                continue;
            };
            self.targets[index].client = client;
            let members = status.and_then(|status| {
                status
                    .cluster
                    .and_then(|cluster| cluster.gossip_members)
                    .ok_or_else(|| "not gossiping".to_string())
            });
            answers[index] = (members, at);
        }
        answers
    }

    /// Polls until every required agent's gossip counts `expected` members (and the leader's
    /// `node ls` shows what `state` asks, if given), or `timeout` passes: the result says which.
    /// Times are counted from `since`; optional agents are recorded when they get there.
    async fn watch(
        &mut self,
        expected: usize,
        since: Instant,
        state: Option<StateCheck>,
        timeout: Duration,
        pause_ms: u64,
        min_available: u64,
    ) -> anyhow::Result<Watched> {
        let deadline = since + timeout;
        let mut first: Vec<Option<Duration>> = self.targets.iter().map(|_| None).collect();
        let mut last: Vec<Option<usize>> = self.targets.iter().map(|_| None).collect();
        let mut state_at: Option<Duration> = None;
        let mut leader_client: Option<Client> = None;
        let state_socket = match &state {
            Some(check) => Some(leader_socket(self, check.leader)?),
            None => None,
        };
        let mut rounds = 0u32;
        let mut round_time = Duration::ZERO;
        let mut reported = Instant::now();
        loop {
            check_memory(min_available)?;
            let round_started = Instant::now();
            let state_call = async {
                match (&state, &state_socket) {
                    (Some(check), Some(socket)) if state_at.is_none() => {
                        let (client, status) =
                            node_status_once(leader_client.take(), socket, check.node_id).await;
                        (client, status.ok().flatten(), Instant::now())
                    }
                    _ => (None, None, Instant::now()),
                }
            };
            let (answers, (client, status, status_at)) = tokio::join!(self.round(), state_call);
            round_time += round_started.elapsed();
            rounds += 1;
            leader_client = client;
            if let (Some(check), Some(status)) = (&state, status)
                && status == check.status
                && state_at.is_none()
            {
                state_at = Some(status_at.saturating_duration_since(since));
            }
            let mut last_miss = None;
            for (index, (members, at)) in answers.into_iter().enumerate() {
                let required = self.targets[index].required;
                match members {
                    Ok(count) => {
                        last[index] = Some(count);
                        if count == expected {
                            first[index].get_or_insert(at.saturating_duration_since(since));
                        } else if required && first[index].is_none() {
                            last_miss = Some(format!(
                                "{} counts {count} members",
                                self.targets[index].name
                            ));
                        }
                    }
                    Err(error) if required && first[index].is_none() => {
                        last_miss = Some(format!("{}: {error}", self.targets[index].name));
                    }
                    Err(_) => {}
                }
            }
            let waiting = self
                .targets
                .iter()
                .zip(&first)
                .filter(|(target, time)| target.required && time.is_none())
                .count();
            let done = waiting == 0 && (state.is_none() || state_at.is_some());
            if done || Instant::now() >= deadline {
                if !done {
                    eprintln!(
                        "  ... gave up after {timeout:?}: {waiting} agents do not count {expected} \
                         members (e.g. {}); node ls status reached: {}",
                        last_miss.unwrap_or_else(|| "none".to_string()),
                        state_at.is_some()
                    );
                }
                return Ok(Watched {
                    complete: done,
                    waiting,
                    first,
                    last,
                    required: self.targets.iter().map(|target| target.required).collect(),
                    state: state_at,
                    mean_round: round_time / rounds.max(1),
                });
            }
            if reported.elapsed() >= PROGRESS_EVERY {
                eprintln!(
                    "  ... {waiting} agents do not count {expected} members yet after {:.1} s \
                     (e.g. {})",
                    since.elapsed().as_secs_f64(),
                    last_miss.unwrap_or_else(|| "none".to_string())
                );
                reported = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }

    /// Agents whose time is missing in `watched` are no longer required in later watches:
    /// their view of the pool is incomplete, so their count says nothing about one member.
    fn release_lagging(&mut self, watched: &Watched) -> Vec<String> {
        let mut released = Vec::new();
        for (target, time) in self.targets.iter_mut().zip(&watched.first) {
            if target.required && time.is_none() {
                target.required = false;
                released.push(target.name.clone());
            }
        }
        released
    }
}

fn leader_socket(poller: &Poller, leader: usize) -> anyhow::Result<PathBuf> {
    poller
        .targets
        .get(leader)
        .map(|target| target.socket.clone())
        .context("the leader is not among the polled agents")
}

/// One `status` call over `client` (or a fresh connection), abandoned after [`CALL_TIMEOUT`].
/// Returns the connection if it is still good.
async fn status_once(
    client: Option<Client>,
    socket: &Path,
) -> (Option<Client>, Result<StatusInfo, String>) {
    let call = async {
        let client = match client {
            Some(client) => client,
            None => Client::connect(socket).await.map_err(|e| e.to_string())?,
        };
        match client.status().await {
            Ok(status) => Ok((client, status)),
            Err(error) => Err(error.to_string()),
        }
    };
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok((client, status))) => (Some(client), Ok(status)),
        Ok(Err(error)) => (None, Err(error)),
        Err(_) => (None, Err(format!("no answer within {CALL_TIMEOUT:?}"))),
    }
}

/// The status of `node_id` in `node ls` (linearizable) over `client` or a fresh connection.
async fn node_status_once(
    client: Option<Client>,
    socket: &Path,
    node_id: u64,
) -> (Option<Client>, Result<Option<String>, String>) {
    let call = async {
        let client = match client {
            Some(client) => client,
            None => Client::connect(socket).await.map_err(|e| e.to_string())?,
        };
        match client.node_list(ReadConsistency::Linearizable).await {
            Ok(nodes) => {
                let status = nodes
                    .into_iter()
                    .find(|node| node.node_id == node_id)
                    .map(|node| node.status);
                Ok((client, status))
            }
            Err(error) => Err(error.to_string()),
        }
    };
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok((client, status))) => (Some(client), Ok(status)),
        Ok(Err(error)) => (None, Err(error)),
        Err(_) => (None, Err(format!("no answer within {CALL_TIMEOUT:?}"))),
    }
}

// ----- CPU and memory from /proc -------------------------------------------------------------

/// Idle CPU over a window, in cores.
struct Idle {
    manager_cores: f64,
    worker_cores: f64,
    /// Every CPU of the machine that was not idle, whoever used it (other load included).
    machine_cores: f64,
}

impl Idle {
    fn fleet_cores(&self) -> f64 {
        self.manager_cores + self.worker_cores
    }
}

/// Sums the CPU time the processes use over `window`, during which this process only sleeps.
async fn measure_idle(
    managers: &[u32],
    workers: &[u32],
    window: Duration,
    clk_tck: f64,
) -> anyhow::Result<Idle> {
    let ticks = cpu_ticks_of;
    let manager_before = ticks(managers)?;
    let worker_before = ticks(workers)?;
    let machine_before = procfs::machine_busy_ticks()?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let elapsed = started.elapsed().as_secs_f64();
    let manager_after = ticks(managers)?;
    let worker_after = ticks(workers)?;
    let machine_after = procfs::machine_busy_ticks()?;
    let cores = |before: u64, after: u64| after.saturating_sub(before) as f64 / clk_tck / elapsed;
    Ok(Idle {
        manager_cores: cores(manager_before, manager_after),
        worker_cores: cores(worker_before, worker_after),
        machine_cores: cores(machine_before, machine_after),
    })
}

/// utime + stime of the processes, summed, in clock ticks.
fn cpu_ticks_of(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter()
        .map(|pid| procfs::stat(*pid).map(|stat| stat.cpu_ticks()))
        .try_fold(0u64, |sum, ticks| Ok(sum + ticks?))
}

struct Memory {
    worker_rss_median: f64,
    worker_rss_max: f64,
    worker_anon_median: f64,
    worker_threads_median: u64,
    manager_rss_max: f64,
}

fn measure_memory(managers: &[u32], workers: &[u32]) -> anyhow::Result<Memory> {
    let mut rss = Vec::with_capacity(workers.len());
    let mut anon = Vec::with_capacity(workers.len());
    let mut threads = Vec::with_capacity(workers.len());
    for pid in workers {
        let status = procfs::status(*pid)?;
        rss.push(status.rss_kib);
        anon.push(status.anon_kib);
        threads.push(status.threads);
    }
    let mut manager_rss = Vec::with_capacity(managers.len());
    for pid in managers {
        manager_rss.push(procfs::status(*pid)?.rss_kib);
    }
    rss.sort_unstable();
    anon.sort_unstable();
    threads.sort_unstable();
    let mib = |kib: Option<&u64>| kib.copied().unwrap_or_default() as f64 / 1024.0;
    Ok(Memory {
        worker_rss_median: mib(rss.get(rss.len() / 2)),
        worker_rss_max: mib(rss.last()),
        worker_anon_median: mib(anon.get(anon.len() / 2)),
        worker_threads_median: threads.get(threads.len() / 2).copied().unwrap_or_default(),
        manager_rss_max: mib(manager_rss.iter().max()),
    })
}

/// Fails (and so stops the fleet, whose processes die with their handles) once the machine has
/// less than `min_available` KiB of memory left: hundreds of agents on a shared machine without
/// swap would otherwise bring in the OOM killer, which may pick someone else's process.
fn check_memory(min_available: u64) -> anyhow::Result<()> {
    match procfs::mem_available_kib() {
        Some(available) if available < min_available => bail!(
            "the machine is down to {} MiB of available memory (--min-available-mib {}); \
             stopping the fleet before the OOM killer does",
            available / 1024,
            min_available / 1024
        ),
        _ => Ok(()),
    }
}

/// Raises this process's soft limit on open files to the hard limit: the benchmark keeps one
/// control connection per agent open (and `bench schedule` one connection per simulated
/// worker). Returns the soft limit now in force.
pub(crate) fn raise_nofile_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    // `None` is "unlimited".
    let below_maximum = match (limit.current, limit.maximum) {
        (Some(current), Some(maximum)) => current < maximum,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if below_maximum {
        limit.current = limit.maximum;
        // Failing to raise it is not fatal: the limit in force is reported.
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
