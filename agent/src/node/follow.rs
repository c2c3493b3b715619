//! Following whichever Raft node this node runs: the loops that read a manager's replica
//! (the trust follower, the metrics watchers) run once per Raft node the supervisor starts,
//! and stop with it.

use std::future::Future;

use symphony_consensus::Consensus;
use tokio_util::sync::CancellationToken;

use super::NodeHandle;

/// Runs `each` over every Raft node the supervisor runs in turn, until `shutdown`: its future
/// is dropped when the supervisor stops that Raft node or starts another, and a future that
/// ends by itself (its Raft node stopped) waits for the next.
pub async fn each_raft_node<F, Fut>(mut node: NodeHandle, shutdown: CancellationToken, mut each: F)
where
    F: FnMut(Consensus) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let Some(consensus) = node.consensus() else {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = node.changed() => continue,
            }
        };
        let run = each(consensus.clone());
        tokio::pin!(run);
        let mut running = true;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = &mut run, if running => running = false,
                () = node.changed() => {
                    if !node.consensus().is_some_and(|now| now.same_node(&consensus)) {
                        break;
                    }
                }
            }
        }
    }
}
