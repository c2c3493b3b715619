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
/// A decision holds the replica's read lock, which the Raft apply waits for, and costs time in
/// proportion to the tasks (about 10 ms a pass at 100,000). After a pass the loop waits at
/// least this many times as long as the pass took, so that under a stream of changes (every
/// task report is one) it takes at most a third of a core and of the replica's time.
const GAP_PER_PASS: u32 = 2;
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
        let gap = MIN_GAP.max(started.elapsed() * GAP_PER_PASS);
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
            () = tokio::time::sleep_until(started + gap) => {}
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
        propose(consensus, Command::Service(Box::new(command))).await?;
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
    /// What this leader has seen, in one pass over the tasks: each timer keeps its start while
    /// its condition holds and is dropped when it ends.
    fn observe(&mut self, state: &ClusterState, now: Instant) -> Observations {
        let mut down_since = BTreeMap::new();
        for node in state.nodes.values() {
            if node.status == NodeStatus::Down {
                let at = self.down_since.get(&node.node_id).copied().unwrap_or(now);
                down_since.insert(node.node_id, at);
            }
        }
        // The tasks iterate in id order, so the new maps are built from sorted input.
        let mut ended_since = Vec::new();
        let mut ready_since = Vec::new();
        for task in state.tasks.values() {
            if task.state.is_terminal() {
                // Timed from when it ended wanting to run; kept if its desired state changed since.
                match self.ended_since.get(&task.id) {
                    Some(at) => ended_since.push((task.id, *at)),
                    None if task.desired == DesiredState::Running => {
                        ended_since.push((task.id, now));
                    }
                    None => {}
                }
            } else if rollout::is_ready(task) {
                let at = self.ready_since.get(&task.id).copied().unwrap_or(now);
                ready_since.push((task.id, at));
            }
        }
        self.down_since = down_since;
        self.ended_since = ended_since.into_iter().collect();
        self.ready_since = ready_since.into_iter().collect();
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

#[cfg(test)]
mod tests {
    use symphony_consensus::{ServiceMode, TaskState};

    use super::*;
    use crate::manager::testing::{
        cluster, create_service, place, report, set_status, spec, tasks_result,
    };

    #[test]
    fn timers_keep_their_start_while_their_condition_holds() {
        let mut state = cluster(1);
        create_service(
            &mut state,
            "web",
            spec(ServiceMode::Replicated { replicas: 2 }),
        );
        let created = decide(&state, &Observations::default(), &default_settings()).create;
        let ids = tasks_result(
            &mut state,
            TaskCommand::Create {
                tasks: created,
                at_ms: 1,
            },
        )
        .changed;
        place(&mut state, ids.iter().map(|id| (*id, 10)).collect());
        for id in &ids {
            report(&mut state, *id, TaskState::Running, None);
        }
        let (first, second) = (ids[0], ids[1]);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut timers = Timers::default();

        let seen = timers.observe(&state, t0);
        assert_eq!(seen.ready_for.get(&first), Some(&Duration::ZERO));
        let seen = timers.observe(&state, at(5));
        assert_eq!(seen.ready_for.get(&second), Some(&Duration::from_secs(5)));
        assert!(seen.ended_for.is_empty() && seen.down_for.is_empty());

        // The first ends: it is timed as ended from now, no longer as ready.
        report(&mut state, first, TaskState::Failed, Some(1));
        let seen = timers.observe(&state, at(6));
        assert_eq!(seen.ended_for.get(&first), Some(&Duration::ZERO));
        assert_eq!(seen.ready_for.get(&first), None);
        assert_eq!(seen.ready_for.get(&second), Some(&Duration::from_secs(6)));
        // Asked to stay down since, it keeps its time; the node going down is timed too.
        tasks_result(
            &mut state,
            TaskCommand::SetDesired {
                changes: vec![(first, DesiredState::Shutdown)],
            },
        );
        set_status(&mut state, 10, NodeStatus::Down);
        let seen = timers.observe(&state, at(8));
        assert_eq!(seen.ended_for.get(&first), Some(&Duration::from_secs(2)));
        assert_eq!(seen.down_for.get(&10), Some(&Duration::ZERO));
        let seen = timers.observe(&state, at(9));
        assert_eq!(seen.down_for.get(&10), Some(&Duration::from_secs(1)));

        // The node is back: its timer is gone and starts afresh next time.
        set_status(&mut state, 10, NodeStatus::Ready);
        assert!(timers.observe(&state, at(10)).down_for.is_empty());
        set_status(&mut state, 10, NodeStatus::Down);
        assert_eq!(
            timers.observe(&state, at(11)).down_for.get(&10),
            Some(&Duration::ZERO)
        );
    }
}
