//! The scheduler: the leader's loop that places pending tasks on nodes.
//!
//! - [`filters`]: what a node must pass to take a task, and each failure with its shortfall;
//! - [`decide`]: the decision, a pure function of the state, and `explain`;
//! - this file: the loop that feeds it the leader's replica and proposes its placements as one
//!   Raft entry per decision.

pub mod decide;
pub mod filters;

use std::time::Duration;

use symphony_consensus::state::{nodes, services, tasks};
use symphony_consensus::{Command, TaskCommand};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::leader::LeaderHandles;
use super::propose::propose;

/// Pending tasks are looked at again at least this often, whatever changed.
const SWEEP: Duration = Duration::from_secs(1);
/// A burst of changes is looked at once.
const MIN_GAP: Duration = Duration::from_millis(10);
/// The most placements one Raft entry carries.
const BATCH: usize = 5_000;

/// Runs while this node leads (until `stop`): places what waits whenever nodes, services or
/// tasks change, and on a periodic sweep, so no task waits for an unrelated event.
pub async fn run(handles: LeaderHandles, stop: CancellationToken) {
    let consensus = handles.consensus.clone();
    let mut changes = consensus.watch_tables(&[nodes::TABLE, services::TABLE, tasks::TABLE]);
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let started = Instant::now();
        let schedule = consensus.read_stale(|state| decide::decide(state, crate::now_ms(), BATCH));
        if !schedule.is_empty() {
            let placed = schedule.placements.len();
            let command = Command::Task(TaskCommand::Schedule {
                placements: schedule.placements,
                pending: schedule.pending,
                at_ms: crate::now_ms(),
            });
            match propose(&consensus, command).await {
                Ok(_) => {
                    if placed > 0 {
                        tracing::debug!(placed, "placed tasks");
                    }
                    // More may wait behind the batch: go on at once.
                    if placed == BATCH {
                        continue;
                    }
                }
                Err(error) => tracing::debug!(%error, "a placement failed; will retry"),
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            _ = changes.changed() => {}
            _ = sweep.tick() => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep_until(started + MIN_GAP) => {}
        }
    }
}
