//! The end of a run: undo whatever is still broken — heal, resume, start what is not running,
//! join or promote managers the nemesis could not bring back — and wait until the cluster is
//! whole. The nemesis undoes its own faults, so normally there is nothing to do here but wait;
//! this is the safety net that makes every run end with the same cluster it began with, which
//! the final reads (and the next test on this machine) need.

use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use super::board::Board;
use super::membership::{self, Undone};
use super::settle::wait_whole;
use super::tasks::{blocking, off_runtime};
use crate::lab::{Lab, ProcessState};

/// How the cluster came back at the end.
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// What had to be undone, one sentence each.
    pub actions: Vec<String>,
    /// Milliseconds until the cluster was whole, or what was still missing at the deadline.
    pub whole_after_ms: Option<u64>,
    pub missing: Option<String>,
    pub leader: Option<String>,
}

impl Recovery {
    pub fn recovered(&self) -> bool {
        self.whole_after_ms.is_some()
    }
}

/// Brings every node back and waits (up to `timeout`) for the cluster to be whole.
pub async fn recover(
    lab: &mut Lab,
    board: &Board,
    undone: &[Undone],
    managers: usize,
    timeout: Duration,
    interrupt: &mut watch::Receiver<bool>,
) -> Recovery {
    let mut actions = Vec::new();
    if lab.state().partition.is_some() {
        match blocking(|| lab.heal()) {
            Ok(_) => actions.push("healed the partition".to_string()),
            Err(error) => actions.push(format!("could not heal: {error}")),
        }
    }
    let names: Vec<String> = lab.state().names();
    for name in &names {
        let Ok(node) = lab.node(name) else {
            continue;
        };
        let node = node.clone();
        match blocking(|| lab.backend.probe(&node)) {
            ProcessState::Running => {}
            ProcessState::Paused => match blocking(|| lab.resume(name)) {
                Ok(_) => actions.push(format!("resumed {name}")),
                Err(error) => actions.push(format!("could not resume {name}: {error}")),
            },
            ProcessState::Gone => match off_runtime(lab.restart(name)).await {
                Ok(_) => actions.push(format!("started {name}")),
                Err(error) => actions.push(format!("could not start {name}: {error}")),
            },
        }
        board.set_serving(name, true);
    }
    for change in undone {
        match membership::undo(lab, board, change).await {
            Ok(()) => actions.push(format!("undid {change:?}")),
            Err(error) => actions.push(format!("could not undo {change:?}: {error}")),
        }
    }
    match wait_whole(lab, managers, timeout, interrupt).await {
        Ok((took, status)) => Recovery {
            actions,
            whole_after_ms: Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX)),
            missing: None,
            leader: status.leader,
        },
        Err(missing) => Recovery {
            actions,
            whole_after_ms: None,
            missing: Some(missing),
            leader: None,
        },
    }
}
