//! The worker's session loop.
//!
//! Once a second the worker asks its manager for the managers and their leader. A manager
//! that does not answer within a second is replaced by the next one gossip sees alive, so a
//! worker whose manager dies is talking to another within about two seconds. The session is
//! where later work (task assignments) will flow; a worker's liveness never depends on it.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// How often the session is refreshed.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Runs until `shutdown`; does something only while this node is a worker.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(REFRESH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = node.refresh_session() => {}
        }
    }
}
