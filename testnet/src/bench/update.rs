//! `testnet bench update`: how long a rolling update of many tasks takes, and how far and for
//! how long the service dips below its count meanwhile.
//!
//! One manager and `--workers` workers (real agents on loopback) run a service of `--tasks`
//! process tasks (`sleep`). Once all run, one `service update` changes their environment with
//! `--parallelism` (10) slots at a time, `--monitor` (0 ms) and `--order` (stop-first); the
//! benchmark polls `service ps` every `--poll-ms` until the update is completed and every task
//! of the new template runs. It prints the update's duration (from the update's call to the
//! first poll that saw it completed with all tasks running), the fewest tasks running at any
//! poll and the longest stretch of consecutive polls below the count, then one JSON object.
//! Poll-based: dips shorter than the poll interval can be missed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use symphony_ctl::Client;
use symphony_ctl::proto::{
    ReadConsistency, Role, ServicePatchView, ServiceSpecView, TaskInfo, UpdateView,
};
use tokio::time::Instant;

use super::figures::{millis, round2};
use crate::harness::{AgentOptions, AgentProcess, Cluster, ClusterOptions, poll_until};

/// What `testnet bench update` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOptions {
    /// Tasks of the service.
    pub tasks: u32,
    /// Workers beside the one manager (which runs tasks too).
    pub workers: usize,
    /// Slots replaced at once.
    pub parallelism: u32,
    /// How long a new task must run before its slot is done.
    pub monitor_ms: u64,
    /// `stop-first` or `start-first`.
    pub order: String,
    /// How often the service's tasks are polled.
    pub poll_ms: u64,
    /// How long forming, starting the tasks and the update may each take.
    pub timeout_s: u64,
    /// The agent binary; `None`: `$SYMPHONY_AGENT_BIN` or next to this executable.
    pub agent_bin: Option<PathBuf>,
}

impl Default for UpdateOptions {
    fn default() -> Self {
        UpdateOptions {
            tasks: 100,
            workers: 2,
            parallelism: 10,
            monitor_ms: 0,
            order: "stop-first".into(),
            poll_ms: 50,
            timeout_s: 300,
            agent_bin: None,
        }
    }
}

/// What the polls saw during the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dips {
    fewest: usize,
    longest: Duration,
}

/// Follows the running count poll by poll; a dip lasts from the first poll below the count to
/// the first poll back at it.
#[derive(Debug)]
struct DipMeter {
    count: usize,
    fewest: usize,
    below_since: Option<Instant>,
    longest: Duration,
}

impl DipMeter {
    fn new(count: usize) -> DipMeter {
        DipMeter {
            count,
            fewest: count,
            below_since: None,
            longest: Duration::ZERO,
        }
    }

    fn saw(&mut self, running: usize, at: Instant) {
        self.fewest = self.fewest.min(running);
        match (running < self.count, self.below_since) {
            (true, None) => self.below_since = Some(at),
            (false, Some(since)) => {
                self.longest = self.longest.max(at.duration_since(since));
                self.below_since = None;
            }
            _ => {}
        }
    }

    fn finish(mut self, at: Instant) -> Dips {
        if let Some(since) = self.below_since.take() {
            self.longest = self.longest.max(at.duration_since(since));
        }
        Dips {
            fewest: self.fewest,
            longest: self.longest,
        }
    }
}

fn running(tasks: &[TaskInfo]) -> usize {
    tasks
        .iter()
        .filter(|task| task.desired == "running" && task.state == "running")
        .count()
}

pub async fn run(options: UpdateOptions) -> anyhow::Result<()> {
    if options.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    let timeout = Duration::from_secs(options.timeout_s);
    let (cluster, workers, client) =
        start_fleet(options.workers, options.agent_bin.clone(), timeout).await?;
    println!("cluster: 1 manager, {} workers", options.workers);

    let spec = ServiceSpecView {
        driver: "process".into(),
        command: vec!["sleep".into(), "100000".into()],
        mode: "replicated".into(),
        replicas: Some(options.tasks),
        restart_condition: "any".into(),
        restart_delay_ms: 0,
        on_isolation: "keep".into(),
        stop_grace_ms: 2_000,
        update: UpdateView {
            parallelism: options.parallelism,
            delay_ms: 0,
            monitor_ms: options.monitor_ms,
            order: options.order.clone(),
            ..UpdateView::default()
        },
        ..ServiceSpecView::default()
    };
    client.service_create("bench-update", spec).await?;
    let count = usize::try_from(options.tasks)?;
    let started = Instant::now();
    poll_until(timeout, "every task running", async || {
        let tasks = client
            .service_ps("bench-update", ReadConsistency::Stale)
            .await
            .map_err(|e| e.to_string())?;
        let up = running(&tasks);
        if up == count {
            Ok(())
        } else {
            Err(format!("{up} of {count} running"))
        }
    })
    .await?;
    println!(
        "{count} tasks running after {:.0} ms",
        millis(started.elapsed())
    );

    let patch = ServicePatchView {
        env_set: BTreeMap::from([("BENCH".to_string(), "2".to_string())]),
        ..ServicePatchView::default()
    };
    let began = Instant::now();
    let info = client.service_update("bench-update", patch).await?;
    let target = info.template_version;
    let mut meter = DipMeter::new(count);
    let poll = Duration::from_millis(options.poll_ms.max(1));
    let (took, dips) = loop {
        let now = Instant::now();
        if now.duration_since(began) > timeout {
            bail!("the update did not complete within {} s", options.timeout_s);
        }
        let tasks = client
            .service_ps("bench-update", ReadConsistency::Stale)
            .await?;
        let at = Instant::now();
        let up = running(&tasks);
        meter.saw(up, at);
        let all_new = up == count
            && tasks
                .iter()
                .filter(|task| task.desired == "running")
                .all(|task| task.template_version == target);
        if all_new && completed(&client).await? {
            break (at.duration_since(began), meter.finish(at));
        }
        tokio::time::sleep_until(now + poll).await;
    };
    println!(
        "update of {count} tasks, parallelism {}, monitor {} ms, {}: {:.0} ms",
        options.parallelism,
        options.monitor_ms,
        options.order,
        millis(took)
    );
    println!(
        "fewest running during the update: {} of {count}; longest dip below the count: {:.0} ms (polled every {} ms)",
        dips.fewest,
        millis(dips.longest),
        options.poll_ms
    );
    client.service_remove("bench-update").await.ok();
    drop(workers);
    drop(cluster);
    println!(
        "{}",
        json!({
            "bench": "update",
            "tasks": count,
            "workers": options.workers,
            "parallelism": options.parallelism,
            "monitor_ms": options.monitor_ms,
            "order": options.order,
            "update_ms": round2(millis(took)),
            "fewest_running": dips.fewest,
            "longest_dip_ms": round2(millis(dips.longest)),
            "poll_ms": options.poll_ms,
        })
    );
    Ok(())
}

/// One manager and `workers` workers on loopback, every node `ready`; the manager's client.
pub(crate) async fn start_fleet(
    workers: usize,
    agent_bin: Option<PathBuf>,
    timeout: Duration,
) -> anyhow::Result<(Cluster, Vec<AgentProcess>, Client)> {
    let agent = AgentOptions {
        bin: agent_bin,
        log_level: "warn".into(),
        ..AgentOptions::default()
    };
    let mut cluster = Cluster::start_with(
        1,
        ClusterOptions {
            agent: agent.clone(),
            ..ClusterOptions::default()
        },
    )
    .await
    .context("cannot start the manager")?;
    cluster
        .bootstrap_dynamic()
        .await
        .context("cannot form the cluster")?;
    let client = cluster.client(0).await?;
    let token = client.token_show(Role::Worker).await?.token;
    let manager = cluster.remote_addr(0)?.to_string();
    let mut processes = Vec::new();
    for _ in 0..workers {
        let worker = AgentProcess::start_with(agent.clone())
            .await
            .context("cannot start a worker")?;
        worker.client().await?.join(&token, &manager).await?;
        processes.push(worker);
    }
    let nodes = 1 + workers;
    poll_until(timeout, "every node ready", async || {
        let listed = client
            .node_list(ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        let ready = listed.iter().filter(|node| node.status == "ready").count();
        if ready == nodes {
            Ok(())
        } else {
            Err(format!("{ready} of {nodes} ready"))
        }
    })
    .await?;
    Ok((cluster, processes, client))
}

async fn completed(client: &Client) -> anyhow::Result<bool> {
    let info = client
        .service_inspect("bench-update", ReadConsistency::Stale)
        .await?;
    Ok(info
        .update
        .is_some_and(|update| update.state == "completed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dip_lasts_from_the_first_poll_below_to_the_first_back() {
        let base = Instant::now();
        let at = |ms| base + Duration::from_millis(ms);
        let mut meter = DipMeter::new(10);
        meter.saw(10, at(0));
        meter.saw(9, at(50));
        meter.saw(8, at(100));
        meter.saw(10, at(300));
        meter.saw(9, at(400));
        meter.saw(10, at(450));
        assert_eq!(
            meter.finish(at(500)),
            Dips {
                fewest: 8,
                longest: Duration::from_millis(250)
            }
        );
        let mut open = DipMeter::new(3);
        open.saw(2, at(0));
        assert_eq!(open.finish(at(700)).longest, Duration::from_millis(700));
    }
}
