//! The leader's loops, started when this node becomes leader and stopped when it stops being
//! one (or its Raft node is replaced): one supervisor, so that no loop has to ask on every tick
//! whether it leads, and each gets only the handles it needs.
//!
//! A loop's memory lives as long as its term: a new term starts every loop afresh (the
//! liveness reconciler's warm-up is what keeps a new leader from marking the fleet down). The
//! loops that decide from the replica start only once it holds everything committed before the
//! term (see [`caught_up`]).

use std::time::Duration;

use symphony_consensus::Consensus;
use tokio_util::sync::CancellationToken;

use crate::gossip::GossipWatch;
use crate::node::NodeHandle;

/// What the leader's loops are given.
#[derive(Clone)]
pub struct LeaderHandles {
    pub consensus: Consensus,
    pub gossip: GossipWatch,
    /// This node's id in the cluster.
    pub node_id: u64,
    pub liveness_grace: Duration,
    pub orchestrator: super::orchestrator::decide::Settings,
}

/// Runs until `shutdown`: starts the leader's loops while this node leads.
pub async fn run(mut node: NodeHandle, gossip: GossipWatch, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = node.raft_started() => {}
        }
        let Some(consensus) = node.consensus() else {
            continue;
        };
        let handles = LeaderHandles {
            consensus: consensus.clone(),
            gossip: gossip.clone(),
            node_id: node.node_id(),
            liveness_grace: node.config().settings.liveness_grace,
            orchestrator: node.config().settings.orchestrator,
        };
        supervise(&mut node, handles, &shutdown).await;
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// Follows one Raft node's leadership until it is replaced (a leave, a recovery) or stops.
async fn supervise(node: &mut NodeHandle, handles: LeaderHandles, shutdown: &CancellationToken) {
    let mut leadership = handles.consensus.leadership();
    let mut term: Option<CancellationToken> = None;
    loop {
        match (leadership.leads(), &term) {
            (true, None) => {
                tracing::debug!("leading: starting the leader's loops");
                term = Some(start(&handles, shutdown.child_token()));
            }
            (false, Some(loops)) => {
                tracing::debug!("no longer leading: stopping the leader's loops");
                loops.cancel();
                term = None;
            }
            _ => {}
        }
        let replaced = tokio::select! {
            () = shutdown.cancelled() => true,
            alive = leadership.changed() => !alive,
            () = node.changed() => !node
                .consensus()
                .is_some_and(|current| current.same_node(&handles.consensus)),
        };
        if replaced {
            if let Some(loops) = term {
                loops.cancel();
            }
            return;
        }
    }
}

/// Starts every leader loop under `stop`: at once the one that reads no state (handover),
/// the others once this leader's replica has caught up with its term (see [`caught_up`]).
fn start(handles: &LeaderHandles, stop: CancellationToken) -> CancellationToken {
    tokio::spawn(super::handover::run(
        handles.consensus.clone(),
        stop.clone(),
    ));
    let handles = handles.clone();
    let loops = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = loops.cancelled() => return,
            () = caught_up(&handles.consensus) => {}
        }
        tracing::debug!("the replica holds everything committed before this term");
        tokio::spawn(super::promoter::run(
            handles.consensus.clone(),
            loops.clone(),
        ));
        tokio::spawn(super::ca_rotation::run(
            handles.consensus.clone(),
            loops.clone(),
        ));
        tokio::spawn(super::liveness::run(handles.clone(), loops.clone()));
        tokio::spawn(super::orchestrator::run(handles.clone(), loops.clone()));
        tokio::spawn(super::scheduler::run(handles, loops));
    });
    stop
}

/// How long after a failed barrier it is tried again.
const CATCH_UP_RETRY: Duration = Duration::from_millis(100);

/// Waits until this leader's replica has applied the first entry of its term, and with it
/// every entry committed before. A new leader may hold entries of the old one that were
/// replicated but whose commit it has not heard of yet: they are applied only once its own
/// term's first entry commits. Loops that decided from the replica before that would redo what
/// those entries did — the orchestrator created a second task in slots whose first task's
/// entry was not applied yet, and both ran once placed. A linearizable read (read index) is
/// that barrier, as Nomad's leader waits on a Raft barrier before its leader loop.
async fn caught_up(consensus: &Consensus) {
    loop {
        match consensus.read_linearizable(|_| ()).await {
            Ok(()) => return,
            // Not leading any more (the supervisor stops this term), or no quorum yet.
            Err(error) => {
                tracing::debug!(%error, "the replica has not caught up with this term yet");
                tokio::time::sleep(CATCH_UP_RETRY).await;
            }
        }
    }
}
