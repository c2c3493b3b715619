//! The worker sampler: every [`PERIOD`], a linearizable `node ls` (answered by the leader; a
//! follower forwards it) whose statuses go to the worker check on the [`Board`], and whose
//! leader tells the nemesis whether leadership changed while it waited for a worker to be
//! marked down.
//!
//! It asks the manager that answered last, and moves on to the next serving one when that fails
//! (a paused or cut-off manager does not answer within [`CALL_TIMEOUT`]), so one bad manager
//! costs one missed sample, not a stalled check.

use std::sync::Arc;
use std::time::Duration;

use symphony_ctl::Client;
use symphony_ctl::proto::ReadConsistency;
use tokio::sync::watch;

use super::board::Board;
use super::tasks::stopped;
use crate::lab::rpc::call;

/// How often `node ls` is sampled.
pub const PERIOD: Duration = Duration::from_millis(250);
/// How long one sample may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Samples until `stop` says so.
pub async fn run(board: Arc<Board>, mut stop: watch::Receiver<bool>) {
    let mut preferred: usize = 0;
    let mut ticks = tokio::time::interval(PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            _ = ticks.tick() => {}
        }
        let managers = board.serving_managers();
        if managers.is_empty() {
            continue;
        }
        let position = managers
            .iter()
            .position(|(index, _)| *index == preferred)
            .unwrap_or(0);
        let (index, socket) = &managers[position];
        let invoke_ns = board.now_ns();
        let listing = call(socket, CALL_TIMEOUT, async |client: &mut Client| {
            client.node_list(ReadConsistency::Linearizable).await
        })
        .await;
        let complete_ns = board.now_ns();
        match listing {
            Ok(nodes) => {
                preferred = *index;
                let leader = nodes
                    .iter()
                    .find(|node| node.raft_role.as_deref() == Some("leader"))
                    .map(|node| node.node_id);
                let statuses: Vec<(u64, String)> = nodes
                    .into_iter()
                    .map(|node| (node.node_id, node.status))
                    .collect();
                board.observe(Some(&statuses), leader, invoke_ns, complete_ns);
            }
            Err(_) => {
                preferred = managers[(position + 1) % managers.len()].0;
                board.observe(None, None, invoke_ns, complete_ns);
            }
        }
    }
}
