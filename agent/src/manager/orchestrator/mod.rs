//! The orchestrator: the leader's loop that keeps every service at its tasks.
//!
//! - [`decide`]: the decision, a pure function of the state and of what this leader observed;
//! - [`rollout`]: its part for rolling updates and rollbacks;
//! - this file: the loop that keeps those observations and proposes each decision.

pub mod balance;
pub mod decide;
pub mod rollout;

use std::collections::BTreeMap;
use std::time::Duration;

use symphony_consensus::state::{nodes, services, tasks};
use symphony_consensus::{ClusterState, Command, Consensus, DesiredState, NodeStatus, TaskCommand};
use symphony_ctl::proto::CtlError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::decide::{Decision, Observations, Settings, decide};
use super::leader::LeaderHandles;
use super::propose::propose;

/// A decision is made at least this often, even when nothing changed (restart delays pass,
/// nodes stay down).
const SWEEP: Duration = Duration::from_secs(1);
/// ... and at most this often: a burst of changes is looked at once.
const MIN_GAP: Duration = Duration::from_millis(20);
/// The most tasks one Raft entry creates.
const CREATE_BATCH: usize = 2_000;

/// Runs while this node leads (until `stop`). Its observations start afresh with the term: a
/// new leader replaces nothing until it has itself seen a node down for the grace.
pub async fn run(handles: LeaderHandles, stop: CancellationToken) {
    let consensus = handles.consensus.clone();
    let mut changes = consensus.watch_tables(&[nodes::TABLE, services::TABLE, tasks::TABLE]);
    let mut timers = Timers::default();
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let started = Instant::now();
        let decision = consensus.read_stale(|state| {
            let observed = timers.observe(state, started);
            decide(state, &observed, &handles.orchestrator)
        });
        let recheck = decision.recheck_in.map_or(SWEEP, |wait| wait.min(SWEEP));
        if !decision.is_empty()
            && let Err(error) = carry_out(&consensus, decision).await
        {
            tracing::debug!(%error, "an orchestrator decision failed; will retry");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            _ = changes.changed() => {}
            _ = sweep.tick() => {}
            () = tokio::time::sleep_until(started + recheck) => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(started + MIN_GAP) => {}
        }
    }
}

/// Proposes a decision: new tasks in batches, then the stops, then what is forgotten.
async fn carry_out(consensus: &Consensus, decision: Decision) -> Result<(), CtlError> {
    let at_ms = crate::now_ms();
    let Decision {
        create,
        shutdown,
        delete,
        services,
        recheck_in: _,
    } = decision;
    let mut create = create;
    while !create.is_empty() {
        let rest = create.split_off(create.len().min(CREATE_BATCH));
        let tasks = std::mem::replace(&mut create, rest);
        propose(
            consensus,
            Command::Task(TaskCommand::Create { tasks, at_ms }),
        )
        .await?;
    }
    if !shutdown.is_empty() {
        let changes = shutdown
            .into_iter()
            .map(|id| (id, DesiredState::Shutdown))
            .collect();
        propose(
            consensus,
            Command::Task(TaskCommand::SetDesired { changes }),
        )
        .await?;
    }
    if !delete.is_empty() {
        propose(
            consensus,
            Command::Task(TaskCommand::Delete { ids: delete }),
        )
        .await?;
    }
    for command in services {
        propose(consensus, Command::Service(command)).await?;
    }
    Ok(())
}

/// Since when this leader has seen nodes down and tasks ended.
#[derive(Default)]
struct Timers {
    down_since: BTreeMap<u64, Instant>,
    ended_since: BTreeMap<u64, Instant>,
    ready_since: BTreeMap<u64, Instant>,
}

impl Timers {
    fn observe(&mut self, state: &ClusterState, now: Instant) -> Observations {
        self.down_since.retain(|id, _| {
            state
                .nodes
                .get(id)
                .is_some_and(|node| node.status == NodeStatus::Down)
        });
        for node in state.nodes.values() {
            if node.status == NodeStatus::Down {
                self.down_since.entry(node.node_id).or_insert(now);
            }
        }
        self.ended_since.retain(|id, _| {
            state
                .tasks
                .get(id)
                .is_some_and(|task| task.state.is_terminal())
        });
        for task in state.tasks.values() {
            if task.state.is_terminal() && task.desired == DesiredState::Running {
                self.ended_since.entry(task.id).or_insert(now);
            }
        }
        self.ready_since
            .retain(|id, _| state.tasks.get(id).is_some_and(rollout::is_ready));
        for task in state.tasks.values() {
            if rollout::is_ready(task) {
                self.ready_since.entry(task.id).or_insert(now);
            }
        }
        Observations {
            down_for: since(&self.down_since, now),
            ended_for: since(&self.ended_since, now),
            ready_for: since(&self.ready_since, now),
            now_ms: crate::now_ms(),
        }
    }
}

fn since(started: &BTreeMap<u64, Instant>, now: Instant) -> BTreeMap<u64, Duration> {
    started
        .iter()
        .map(|(id, at)| (*id, now.duration_since(*at)))
        .collect()
}

/// The defaults of the orchestrator's flags.
pub fn default_settings() -> Settings {
    Settings {
        node_loss_grace: Duration::from_secs(10),
        isolation_lease: Duration::from_secs(10),
        keep_ended: 5,
        max_creates: 10_000,
    }
}
