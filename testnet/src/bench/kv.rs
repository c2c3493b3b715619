//! `testnet bench kv`: write throughput and latency of the replicated KV store.
//!
//! One manager in a temp dir is initialised and waited on until it leads; after a short
//! unmeasured warm-up, `--clients` tasks, each on its own control connection, take write
//! numbers from one shared counter until `--ops` writes were issued, timing each put. Keys are
//! spread over `bench/<client>/<n>` so that no two writes hit the same key.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use symphony_ctl::Client;
use tokio::sync::Barrier;
use tokio::time::Instant;

use super::latency::LatencySummary;
use crate::cli::KvBenchArgs;
use crate::harness::{AgentOptions, AgentProcess};

const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// What one client task measured.
#[derive(Debug, Default)]
struct ClientResult {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run(args: KvBenchArgs) -> anyhow::Result<()> {
    if args.managers != 1 {
        bail!(
            "multi-manager benchmarks need manager clusters (not available yet); use --managers 1"
        );
    }
    if args.clients == 0 || args.ops == 0 {
        bail!("--clients and --ops must both be at least 1");
    }

    let options = AgentOptions {
        bin: args.agent_bin.clone(),
        // The agent's own logging would otherwise compete with the benchmark for the disk.
        log_level: "warn".to_string(),
        extra_args: vec![
            "--snapshot-interval".to_string(),
            args.snapshot_interval.to_string(),
        ],
        ..AgentOptions::default()
    };
    let mut agent = AgentProcess::start_with(options)
        .await
        .context("cannot start the manager")?;
    println!(
        "manager started: pid {}, config dir {}",
        agent.pid().unwrap_or_default(),
        agent.config_dir().display()
    );
    let mut admin = agent.client().await?;
    admin.init().await.context("cannot init the cluster")?;
    agent
        .wait_leader(LEADER_TIMEOUT)
        .await
        .context("the manager did not become leader")?;

    warm_up(&mut admin, args.warmup, args.value_size).await?;
    let started = Instant::now();
    let mut results = measure(&agent, &args).await?;
    let elapsed = started.elapsed();

    let errors: u64 = results.iter().map(|result| result.errors).sum();
    let first_error = results.iter().find_map(|result| result.first_error.clone());
    let mut latencies: Vec<Duration> = results
        .iter_mut()
        .flat_map(|result| std::mem::take(&mut result.latencies))
        .collect();
    let written = latencies.len();
    let summary = LatencySummary::from_samples(&mut latencies);
    let writes_per_sec = written as f64 / elapsed.as_secs_f64().max(f64::EPSILON);

    println!(
        "kv put: {written} writes of {} bytes by {} clients in {:.2} s",
        args.value_size,
        args.clients,
        elapsed.as_secs_f64()
    );
    println!("  throughput: {writes_per_sec:.1} writes/s");
    println!(
        "  latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        summary.p50_ms, summary.p99_ms, summary.max_ms
    );
    println!("  errors: {errors}");
    if let Some(error) = first_error {
        println!("  first error: {error}");
    }

    let exit = agent.terminate(SHUTDOWN_TIMEOUT).await;
    match exit {
        Ok(status) if status.success() => {}
        Ok(status) => eprintln!("warning: the manager exited with {status} after SIGTERM"),
        Err(error) => eprintln!("warning: the manager did not shut down cleanly: {error}"),
    }

    // The last line is for scripts.
    println!(
        "{}",
        json!({
            "bench": "kv",
            "managers": args.managers,
            "clients": args.clients,
            "ops": args.ops,
            "value_size": args.value_size,
            "writes_per_sec": round2(writes_per_sec),
            "p50_ms": round2(summary.p50_ms),
            "p99_ms": round2(summary.p99_ms),
            "max_ms": round2(summary.max_ms),
            "errors": errors,
            "elapsed_s": round2(elapsed.as_secs_f64()),
        })
    );
    Ok(())
}

/// Unmeasured sequential writes, so that the measurement does not include the store's first
/// allocations and the first Raft round trips.
async fn warm_up(client: &mut Client, writes: u64, value_size: usize) -> anyhow::Result<()> {
    let mut values = ValueSource::new(u64::MAX);
    for n in 0..writes {
        client
            .kv_put(format!("warmup/{n}"), values.next_value(value_size), None)
            .await
            .context("a warm-up write failed")?;
    }
    Ok(())
}

/// Runs the client tasks and returns what each measured. All clients connect before any
/// writes, and start together.
async fn measure(agent: &AgentProcess, args: &KvBenchArgs) -> anyhow::Result<Vec<ClientResult>> {
    let mut clients = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        clients.push(
            agent
                .client()
                .await
                .context("a benchmark client cannot connect")?,
        );
    }
    let next_op = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(args.clients));
    let mut tasks = Vec::with_capacity(args.clients);
    for (index, client) in clients.into_iter().enumerate() {
        let worker = ClientWorker {
            index,
            client,
            socket: agent.socket_path(),
            next_op: Arc::clone(&next_op),
            total_ops: args.ops,
            value_size: args.value_size,
        };
        let start = Arc::clone(&start);
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            worker.run().await
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.context("a benchmark client task failed")?);
    }
    Ok(results)
}

/// One benchmark client: takes write numbers from the shared counter until none are left.
struct ClientWorker {
    index: usize,
    client: Client,
    socket: PathBuf,
    next_op: Arc<AtomicU64>,
    total_ops: u64,
    value_size: usize,
}

impl ClientWorker {
    async fn run(mut self) -> ClientResult {
        let mut result = ClientResult::default();
        let mut values = ValueSource::new(self.index as u64);
        loop {
            let op = self.next_op.fetch_add(1, Ordering::Relaxed);
            if op >= self.total_ops {
                return result;
            }
            let key = format!("bench/{}/{op}", self.index);
            let value = values.next_value(self.value_size);
            let sent = Instant::now();
            match self.client.kv_put(key, value, None).await {
                Ok(_) => result.latencies.push(sent.elapsed()),
                Err(error) => {
                    result.errors += 1;
                    let broken = error.remote().is_none();
                    result.first_error.get_or_insert_with(|| error.to_string());
                    // A transport error leaves the connection unusable: reconnect once, and
                    // leave the remaining writes to the other clients if that fails too.
                    if broken && !self.reconnect(&mut result).await {
                        return result;
                    }
                }
            }
        }
    }

    async fn reconnect(&mut self, result: &mut ClientResult) -> bool {
        match Client::connect(&self.socket).await {
            Ok(client) => {
                self.client = client;
                true
            }
            Err(error) => {
                result.first_error.get_or_insert_with(|| error.to_string());
                false
            }
        }
    }
}

/// Random-looking values without a random number generator crate: splitmix64, seeded per
/// client so that clients write different bytes (no store can profit from repetition).
struct ValueSource {
    state: u64,
}

impl ValueSource {
    fn new(seed: u64) -> ValueSource {
        ValueSource {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_value(&mut self, len: usize) -> Vec<u8> {
        let mut value = Vec::with_capacity(len + 8);
        while value.len() < len {
            value.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        value.truncate(len);
        value
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_asked_length_and_differ() {
        let mut values = ValueSource::new(1);
        let first = values.next_value(256);
        let second = values.next_value(256);
        assert_eq!(first.len(), 256);
        assert_eq!(values.next_value(3).len(), 3);
        assert_ne!(first, second);
        assert_ne!(
            ValueSource::new(2).next_value(16),
            ValueSource::new(3).next_value(16)
        );
    }
}
