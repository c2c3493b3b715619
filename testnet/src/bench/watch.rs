//! `testnet bench watch`: how long a put takes to reach many watchers, and what the watchers
//! cost the managers.
//!
//! `--managers` (3) real agents on loopback. `--watchers` (1,000) `kv watch` streams on the
//! prefix `bench/`, spread over `--connections` (20) control connections, the connections
//! spread over the managers (each manager serves its watchers from its own replica). One writer
//! then puts `--puts` (200) keys, one after the other, through the leader. A put's delay to a
//! watcher is from the moment the writer sent it to the moment that watcher received it; the
//! benchmark prints p50, p99 and the slowest over every (put, watcher) pair, and each manager's
//! resident memory before the watchers, with them open and idle, and after the puts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use symphony_ctl::Client;
use symphony_ctl::proto::{ReadConsistency, Response};

use super::figures::{millis, round2};
use super::kv::{bench_options, start_cluster, stop_cluster};
use super::latency::Latencies;
use crate::harness::Cluster;
use crate::lab::BackendKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    pub managers: usize,
    pub watchers: usize,
    pub connections: usize,
    pub puts: usize,
    pub value_bytes: usize,
    pub timeout_s: u64,
    pub agent_bin: Option<PathBuf>,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            managers: 3,
            watchers: 1_000,
            connections: 20,
            puts: 200,
            value_bytes: 100,
            timeout_s: 120,
            agent_bin: None,
        }
    }
}

const PREFIX: &str = "bench/";

/// Each manager's resident memory, in MiB.
fn memory(cluster: &Cluster) -> Vec<f64> {
    (0..cluster.len())
        .map(|index| {
            cluster
                .pid(index)
                .and_then(|pid| crate::procfs::status(pid).ok())
                .map_or(0.0, |status| round2(status.rss_kib as f64 / 1024.0))
        })
        .collect()
}

/// One watcher: the instant each revision after `after` arrived, until it has seen the last
/// revision the writer made (`last`, known once the writer is done).
async fn watcher(
    client: Arc<Client>,
    after: u64,
    mut last: tokio::sync::watch::Receiver<Option<u64>>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<Vec<(u64, Instant)>> {
    let mut stream = client.kv_watch(PREFIX, Some(after + 1)).await?;
    let _ = ready.send(()).await;
    let mut arrived: Vec<(u64, Instant)> = Vec::new();
    loop {
        let seen = arrived.last().map_or(after, |(revision, _)| *revision);
        if last.borrow().is_some_and(|last| seen >= last) {
            return Ok(arrived);
        }
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(Response::KvEvents(events))) => {
                    let now = Instant::now();
                    arrived.extend(events.iter().map(|event| (event.revision, now)));
                }
                Some(Ok(other)) => bail!("a {} answer in a watch", other.kind()),
                Some(Err(error)) => {
                    bail!("a watch failed: {}", symphony_ctl::ClientError::from(error))
                }
                None => bail!("a watch ended"),
            },
            changed = last.changed() => if changed.is_err() {
                bail!("the writer is gone");
            },
        }
    }
}

/// Puts through the leader, once more after a failure (a leader change): the revision each
/// put made and when it was first sent.
async fn write(
    cluster: &Cluster,
    options: &WatchOptions,
    timeout: Duration,
) -> anyhow::Result<(std::collections::BTreeMap<u64, Instant>, u64)> {
    let value = vec![b'v'; options.value_bytes];
    let mut sent = std::collections::BTreeMap::new();
    let mut retries = 0;
    let mut writer = cluster.client(cluster.leader().await?).await?;
    for index in 0..options.puts {
        let at = Instant::now();
        let key = format!("{PREFIX}{}", index % 100);
        loop {
            match writer.kv_put(key.clone(), value.clone(), None).await {
                Ok(written) => {
                    sent.insert(written.revision, at);
                    break;
                }
                Err(_) if at.elapsed() < timeout => {
                    retries += 1;
                    writer = cluster.client(cluster.leader().await?).await?;
                }
                Err(error) => return Err(error).context("a put failed"),
            }
        }
    }
    Ok((sent, retries))
}

pub async fn run(options: WatchOptions) -> anyhow::Result<()> {
    if options.managers == 0 || options.watchers == 0 || options.connections == 0 {
        bail!("--managers, --watchers and --connections must all be at least 1");
    }
    if options.puts == 0 {
        bail!("--puts must be at least 1");
    }
    let timeout = Duration::from_secs(options.timeout_s);
    let mut cluster = start_cluster(
        options.managers,
        bench_options(BackendKind::Local, options.agent_bin.clone(), 10_000),
    )
    .await?;
    let outcome = measure(&cluster, &options, timeout).await;
    stop_cluster(&mut cluster).await;
    outcome
}

async fn measure(
    cluster: &Cluster,
    options: &WatchOptions,
    timeout: Duration,
) -> anyhow::Result<()> {
    let leader = cluster.leader().await?;
    let after = cluster
        .client(leader)
        .await?
        .kv_list(PREFIX, ReadConsistency::Linearizable)
        .await?
        .revision;
    let before = memory(cluster);

    let mut clients = Vec::new();
    for connection in 0..options.connections {
        clients.push(Arc::new(cluster.client(connection % cluster.len()).await?));
    }
    let (ready, mut readies) = tokio::sync::mpsc::channel(options.watchers);
    let (last, last_seen) = tokio::sync::watch::channel(None);
    let mut watchers = tokio::task::JoinSet::new();
    for index in 0..options.watchers {
        let client = clients[index % clients.len()].clone();
        watchers.spawn(watcher(client, after, last_seen.clone(), ready.clone()));
    }
    drop(ready);
    for _ in 0..options.watchers {
        tokio::time::timeout(timeout, readies.recv())
            .await
            .context("the watches did not all open in time")?
            .context("a watch could not be opened")?;
    }
    println!(
        "{} watchers on {} connections to {} managers",
        options.watchers,
        options.connections,
        cluster.len()
    );
    let idle = memory(cluster);

    let started = Instant::now();
    let (sent, retries) = write(cluster, options, timeout).await?;
    let writing = started.elapsed();
    let _ = last.send(sent.keys().next_back().copied());
    let mut delays = Vec::with_capacity(options.watchers * options.puts);
    let deadline = tokio::time::Instant::now() + timeout;
    while let Some(done) = tokio::time::timeout_at(deadline, watchers.join_next())
        .await
        .context("the watchers did not get every put in time")?
    {
        let arrived = done.context("a watcher task")??;
        // A put retried after a leader change may have made a revision of its own.
        let timed = arrived.iter().filter_map(|(revision, at)| {
            sent.get(revision)
                .map(|sent| at.saturating_duration_since(*sent))
        });
        delays.extend(timed);
    }
    let after_puts = memory(cluster);
    if retries > 0 {
        println!("{retries} put(s) retried after a leader change");
    }

    let delivered = delays.len();
    let latencies = Latencies::new(delays);
    let p50 = latencies.median().unwrap_or_default();
    let p99 = latencies.percentile(99.0).unwrap_or_default();
    let max = latencies.max().unwrap_or_default();
    println!(
        "{} puts in {:.0} ms, {delivered} deliveries: put to delivery p50 {:.1} ms, p99 {:.1} ms, slowest {:.1} ms",
        options.puts,
        millis(writing),
        millis(p50),
        millis(p99),
        millis(max)
    );
    let show = |figures: &[f64]| {
        figures
            .iter()
            .map(|mib| format!("{mib:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "managers' memory (MiB): before {}; with the watchers {}; after the puts {}",
        show(&before),
        show(&idle),
        show(&after_puts)
    );
    println!(
        "{}",
        json!({
            "bench": "watch",
            "managers": cluster.len(),
            "watchers": options.watchers,
            "connections": options.connections,
            "puts": options.puts,
            "value_bytes": options.value_bytes,
            "deliveries": delivered,
            "delivery_p50_ms": round2(millis(p50)),
            "delivery_p99_ms": round2(millis(p99)),
            "delivery_max_ms": round2(millis(max)),
            "writing_ms": round2(millis(writing)),
            "memory_mib_before": before,
            "memory_mib_with_watchers": idle,
            "memory_mib_after_puts": after_puts,
        })
    );
    Ok(())
}
