//! `testnet bench failover`: how long writes are unavailable when the leader of three managers
//! is killed with SIGKILL.
//!
//! Three managers (processes, or containers with `--backend docker`) are formed with a static
//! bootstrap. Each trial:
//! 1. waits until all three vote and have applied the leader's commit index;
//! 2. starts `--clients` writers, spread over the two followers' control sockets (so every
//!    write is forwarded to the leader); a writer whose call fails (or takes longer than the
//!    attempt timeout) moves on to the next manager in turn, so after the kill it retries
//!    through the survivors;
//! 3. once `--writes-before-kill` writes of this trial were acknowledged, kills the leader;
//! 4. waits for the first acknowledged write that was *sent* after the kill, stops the load;
//! 5. restarts the killed node on its dir and ports.
//!
//! The unavailability window of a trial is the time between the last write acknowledged before
//! the kill and the first acknowledged write sent after it (writes in flight at the kill whose
//! answers arrive afterwards do not end the window: they say nothing about the new leader).
//! The benchmark prints each window and their median (nearest-rank, as every benchmark's; see
//! [`super::latency`]), then checks that no acknowledged write was
//! lost and, as its last line, prints one JSON object.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use symphony_ctl::Client;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::figures::{millis, round2};
use super::kv::{bench_options, count_lost, start_cluster, stop_cluster};
use super::latency::Latencies;
use crate::harness::{Cluster, poll_until};
use crate::lab::BackendKind;
use crate::splitmix::SplitMix64;

const MANAGERS: usize = 3;
/// One write may take this long before the writer gives up on that manager and moves on.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// A writer's pause after a failed call, so that a dead manager's refused connections do not
/// turn into a busy loop. It bounds how precisely the window is measured.
const RETRY_PAUSE: Duration = Duration::from_millis(5);

/// What `testnet bench failover` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverOptions {
    /// How many times the leader is killed (and restarted).
    pub trials: usize,
    /// Which backend runs the managers.
    pub backend: BackendKind,
    /// Concurrent writers, spread over the two followers.
    pub clients: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Acknowledged writes of the load in each trial before the leader is killed.
    pub writes_before_kill: u64,
    /// How long, in seconds, writes may stay unavailable after a kill before the benchmark
    /// gives up.
    pub recovery_timeout_s: u64,
    /// The agent binary; `None`: `$SYMPHONY_AGENT_BIN` or next to this executable.
    pub agent_bin: Option<PathBuf>,
    /// Passed to the agents: take a snapshot every this many entries.
    pub snapshot_interval: u64,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        FailoverOptions {
            trials: 5,
            backend: BackendKind::Local,
            clients: 8,
            value_size: 64,
            writes_before_kill: 200,
            recovery_timeout_s: 30,
            agent_bin: None,
            snapshot_interval: 10_000,
        }
    }
}

/// One acknowledged write, as a writer saw it.
#[derive(Debug)]
struct Ack {
    key: String,
    value: Vec<u8>,
    revision: u64,
    sent: Instant,
    acked: Instant,
}

/// What one writer did during a trial.
#[derive(Debug, Default)]
struct WriterResult {
    acks: Vec<Ack>,
    errors: u64,
    first_error: Option<String>,
}

/// State shared between the trial driver and its writers.
#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// Acknowledged writes in this trial.
    acked: AtomicU64,
    /// The latest send time, in nanoseconds since `base`, of an acknowledged write.
    latest_acked_send_ns: AtomicU64,
    base: Instant,
}

impl Shared {
    fn nanos_since_base(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// One trial's outcome.
#[derive(Debug)]
struct Trial {
    window: Duration,
    killed: String,
    writes: usize,
    errors: u64,
}

pub async fn run(options: FailoverOptions) -> anyhow::Result<()> {
    if options.trials == 0 || options.clients == 0 {
        bail!("--trials and --clients must both be at least 1");
    }
    let cluster_options = bench_options(
        options.backend,
        options.agent_bin.clone(),
        options.snapshot_interval,
    );
    let mut cluster = start_cluster(MANAGERS, cluster_options).await?;

    let mut trials = Vec::with_capacity(options.trials);
    for number in 1..=options.trials {
        let trial = run_trial(&mut cluster, &options, number)
            .await
            .with_context(|| format!("trial {number} failed"))?;
        println!(
            "trial {number}: killed {} (leader), writes unavailable for {:.1} ms ({} writes, {} failed calls)",
            trial.killed,
            millis(trial.window),
            trial.writes,
            trial.errors
        );
        trials.push(trial);
    }

    let lost = count_lost(&cluster).await?;
    let windows_ms: Vec<f64> = trials
        .iter()
        .map(|trial| round2(millis(trial.window)))
        .collect();
    let windows = Latencies::new(trials.iter().map(|trial| trial.window));
    let median_ms = round2(millis(windows.median().unwrap_or_default()));
    let max_ms = round2(millis(windows.max().unwrap_or_default()));
    println!(
        "failover: median unavailability {median_ms:.1} ms, max {max_ms:.1} ms over {} trials",
        trials.len()
    );
    println!(
        "  acknowledged writes: {}, lost: {lost}",
        cluster.acknowledged().len()
    );
    stop_cluster(&mut cluster).await;

    // The last line is for scripts.
    println!(
        "{}",
        json!({
            "bench": "failover",
            "backend": options.backend.as_str(),
            "trials": trials.len(),
            "clients": options.clients,
            "median_ms": median_ms,
            "max_ms": max_ms,
            "windows_ms": windows_ms,
            "acknowledged": cluster.acknowledged().len(),
            "lost": lost,
        })
    );
    if lost > 0 {
        bail!("{lost} acknowledged writes were lost");
    }
    Ok(())
}

async fn run_trial(
    cluster: &mut Cluster,
    options: &FailoverOptions,
    number: usize,
) -> anyhow::Result<Trial> {
    cluster
        .wait_membership(MANAGERS, 0)
        .await
        .context("the cluster does not have three voters")?;
    cluster
        .wait_caught_up()
        .await
        .context("the managers did not catch up")?;
    let leader = cluster.leader().await?;
    let followers: Vec<usize> = (0..cluster.len())
        .filter(|index| *index != leader)
        .collect();
    // Followers first, then the leader: a writer starts on "its" follower and, on failure,
    // tries the other follower, then the (old) leader, and so on.
    let mut order = Vec::with_capacity(cluster.len());
    for index in followers.iter().chain(std::iter::once(&leader)) {
        order.push(cluster.socket_path(*index)?);
    }

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        acked: AtomicU64::new(0),
        latest_acked_send_ns: AtomicU64::new(0),
        base: Instant::now(),
    });
    let writers: Vec<JoinHandle<WriterResult>> = (0..options.clients)
        .map(|client| {
            let writer = Writer {
                trial: number,
                client,
                sockets: order.clone(),
                // Round-robin over the two followers.
                position: client % followers.len().max(1),
                value_size: options.value_size,
                shared: Arc::clone(&shared),
            };
            tokio::spawn(writer.run())
        })
        .collect();

    let outcome = measure_kill(cluster, options, &shared, leader).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut results = Vec::with_capacity(writers.len());
    for writer in writers {
        results.push(writer.await.context("a writer task failed")?);
    }
    let killed_at = outcome?;

    let mut last_before: Option<Instant> = None;
    let mut first_after: Option<Instant> = None;
    let mut writes = 0;
    let mut errors = 0;
    let mut first_error = None;
    for result in &results {
        errors += result.errors;
        if first_error.is_none() {
            first_error.clone_from(&result.first_error);
        }
        for ack in &result.acks {
            writes += 1;
            cluster
                .acknowledged()
                .record(&ack.key, &ack.value, ack.revision);
            if ack.acked <= killed_at {
                last_before = last_before.max(Some(ack.acked));
            }
            if ack.sent >= killed_at {
                first_after = Some(first_after.map_or(ack.acked, |first| first.min(ack.acked)));
            }
        }
    }
    if let Some(error) = first_error {
        println!("  trial {number}: first failed call: {error}");
    }
    let (Some(last_before), Some(first_after)) = (last_before, first_after) else {
        bail!("no write was acknowledged before or after the kill");
    };

    let killed = cluster.name(leader);
    cluster
        .restart(leader)
        .await
        .with_context(|| format!("cannot restart {killed}"))?;
    Ok(Trial {
        window: first_after.saturating_duration_since(last_before),
        killed,
        writes,
        errors,
    })
}

/// Waits for the load to run, kills the leader, and waits for the first write sent after the
/// kill to be acknowledged. Returns the moment of the kill.
async fn measure_kill(
    cluster: &mut Cluster,
    options: &FailoverOptions,
    shared: &Shared,
    leader: usize,
) -> anyhow::Result<Instant> {
    poll_until(
        Duration::from_secs(options.recovery_timeout_s),
        "the write load to get going",
        async || {
            let acked = shared.acked.load(Ordering::Relaxed);
            if acked >= options.writes_before_kill {
                Ok(())
            } else {
                Err(format!("{acked} writes acknowledged"))
            }
        },
    )
    .await?;
    cluster.kill9(leader)?;
    let killed_at = Instant::now();
    let killed_ns = shared.nanos_since_base(killed_at);
    poll_until(
        Duration::from_secs(options.recovery_timeout_s),
        "a write sent after the kill to be acknowledged",
        async || {
            if shared.latest_acked_send_ns.load(Ordering::Relaxed) >= killed_ns {
                Ok(())
            } else {
                Err("none yet")
            }
        },
    )
    .await?;
    Ok(killed_at)
}

/// One writer of the steady load.
struct Writer {
    trial: usize,
    client: usize,
    /// The managers' control sockets, tried in turn from `position`.
    sockets: Vec<PathBuf>,
    position: usize,
    value_size: usize,
    shared: Arc<Shared>,
}

impl Writer {
    async fn run(mut self) -> WriterResult {
        let mut result = WriterResult::default();
        let mut values = SplitMix64::new((self.trial as u64) << 32 | self.client as u64);
        let mut connection: Option<Client> = None;
        let mut n = 0u64;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let key = format!("bench/failover/{}/{}/{n}", self.trial, self.client);
            let value = values.bytes(self.value_size);
            let sent = Instant::now();
            let socket = &self.sockets[self.position % self.sockets.len()];
            let call = async {
                let client = match connection.as_mut() {
                    Some(client) => client,
                    None => connection.insert(Client::connect(socket).await?),
                };
                client.kv_put(key.clone(), value.clone(), None).await
            };
            match tokio::time::timeout(ATTEMPT_TIMEOUT, call).await {
                Ok(Ok(written)) => {
                    let acked = Instant::now();
                    self.shared.acked.fetch_add(1, Ordering::Relaxed);
                    self.shared
                        .latest_acked_send_ns
                        .fetch_max(self.shared.nanos_since_base(sent), Ordering::Relaxed);
                    result.acks.push(Ack {
                        key,
                        value,
                        revision: written.revision,
                        sent,
                        acked,
                    });
                    n += 1;
                }
                outcome => {
                    let error = match outcome {
                        Ok(Err(error)) => error.to_string(),
                        _ => format!("no answer within {ATTEMPT_TIMEOUT:?}"),
                    };
                    result.errors += 1;
                    result
                        .first_error
                        .get_or_insert_with(|| format!("{}: {error}", socket.display()));
                    // Whatever went wrong, try the next manager on a fresh connection. The key
                    // is not reused: the failed write may still have been applied.
                    connection = None;
                    self.position += 1;
                    n += 1;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        result
    }
}
