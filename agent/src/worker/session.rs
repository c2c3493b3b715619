//! The worker's session loop.
//!
//! Every few seconds the worker asks its manager for the managers and their leader, and at
//! once when gossip says a manager came or went: a worker whose manager dies is talking to
//! another as soon as gossip has declared it down (a few seconds), and learns a new leader
//! when the old one's death is gossiped. A manager that does not answer within a second is
//! replaced by the next one gossip sees alive. The same call carries how many members the
//! worker's gossip sees, and a manager that sees clearly more answers with its whole view
//! (see `Node::refresh_session`). The session is where later work (task assignments) will flow;
//! a worker's liveness never depends on it.
//!
//! The period is a trade: each refresh wakes the worker and its manager, and at fleet scale
//! that is most of an idle fleet's CPU after gossip itself.

use std::sync::Arc;
use std::time::Duration;

use symphony_gossip::{MemberEvent, Role};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// How often the session is refreshed when gossip reports nothing about the managers.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// Runs until `shutdown`; does something only while this node is a worker.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(REFRESH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events: Option<broadcast::Receiver<MemberEvent>> = None;
    loop {
        if events.is_none() {
            events = node.gossip().await.map(|(gossip, _)| gossip.subscribe());
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
            () = node.session_wanted() => {}
            changed = manager_changed(&mut events) => {
                if !changed {
                    // Gossip stopped (or restarted): subscribe again on the next pass.
                    events = None;
                    continue;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = node.refresh_session() => {}
        }
        ticks.reset();
    }
}

/// Waits for gossip to report a manager up, down or replaced; `false` when the event stream
/// ended. Pending forever without a stream, so the select above waits on its ticks instead.
async fn manager_changed(events: &mut Option<broadcast::Receiver<MemberEvent>>) -> bool {
    let Some(receiver) = events else {
        return std::future::pending().await;
    };
    loop {
        match receiver.recv().await {
            Ok(MemberEvent::Up(member) | MemberEvent::Down(member))
                if member.role == Role::Manager =>
            {
                return true;
            }
            Ok(MemberEvent::Replaced { new, .. }) if new.role == Role::Manager => return true,
            Ok(_) => {}
            // Missed events may have been about managers: refresh to be sure.
            Err(RecvError::Lagged(_)) => return true,
            Err(RecvError::Closed) => return false,
        }
    }
}
