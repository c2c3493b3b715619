//! The leader's promoter: a manager that joined as a Raft learner becomes a voter once it has
//! caught up with the log, keeping the number of voters odd.
//!
//! An odd count is what makes a voter worth having: 4 voters tolerate one failure, like 3, but
//! need 3 acknowledgements per write instead of 2. So with an even number of candidates one
//! stays a learner — a warm standby — until another manager joins or a voter leaves.
//! `node promote` overrides this; a manager an operator demoted is never promoted back here.

use std::collections::BTreeSet;
use std::time::Duration;

use symphony_consensus::Consensus;
use symphony_ctl::proto::CtlError;
use tokio_util::sync::CancellationToken;

use crate::errors::consensus_error;

/// How often the leader looks for learners to promote.
const INTERVAL: Duration = Duration::from_millis(300);
/// A learner within this many entries of the leader's last log has caught up.
const CATCH_UP_SLACK: u64 = 100;
/// ... and must have answered recently.
const ALIVE_WITHIN: Duration = Duration::from_secs(3);

/// Runs while this node leads (until `stop`).
pub async fn run(consensus: Consensus, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(error) = promote_caught_up_learners(&consensus).await {
            tracing::debug!(%error, "promoting learners failed; will retry");
        }
    }
}

/// How many of `candidates` caught-up learners to promote next to `voters` voters.
pub fn promotions(voters: usize, candidates: usize) -> usize {
    if candidates == 0 {
        return 0;
    }
    if (voters + candidates).is_multiple_of(2) {
        candidates - 1
    } else {
        candidates
    }
}

async fn promote_caught_up_learners(consensus: &Consensus) -> Result<(), CtlError> {
    let view = consensus.membership();
    if view.leader != Some(consensus.raft_node_id()) || view.learners.is_empty() {
        return Ok(());
    }
    let demoted: BTreeSet<u64> = consensus.read_stale(|state| {
        state
            .nodes
            .values()
            .filter(|node| node.demoted)
            .filter_map(|node| node.raft_node_id)
            .collect()
    });
    let progress = consensus.progress();
    let last = view.last_log_index.unwrap_or(0);
    let caught_up: Vec<u64> = view
        .learners
        .iter()
        .copied()
        .filter(|id| !demoted.contains(id))
        .filter(|id| {
            progress.get(id).is_some_and(|p| {
                p.matched_index.unwrap_or(0) + CATCH_UP_SLACK >= last
                    && p.last_ack.is_some_and(|ago| ago < ALIVE_WITHIN)
            })
        })
        .collect();
    let count = promotions(view.voters.len(), caught_up.len());
    if count == 0 {
        return Ok(());
    }
    let promote: BTreeSet<u64> = caught_up.into_iter().take(count).collect();
    tracing::info!(
        ?promote,
        voters = view.voters.len(),
        "promoting caught-up learners to voters"
    );
    consensus.promote(promote).await.map_err(consensus_error)
}

#[cfg(test)]
mod tests {
    use super::promotions;

    #[test]
    fn voter_count_stays_odd() {
        assert_eq!(promotions(1, 0), 0);
        assert_eq!(promotions(1, 1), 0, "2 voters are no better than 1");
        assert_eq!(promotions(1, 2), 2);
        assert_eq!(promotions(3, 1), 0, "the 4th manager waits as a standby");
        assert_eq!(promotions(3, 2), 2);
        assert_eq!(promotions(3, 3), 2, "6 managers: 5 voters and a standby");
        assert_eq!(
            promotions(2, 1),
            1,
            "an even count after a removal is fixed"
        );
    }
}
