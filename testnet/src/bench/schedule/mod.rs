//! `testnet bench schedule`: how fast the cluster places many tasks, with three real managers
//! and `--workers` simulated workers in this process.
//!
//! The managers are real `symphony-agent` processes (a lab testnet on loopback, OS-given
//! ports, formed by a static bootstrap). The workers are not: each is a few tasks of this
//! process that speak the node-to-node API as a real worker does ([`join`], [`worker`]) —
//! the CA bundle check and the join with a token and a certificate request, a session, the
//! assignments stream and task reports — but run nothing: every task assigned to them is
//! reported `running` at once. So the figures are the managers' (orchestrator, scheduler,
//! dispatcher, Raft), not a driver's.
//!
//! Simulated workers do not gossip, and the leader marks a node gossip does not see `down`
//! after its liveness grace. A worker is `ready` from its join until then, so the managers run
//! with `--liveness-grace-ms` of a day ([`LIVENESS_GRACE_MS`]), far longer than any run;
//! before the service is created the benchmark checks in the leader's `node ls` that every
//! simulated worker is `ready`, and that every one's assignments stream is open.
//!
//! What is measured, from the instant `service create` is sent (a service of `--tasks`
//! replicas, constrained to `node.role==worker` so that the managers' own executors, which are
//! real, get none):
//! - **placements**: when each task first arrives in a worker's stream ([`tally`]); the rate
//!   is every task over the time to the last one, and the busiest second is given too;
//! - **all running**: when the leader acknowledged the last report, which it does once the
//!   report's entry is applied to its replica — the cluster state then says every task runs,
//!   which `service inspect` on the leader is asked to confirm;
//! - **the leader's CPU and memory**: its CPU seconds (utime + stime) from the create to all
//!   running and since its start, and its resident memory at the end; the same for the
//!   followers, for this process (the simulated workers) and for the whole machine, which
//!   all of them share.
//!
//! Every wait has a deadline (`--timeout-s`); stream restarts, report retries and failed
//! session calls are counted and printed, and a task that arrives on two workers fails the
//! benchmark after its figures are printed.

pub mod error;
pub mod join;
pub mod link;
pub mod tally;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use symphony_ctl::Client;
use symphony_ctl::proto::{ReadConsistency, Role, ServiceSpecView};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::join::Joined;
use self::tally::{Counts, Tally};
use self::worker::{Connected, SimWorker};
use super::figures::{millis, round2, round3};
use crate::harness::{AgentOptions, Cluster, ClusterOptions, find_agent_binary, poll_until};
use crate::procfs;

/// The managers' liveness grace: a day, so that workers nobody gossips with stay `ready`.
pub const LIVENESS_GRACE_MS: u64 = 86_400_000;
/// The service the benchmark creates.
const SERVICE: &str = "bench-schedule";
/// How often a long wait says how far it got, on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What `testnet bench schedule` starts and measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// Simulated workers.
    pub workers: usize,
    /// Replicas of the one service.
    pub tasks: u32,
    /// Real managers.
    pub managers: usize,
    /// Joins (and first sessions) in flight at once.
    pub join_concurrency: usize,
    /// Seconds forming, joining and the run may each take.
    pub timeout_s: u64,
    /// The agent binary; `None`: `$SYMPHONY_AGENT_BIN` or next to this executable.
    pub agent_bin: Option<PathBuf>,
    /// Passed to every manager as `--log-level`.
    pub log_level: String,
    /// Keep the managers' dirs (and logs) under this dir instead of a temp dir removed at the
    /// end.
    pub work_dir: Option<PathBuf>,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        ScheduleOptions {
            workers: 1_000,
            tasks: 100_000,
            managers: 3,
            join_concurrency: 64,
            timeout_s: 600,
            agent_bin: None,
            log_level: "warn".into(),
            work_dir: None,
        }
    }
}

/// CPU ticks of the processes that share the machine, at one instant.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    leader: u64,
    followers: u64,
    this_process: u64,
    machine: u64,
}

impl Ticks {
    fn now(leader: u32, followers: &[u32]) -> anyhow::Result<Ticks> {
        let ticks = |pid| procfs::stat(pid).map(|stat| stat.cpu_ticks());
        Ok(Ticks {
            leader: ticks(leader)?,
            followers: followers
                .iter()
                .map(|pid| ticks(*pid))
                .sum::<Result<u64, _>>()?,
            this_process: ticks(std::process::id())?,
            machine: procfs::machine_busy_ticks()?,
        })
    }
}

pub async fn run(options: ScheduleOptions) -> anyhow::Result<()> {
    if options.workers == 0 || options.tasks == 0 || options.managers == 0 {
        bail!("--workers, --tasks and --managers must all be at least 1");
    }
    if options.join_concurrency == 0 {
        bail!("--join-concurrency must be at least 1");
    }
    let tasks = usize::try_from(options.tasks)?;
    let timeout = Duration::from_secs(options.timeout_s);
    let nofile = super::fleet::raise_nofile_limit();
    let clk_tck = procfs::clock_ticks_per_second();
    let bin = match &options.agent_bin {
        Some(bin) => bin.clone(),
        None => find_agent_binary()?,
    };
    println!(
        "schedule: {} managers of {}, {} simulated workers, {tasks} tasks (open files limit \
         {nofile}; managers run with --liveness-grace-ms {LIVENESS_GRACE_MS}, so that workers \
         that do not gossip stay ready)",
        options.managers,
        bin.display(),
        options.workers,
    );

    // ----- the managers ---------------------------------------------------------------------
    let mut cluster = Cluster::start_with(
        options.managers,
        ClusterOptions {
            agent: AgentOptions {
                bin: Some(bin),
                work_dir: options.work_dir.clone(),
                log_level: options.log_level.clone(),
                ready_timeout: timeout,
                extra_args: vec!["--liveness-grace-ms".into(), LIVENESS_GRACE_MS.to_string()],
            },
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
    let client = cluster.client(leader).await?;
    let token = client
        .token_show(Role::Worker)
        .await
        .context("cannot read the worker token")?
        .token;
    let manager_addrs: Vec<String> = (0..options.managers)
        .map(|index| cluster.remote_addr(index).map(|addr| addr.to_string()))
        .collect::<Result<_, _>>()?;
    let leader_pid = cluster.pid(leader).context("the leader has no process")?;
    let follower_pids: Vec<u32> = (0..options.managers)
        .filter(|index| *index != leader)
        .filter_map(|index| cluster.pid(index))
        .collect();
    println!(
        "  {} managers formed; {} leads",
        options.managers,
        cluster.name(leader)
    );

    // ----- the simulated workers ------------------------------------------------------------
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let connected = join_all(&options, &token, &manager_addrs, timeout).await?;
    let joined_in = started.elapsed();
    let node_ids: Vec<u64> = connected.iter().map(|(id, _)| *id).collect();
    let mut workers = JoinSet::new();
    for (_, worker) in connected {
        workers.spawn(worker.run(tally.clone()));
    }
    let mut counts = tally.counts();
    wait_counts(&mut counts, timeout, "every assignments stream open", |c| {
        c.streams >= options.workers
    })
    .await?;
    wait_ready(&client, &node_ids, timeout).await?;
    println!(
        "  {} workers joined, in session and following their assignments after {:.2} s; all \
         ready in the leader's node ls",
        options.workers,
        joined_in.as_secs_f64()
    );

    // ----- the run --------------------------------------------------------------------------
    let spec = ServiceSpecView {
        command: vec!["sleep".into(), "infinity".into()],
        replicas: Some(options.tasks),
        constraints: vec!["node.role==worker".into()],
        ..ServiceSpecView::default()
    };
    let before = Ticks::now(leader_pid, &follower_pids)?;
    let created = Instant::now();
    client
        .service_create(SERVICE, spec)
        .await
        .context("cannot create the service")?;
    let create_call = created.elapsed();
    wait_counts(
        &mut counts,
        timeout,
        "every task placed and reported",
        |c| c.placed >= tasks && c.reported >= tasks,
    )
    .await?;
    let after = Ticks::now(leader_pid, &follower_pids)?;
    let window = created.elapsed().as_secs_f64();
    let times = tally.times(created);
    let final_counts = *counts.borrow();
    let running = confirm_running(&client, tasks, timeout).await?;
    let leader_total_ticks = procfs::stat(leader_pid)?.cpu_ticks();
    let leader_rss = procfs::status(leader_pid)?.rss_kib;
    let follower_rss = follower_pids
        .iter()
        .map(|pid| procfs::status(*pid).map(|status| status.rss_kib))
        .collect::<Result<Vec<_>, _>>()?;
    workers.shutdown().await;

    // ----- the figures ----------------------------------------------------------------------
    let seconds = |ticks: u64| ticks as f64 / clk_tck;
    let first_placed = times.placed.first().copied().unwrap_or_default();
    let all_placed = times.placed.last().copied().unwrap_or_default();
    let all_running = times.reported.last().copied().unwrap_or_default();
    let per_sec = times.placements_per_sec();
    let peak = times.peak_per_sec();
    let leader_cpu = seconds(after.leader - before.leader);
    let followers_cpu = seconds(after.followers - before.followers);
    let sim_cpu = seconds(after.this_process - before.this_process);
    let machine_cores = seconds(after.machine - before.machine) / window;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let follower_rss_max = follower_rss.iter().copied().max().unwrap_or_default();
    println!(
        "  service create answered in {:.0} ms; first placement after {:.0} ms, all {tasks} \
         placed after {:.2} s: {per_sec:.0} placements/s (busiest second {peak})",
        millis(create_call),
        millis(first_placed),
        all_placed.as_secs_f64(),
    );
    println!(
        "  all {tasks} running after {:.2} s (the leader's service inspect says {running} \
         running)",
        all_running.as_secs_f64()
    );
    println!(
        "  CPU from create to all running: leader {leader_cpu:.2} s, followers {followers_cpu:.2} \
         s, simulated workers {sim_cpu:.2} s; the machine was busy {machine_cores:.2} cores",
    );
    println!(
        "  at the end: leader {:.2} CPU s since its start, {:.1} MiB resident; followers at most \
         {:.1} MiB",
        seconds(leader_total_ticks),
        mib(leader_rss),
        mib(follower_rss_max),
    );
    println!(
        "  stream restarts {}, report retries {}, failed session calls {}, tasks placed on two \
         workers {}",
        final_counts.stream_restarts,
        final_counts.report_retries,
        final_counts.session_failures,
        final_counts.duplicates
    );
    if let Some(why) = tally.last_report_failure() {
        println!("  the last report batch sent again had failed with: {why}");
    }
    drop(client);
    drop(cluster);
    println!(
        "{}",
        json!({
            "bench": "schedule",
            "managers": options.managers,
            "workers": options.workers,
            "tasks": tasks,
            "liveness_grace_ms": LIVENESS_GRACE_MS,
            "joined_s": round2(joined_in.as_secs_f64()),
            "create_call_ms": round2(millis(create_call)),
            "first_placement_ms": round2(millis(first_placed)),
            "all_placed_s": round2(all_placed.as_secs_f64()),
            "placements_per_sec": round2(per_sec),
            "peak_placements_per_sec": peak,
            "all_running_s": round2(all_running.as_secs_f64()),
            "placed": times.placed.len(),
            "reported_running": times.reported.len(),
            "running_in_state": running,
            "leader_cpu_s": round2(leader_cpu),
            "leader_cpu_total_s": round2(seconds(leader_total_ticks)),
            "leader_rss_mib": round2(mib(leader_rss)),
            "followers_cpu_s": round2(followers_cpu),
            "followers_rss_max_mib": round2(mib(follower_rss_max)),
            "sim_cpu_s": round2(sim_cpu),
            "machine_busy_cores": round3(machine_cores),
            "stream_restarts": final_counts.stream_restarts,
            "report_retries": final_counts.report_retries,
            "session_failures": final_counts.session_failures,
            "duplicates": final_counts.duplicates,
        })
    );
    if final_counts.duplicates > 0 {
        bail!(
            "{} tasks arrived on two workers: a task was placed twice",
            final_counts.duplicates
        );
    }
    Ok(())
}

/// Joins every simulated worker (through the managers in turn) and opens its session, at most
/// `--join-concurrency` at a time; returns each one's node id and connection.
async fn join_all(
    options: &ScheduleOptions,
    token: &str,
    manager_addrs: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<(u64, Connected)>> {
    let slots = Arc::new(Semaphore::new(options.join_concurrency));
    let mut joins = JoinSet::new();
    for index in 0..options.workers {
        let name = format!("sim-worker-{}", index + 1);
        let via = manager_addrs[index % manager_addrs.len()].clone();
        let token = token.to_string();
        let slots = slots.clone();
        joins.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let attempt = async {
                let joined = join::join(&name, &token, &via).await?;
                let node_id = joined.node_id;
                let manager = session_manager(&joined, index)?;
                let worker = SimWorker {
                    index,
                    joined,
                    manager,
                };
                worker.connect().await.map(|connected| (node_id, connected))
            };
            let outcome = tokio::time::timeout(timeout, attempt).await;
            (name, outcome)
        });
    }
    let mut connected = Vec::with_capacity(options.workers);
    let mut reported = Instant::now();
    while let Some(done) = joins.join_next().await {
        let (name, outcome) = done.context("a join task failed")?;
        match outcome {
            Ok(Ok(worker)) => connected.push(worker),
            Ok(Err(error)) => bail!("{name} did not join: {error}"),
            Err(_) => bail!("{name} did not join within {timeout:?}"),
        }
        if reported.elapsed() >= PROGRESS_EVERY {
            eprintln!(
                "  ... {} of {} workers joined",
                connected.len(),
                options.workers
            );
            reported = Instant::now();
        }
    }
    Ok(connected)
}

/// The manager worker `index` holds its session with: the managers the join named, in turn,
/// so that sessions and streams spread over them as real workers' do.
fn session_manager(
    joined: &Joined,
    index: usize,
) -> Result<symphony_agent::remote::proto::ManagerContact, error::SimError> {
    let mut managers = joined.managers.clone();
    managers.sort_by_key(|manager| manager.node_id);
    let count = managers.len();
    if count == 0 {
        return Err(error::SimError::Unexpected(
            "the join reply named no manager".into(),
        ));
    }
    Ok(managers.swap_remove(index % count))
}

/// Waits until the workers' counts satisfy `done`, saying how far they got every few seconds;
/// fails after `timeout` with the counts reached.
async fn wait_counts(
    counts: &mut tokio::sync::watch::Receiver<Counts>,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Counts) -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let wait = counts.wait_for(&done);
        match tokio::time::timeout_at(deadline.min(Instant::now() + PROGRESS_EVERY), wait).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(_)) => bail!("the workers' tally is gone"),
            Err(_) => {}
        }
        let now = *counts.borrow();
        if Instant::now() >= deadline {
            bail!("not {what} within {timeout:?}: {now:?}");
        }
        eprintln!(
            "  ... after {:.0} s: {} streams open, {} tasks placed, {} reported running",
            started.elapsed().as_secs_f64(),
            now.streams,
            now.placed,
            now.reported
        );
    }
}

/// Waits until the leader's `node ls` says every one of `ids` is ready.
async fn wait_ready(client: &Client, ids: &[u64], timeout: Duration) -> anyhow::Result<()> {
    let wanted: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
    poll_until(timeout, "every simulated worker ready", async || {
        let nodes = client
            .node_list(ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        let ready = nodes
            .iter()
            .filter(|node| wanted.contains(&node.node_id) && node.status == "ready")
            .count();
        if ready == wanted.len() {
            Ok(())
        } else {
            Err(format!("{ready} of {} ready", wanted.len()))
        }
    })
    .await?;
    Ok(())
}

/// Asks the leader how many of the service's tasks run; it must be all of them, since the
/// leader acknowledged every report.
async fn confirm_running(client: &Client, tasks: usize, timeout: Duration) -> anyhow::Result<u32> {
    let info = tokio::time::timeout(
        timeout,
        client.service_inspect(SERVICE, ReadConsistency::Stale),
    )
    .await
    .context("service inspect did not answer")??;
    let running = info.states.get("running").copied().unwrap_or_default();
    if usize::try_from(running)? != tasks {
        bail!(
            "the leader acknowledged every report, but says {running} of {tasks} tasks run ({:?})",
            info.states
        );
    }
    Ok(running)
}
