//! `testnet bench kv`: write (or linearizable read) throughput and latency of the replicated KV
//! store.
//!
//! `--managers` agents of a [`Cluster`] in a temp dir — processes on 127.0.0.1 with `--backend
//! local` (the default), containers with `--backend docker` — are formed into one cluster
//! (one manager: `init`; more: a
//! static bootstrap, `init --peers` on the first and `init --join-addr` on the others) and
//! waited on until every manager votes under one leader. After a short unmeasured warm-up,
//! `--clients` tasks, each on its own control connection, take write numbers from one shared
//! counter until `--ops` writes were issued, timing each put. With `--target all` (the default)
//! client `i` talks to manager `i mod managers`, so most writes go through followers, which
//! forward them to the leader; with `--target leader` every client talks to the leader. Keys are
//! spread over `bench/<client>/<n>` so that no two writes hit the same key. Afterwards every
//! acknowledged write is read back (linearizably, through the leader) and any missing one is
//! counted as lost.
//!
//! With `--op get` the clients read instead: `--keys` keys are written first (unmeasured, as
//! etcd's benchmark does), then each client reads keys picked at random, linearizably — the
//! manager a client talks to confirms with a quorum that the leader still leads, through the
//! leader when it is a follower. A read that does not return its key's value counts as an
//! error. With `--op mixed` each operation is a read of the same kind with probability
//! `--read-ratio`, and otherwise a put of a new key; reads and writes are counted and timed
//! apart, and every acknowledged write is read back as with puts.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use symphony_ctl::proto::ReadConsistency;
use symphony_ctl::{Client, ClientError};
use tokio::sync::Barrier;
use tokio::time::Instant;

use super::figures::round2;
use super::latency::Latencies;
use crate::harness::{AgentOptions, Cluster, ClusterOptions};
use crate::lab::BackendKind;
use crate::procfs;
use crate::splitmix::SplitMix64;

const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
const KEY_PREFIX: &str = "bench/";

/// What `testnet bench kv` measures.
#[derive(Debug, Clone, PartialEq)]
pub struct KvOptions {
    /// How many managers the cluster has; more than one are formed with a static bootstrap.
    pub managers: usize,
    /// Which backend runs them.
    pub backend: BackendKind,
    /// Which managers the clients write through.
    pub target: Target,
    /// Concurrent clients, each with its own control connection.
    pub clients: usize,
    /// Measured operations, in total over all clients.
    pub ops: u64,
    /// Puts, or linearizable gets.
    pub op: Op,
    /// For gets: how many keys are written first and read.
    pub keys: u64,
    /// For `Op::Mixed`: the share of operations that are reads, from 0 to 1.
    pub read_ratio: f64,
    /// Bytes per value.
    pub value_size: usize,
    /// Unmeasured writes before the measurement, to warm up the agent and its store.
    pub warmup: u64,
    /// The agent binary; `None`: `$SYMPHONY_AGENT_BIN` or next to this executable.
    pub agent_bin: Option<PathBuf>,
    /// Passed to the agents: take a snapshot every this many entries.
    pub snapshot_interval: u64,
}

impl Default for KvOptions {
    fn default() -> Self {
        KvOptions {
            managers: 1,
            backend: BackendKind::Local,
            target: Target::All,
            clients: 64,
            ops: 10_000,
            op: Op::Put,
            keys: 2_000,
            read_ratio: 0.9,
            value_size: 256,
            warmup: 200,
            agent_bin: None,
            snapshot_interval: 10_000,
        }
    }
}

/// What the benchmark clients do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    /// A put of a new key.
    Put,
    /// A linearizable get of a key written before the measurement.
    Get,
    /// Gets and puts, mixed by `--read-ratio`.
    Mixed,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Mixed => "mixed",
        }
    }
}

/// Which managers the benchmark clients talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Only the leader: no forwarding.
    Leader,
    /// All managers round-robin: writes to followers are forwarded to the leader.
    All,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Leader => "leader",
            Target::All => "all",
        }
    }
}

/// What one client task measured.
#[derive(Debug, Default)]
struct ClientResult {
    /// Of the acknowledged writes.
    latencies: Vec<Duration>,
    /// Of the reads that returned their key's value.
    read_latencies: Vec<Duration>,
    /// Every acknowledged write: key, value, revision.
    acknowledged: Vec<(String, Vec<u8>, u64)>,
    errors: u64,
    first_error: Option<String>,
}

/// Cluster options for benchmarks: quiet logs (the agents' logging would otherwise compete
/// with the benchmark for the disk) and the asked snapshot interval.
pub(crate) fn bench_options(
    backend: BackendKind,
    agent_bin: Option<PathBuf>,
    snapshot_interval: u64,
) -> ClusterOptions {
    ClusterOptions {
        backend,
        agent: AgentOptions {
            bin: agent_bin,
            log_level: "warn".to_string(),
            extra_args: vec![
                "--snapshot-interval".to_string(),
                snapshot_interval.to_string(),
            ],
            ..AgentOptions::default()
        },
        ..ClusterOptions::default()
    }
}

/// Starts `managers` agents and forms them into one cluster in which all of them vote.
pub(crate) async fn start_cluster(
    managers: usize,
    options: ClusterOptions,
) -> anyhow::Result<Cluster> {
    let mut cluster = Cluster::start_with(managers, options)
        .await
        .context("cannot start the managers")?;
    for index in 0..cluster.len() {
        let node = cluster.record(index)?;
        println!(
            "{} started: {}, config dir {}",
            node.name,
            node.handle
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            node.config_dir.display()
        );
    }
    cluster
        .bootstrap_static()
        .await
        .context("cannot form the cluster")?;
    Ok(cluster)
}

/// Stops every running manager with SIGTERM, warning about any that does not stop cleanly.
pub(crate) async fn stop_cluster(cluster: &mut Cluster) {
    for index in 0..cluster.len() {
        if !cluster.is_running(index) {
            continue;
        }
        let name = cluster.name(index);
        if let Err(error) = cluster.terminate(index, SHUTDOWN_TIMEOUT).await {
            eprintln!("warning: {name} did not shut down cleanly: {error}");
        }
    }
}

pub async fn run(options: KvOptions) -> anyhow::Result<()> {
    if options.managers == 0 || options.clients == 0 || options.ops == 0 {
        bail!("--managers, --clients and --ops must all be at least 1");
    }
    if options.op != Op::Put && options.keys == 0 {
        bail!("--op get and --op mixed need --keys of at least 1");
    }
    if !(0.0..=1.0).contains(&options.read_ratio) {
        bail!("--read-ratio must be between 0 and 1");
    }

    let cluster_options = bench_options(
        options.backend,
        options.agent_bin.clone(),
        options.snapshot_interval,
    );
    let mut cluster = start_cluster(options.managers, cluster_options).await?;
    let leader = cluster
        .leader()
        .await
        .context("the cluster did not elect a leader")?;
    println!(
        "{} managers formed; {} leads",
        options.managers,
        cluster.name(leader)
    );
    let targets: Vec<PathBuf> = match options.target {
        Target::Leader => vec![cluster.socket_path(leader)?],
        Target::All => (0..cluster.len())
            .map(|index| cluster.socket_path(index))
            .collect::<Result<_, _>>()?,
    };

    let mut admin = cluster.client(leader).await?;
    warm_up(&mut admin, options.warmup, options.value_size).await?;
    if options.op != Op::Put {
        write_read_set(&targets, &options).await?;
    }
    let usage = Usage::of(&cluster);
    let cpu_before = usage.cpu_ticks();
    let started = Instant::now();
    let mut results = measure(&targets, &options).await?;
    let elapsed = started.elapsed();
    let cpu_after = usage.cpu_ticks();
    let rss_mib = usage.rss_mib();

    let errors: u64 = results.iter().map(|result| result.errors).sum();
    let first_error = results.iter().find_map(|result| result.first_error.clone());
    for result in &mut results {
        for (key, value, revision) in result.acknowledged.drain(..) {
            cluster.acknowledged().record(&key, &value, revision);
        }
    }
    let writes = Latencies::new(results.iter().flat_map(|result| result.latencies.clone()));
    let reads = Latencies::new(
        results
            .iter()
            .flat_map(|result| result.read_latencies.clone()),
    );
    let latencies = Latencies::new(
        results
            .iter()
            .flat_map(|result| result.latencies.iter().chain(&result.read_latencies))
            .copied(),
    );
    let written = latencies.len();
    let summary = latencies.summary();
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    let writes_per_sec = written as f64 / seconds;
    let lost = count_lost(&cluster).await?;
    let (what, unit) = match options.op {
        Op::Put => ("put", "writes"),
        Op::Get => ("get (linearizable)", "reads"),
        Op::Mixed => ("mixed (linearizable gets and puts)", "operations"),
    };

    println!(
        "kv {what}: {written} {unit} of {} bytes by {} clients through {} ({} managers, {} backend) \
         in {:.2} s",
        options.value_size,
        options.clients,
        match options.target {
            Target::Leader => "the leader",
            Target::All => "all managers",
        },
        options.managers,
        options.backend,
        elapsed.as_secs_f64()
    );
    println!("  throughput: {writes_per_sec:.1} {unit}/s");
    println!(
        "  latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        summary.p50_ms, summary.p99_ms, summary.max_ms
    );
    if options.op == Op::Mixed {
        for (kind, kind_latencies) in [("reads", &reads), ("writes", &writes)] {
            let kind_summary = kind_latencies.summary();
            println!(
                "  {kind}: {} ({:.1}/s), p50 {:.2} ms, p99 {:.2} ms",
                kind_latencies.len(),
                kind_latencies.len() as f64 / seconds,
                kind_summary.p50_ms,
                kind_summary.p99_ms
            );
        }
    }
    println!("  errors: {errors}");
    if let Some(error) = first_error {
        println!("  first error: {error}");
    }
    println!("  acknowledged writes lost: {lost}");
    let cpu_s = cpu_before
        .zip(cpu_after)
        .map(|(before, after)| after.saturating_sub(before) as f64 / usage.clk_tck);
    // CPU per operation is what decides on shared cores: a change that buys throughput with
    // more CPU shows here.
    let cpu_ms_per_1000 = cpu_s
        .filter(|_| written > 0)
        .map(|seconds| seconds * 1000.0 / (written as f64 / 1000.0));
    if let (Some(seconds), Some(per_1000), Some(rss)) = (cpu_s, cpu_ms_per_1000, &rss_mib) {
        println!(
            "  managers' CPU: {seconds:.2} s over the run, {per_1000:.1} ms per 1,000 {unit}; \
             resident at the end: {} MiB",
            rss.iter()
                .map(|mib| format!("{mib:.1}"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
    }

    stop_cluster(&mut cluster).await;

    // The last line is for scripts.
    println!(
        "{}",
        json!({
            "bench": "kv",
            "op": options.op.as_str(),
            "managers": options.managers,
            "backend": options.backend.as_str(),
            "target": options.target.as_str(),
            "clients": options.clients,
            "ops": options.ops,
            "value_size": options.value_size,
            "ops_per_sec": round2(writes_per_sec),
            "writes_per_sec": (options.op != Op::Get).then(|| round2(writes.len() as f64 / seconds)),
            "reads_per_sec": (options.op != Op::Put).then(|| round2(reads.len() as f64 / seconds)),
            "read_ratio": (options.op == Op::Mixed).then_some(options.read_ratio),
            "write_p99_ms": (options.op == Op::Mixed).then(|| round2(writes.summary().p99_ms)),
            "read_p99_ms": (options.op == Op::Mixed).then(|| round2(reads.summary().p99_ms)),
            "p50_ms": round2(summary.p50_ms),
            "p99_ms": round2(summary.p99_ms),
            "max_ms": round2(summary.max_ms),
            "errors": errors,
            "lost": lost,
            "elapsed_s": round2(elapsed.as_secs_f64()),
            "managers_cpu_s": cpu_s.map(round2),
            "cpu_ms_per_1000_ops": cpu_ms_per_1000.map(round2),
            "managers_rss_mib": rss_mib.map(|rss| rss.into_iter().map(round2).collect::<Vec<_>>()),
        })
    );
    Ok(())
}

/// The managers' processes, for the CPU time they spend and the memory they hold; nothing with
/// a backend whose processes this one cannot read in /proc.
struct Usage {
    pids: Option<Vec<u32>>,
    clk_tck: f64,
}

impl Usage {
    fn of(cluster: &Cluster) -> Usage {
        let pids: Option<Vec<u32>> = (0..cluster.len()).map(|index| cluster.pid(index)).collect();
        Usage {
            pids: pids.filter(|pids| pids.iter().all(|pid| procfs::stat(*pid).is_ok())),
            clk_tck: procfs::clock_ticks_per_second(),
        }
    }

    /// The managers' user and system time together, in clock ticks.
    fn cpu_ticks(&self) -> Option<u64> {
        self.pids
            .as_ref()?
            .iter()
            .map(|pid| procfs::stat(*pid).ok().map(|stat| stat.cpu_ticks()))
            .sum()
    }

    /// Each manager's resident memory, in MiB.
    fn rss_mib(&self) -> Option<Vec<f64>> {
        self.pids
            .as_ref()?
            .iter()
            .map(|pid| {
                procfs::status(*pid)
                    .ok()
                    .map(|status| status.rss_kib as f64 / 1024.0)
            })
            .collect()
    }
}

/// How many acknowledged benchmark writes a linearizable read through the leader misses.
/// Keys are read back one writer's prefix at a time, so no single reply nears the frame limit.
pub(crate) async fn count_lost(cluster: &Cluster) -> anyhow::Result<usize> {
    let leader = cluster.leader().await?;
    let client = cluster.client(leader).await?;
    let writers: BTreeSet<String> = cluster
        .acknowledged()
        .keys_with_prefix(KEY_PREFIX)
        .into_iter()
        .filter_map(|key| {
            let writer = key.strip_prefix(KEY_PREFIX)?.split('/').next()?;
            Some(format!("{KEY_PREFIX}{writer}/"))
        })
        .collect();
    let mut lost = 0;
    for prefix in writers {
        let listing = client
            .kv_list(prefix.clone(), ReadConsistency::Linearizable)
            .await
            .context("cannot read the written keys back")?;
        let (missing, examples) = cluster
            .acknowledged()
            .missing_from(&prefix, &listing.entries);
        for example in examples {
            eprintln!("lost: {example}");
        }
        lost += missing;
    }
    Ok(lost)
}

/// Unmeasured sequential writes, so that the measurement does not include the store's first
/// allocations and the first Raft round trips.
async fn warm_up(client: &mut Client, writes: u64, value_size: usize) -> anyhow::Result<()> {
    let mut values = SplitMix64::new(u64::MAX);
    for n in 0..writes {
        client
            .kv_put(format!("warmup/{n}"), values.bytes(value_size), None)
            .await
            .context("a warm-up write failed")?;
    }
    Ok(())
}

/// The value read set key `n` holds: derived from `n`, so a reader can check what it got.
fn read_set_value(n: u64, size: usize) -> Vec<u8> {
    SplitMix64::new(n ^ 0x5eed).bytes(size)
}

fn read_set_key(n: u64) -> String {
    format!("read/{n}")
}

/// Writes the keys `--op get` reads (unmeasured), up to 64 at a time.
async fn write_read_set(targets: &[PathBuf], options: &KvOptions) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for index in 0..options.clients.min(64) {
        let socket = targets[index % targets.len()].clone();
        let next = Arc::clone(&next);
        let (keys, size) = (options.keys, options.value_size);
        writers.push(tokio::spawn(async move {
            let client = Client::connect(&socket).await?;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= keys {
                    return anyhow::Ok(());
                }
                client
                    .kv_put(read_set_key(n), read_set_value(n, size), None)
                    .await?;
            }
        }));
    }
    for writer in writers {
        writer
            .await
            .context("a writer of the read set failed")?
            .context("the read set could not be written")?;
    }
    Ok(())
}

/// Runs the client tasks and returns what each measured. Client `i` talks to
/// `targets[i mod len]`. All clients connect before any writes, and start together.
async fn measure(targets: &[PathBuf], options: &KvOptions) -> anyhow::Result<Vec<ClientResult>> {
    let mut clients = Vec::with_capacity(options.clients);
    for index in 0..options.clients {
        let socket = targets[index % targets.len()].clone();
        let client = Client::connect(&socket)
            .await
            .context("a benchmark client cannot connect")?;
        clients.push((socket, client));
    }
    let next_op = Arc::new(AtomicU64::new(0));
    let start = Arc::new(Barrier::new(options.clients));
    let mut tasks = Vec::with_capacity(options.clients);
    for (index, (socket, client)) in clients.into_iter().enumerate() {
        let worker = ClientWorker {
            index,
            client,
            socket,
            next_op: Arc::clone(&next_op),
            total_ops: options.ops,
            value_size: options.value_size,
            op: options.op,
            keys: options.keys,
            read_ratio: options.read_ratio,
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

/// `bits` as a fraction in [0, 1): its top 53 bits over 2^53.
fn unit_fraction(bits: u64) -> f64 {
    const SCALE: f64 = (1u64 << 53) as f64;
    (bits >> 11) as f64 / SCALE
}

/// One benchmark client: takes write numbers from the shared counter until none are left.
struct ClientWorker {
    index: usize,
    client: Client,
    socket: PathBuf,
    next_op: Arc<AtomicU64>,
    total_ops: u64,
    value_size: usize,
    op: Op,
    keys: u64,
    read_ratio: f64,
}

impl ClientWorker {
    /// Takes operation numbers until none are left; each is a read or a write by `--op`.
    async fn run(mut self) -> ClientResult {
        let mut result = ClientResult::default();
        let mut picks = SplitMix64::new(0x9e37_79b9 ^ self.index as u64);
        // Seeded per client, so that clients write different bytes (no store can profit from
        // repetition).
        let mut values = SplitMix64::new(self.index as u64);
        loop {
            let op = self.next_op.fetch_add(1, Ordering::Relaxed);
            if op >= self.total_ops {
                return result;
            }
            let read = match self.op {
                Op::Put => false,
                Op::Get => true,
                // The top 53 bits as a fraction in [0, 1).
                Op::Mixed => unit_fraction(picks.next_u64()) < self.read_ratio,
            };
            let goes_on = if read {
                let n = picks.next_u64() % self.keys;
                self.get(n, &mut result).await
            } else {
                let value = values.bytes(self.value_size);
                self.put(op, value, &mut result).await
            };
            if !goes_on {
                return result;
            }
        }
    }

    /// A linearizable read of read-set key `n`, checked against its value; whether the
    /// client goes on.
    async fn get(&mut self, n: u64, result: &mut ClientResult) -> bool {
        let sent = Instant::now();
        match self
            .client
            .kv_get(read_set_key(n), ReadConsistency::Linearizable)
            .await
        {
            Ok(Some(entry)) if entry.value == read_set_value(n, self.value_size) => {
                result.read_latencies.push(sent.elapsed());
                true
            }
            Ok(other) => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert_with(|| format!("{} read back {other:?}", read_set_key(n)));
                true
            }
            Err(error) => self.failed(result, &error).await,
        }
    }

    /// A put of this client's key for operation `op`; whether the client goes on.
    async fn put(&mut self, op: u64, value: Vec<u8>, result: &mut ClientResult) -> bool {
        let key = format!("{KEY_PREFIX}{}/{op}", self.index);
        let sent = Instant::now();
        match self.client.kv_put(key.clone(), value.clone(), None).await {
            Ok(written) => {
                result.latencies.push(sent.elapsed());
                result.acknowledged.push((key, value, written.revision));
                true
            }
            Err(error) => self.failed(result, &error).await,
        }
    }

    /// Counts a failed operation; whether the client goes on. A transport error leaves the
    /// connection unusable: it reconnects once, and leaves the remaining operations to the
    /// other clients if that fails too.
    async fn failed(&mut self, result: &mut ClientResult, error: &ClientError) -> bool {
        result.errors += 1;
        result.first_error.get_or_insert_with(|| error.to_string());
        error.remote().is_some() || self.reconnect(result).await
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
