//! On the leader: short of disk space, hand leadership to another voter.
//!
//! A leader under its free-space floor refuses client writes with `no_space` (see
//! [`super::propose::check_room`]) so that the room left goes to the cluster's own writes. That
//! keeps its store alive but would keep the whole cluster from taking writes while the other
//! managers may have plenty of room. So the leader hands over to the most caught-up voter in
//! touch with it; as a follower it goes on storing the log until its disk is truly full, when
//! its store stops and heals once space returns (see `node::supervisor`).
//!
//! The leader cannot see the others' disks. If the successor is short of space too it hands
//! over in turn, at most once per [`SETTLE`] per term: with every manager full, leadership
//! moves now and then and client writes are refused everywhere, which is what a full cluster
//! must do. The decision ([`successor`]) is pure; the loop only measures and applies it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use symphony_consensus::{Consensus, MemberProgress};
use tokio_util::sync::CancellationToken;

/// How often the leader measures its free space.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long a new leader leads before it may hand over for lack of space: long enough that a
/// cluster of full managers does not pass leadership round without pause.
const SETTLE: Duration = Duration::from_secs(5);
/// A voter that has not acknowledged the leader for this long is not a successor.
const IN_TOUCH: Duration = Duration::from_secs(2);

/// The voter to hand leadership to: in touch with the leader, with the most of the log.
pub fn successor(
    me: u64,
    voters: &BTreeSet<u64>,
    progress: &BTreeMap<u64, MemberProgress>,
) -> Option<u64> {
    voters
        .iter()
        .copied()
        .filter(|id| *id != me)
        .filter_map(|id| {
            let member = progress.get(&id)?;
            let matched = member.matched_index?;
            member
                .last_ack
                .is_some_and(|ack| ack < IN_TOUCH)
                .then_some((matched, id))
        })
        .max()
        .map(|(_, id)| id)
}

/// Runs while this node leads (until `stop`).
pub async fn run(consensus: Consensus, stop: CancellationToken) {
    let dir = consensus.data_dir().to_path_buf();
    tokio::select! {
        () = stop.cancelled() => return,
        () = tokio::time::sleep(SETTLE) => {}
    }
    let mut ticks = tokio::time::interval(CHECK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some((free, total)) = crate::system::disk_space(&dir) else {
            continue;
        };
        let floor = crate::system::space_floor(total);
        if free >= floor {
            continue;
        }
        let me = consensus.raft_node_id();
        let Some(to) = successor(me, &consensus.membership().voters, &consensus.progress()) else {
            continue;
        };
        tracing::warn!(
            free,
            floor,
            successor = to,
            "this leader's disk is under its free-space floor; handing leadership over"
        );
        if let Err(error) = consensus.transfer_leadership(to).await {
            tracing::warn!(%error, "cannot hand leadership over");
        }
        // The term ends with the hand-over, and this loop with it; if it does not, wait
        // before trying again.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SETTLE) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(matched: Option<u64>, ack_ms: Option<u64>) -> MemberProgress {
        MemberProgress {
            matched_index: matched,
            last_ack: ack_ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn the_most_caught_up_voter_in_touch_succeeds() {
        let voters = BTreeSet::from([1, 2, 3, 4]);
        let progress = BTreeMap::from([
            (2, member(Some(90), Some(100))),
            (3, member(Some(100), Some(50))),
            // Further along, but silent: its store may have stopped.
            (4, member(Some(120), Some(10_000))),
            // A learner is never chosen.
            (5, member(Some(200), Some(10))),
        ]);
        assert_eq!(successor(1, &voters, &progress), Some(3));
    }

    #[test]
    fn nobody_in_touch_means_no_hand_over() {
        let voters = BTreeSet::from([1, 2]);
        assert_eq!(successor(1, &voters, &BTreeMap::new()), None);
        let progress = BTreeMap::from([(2, member(None, Some(10)))]);
        assert_eq!(successor(1, &voters, &progress), None);
        assert_eq!(successor(1, &BTreeSet::from([1]), &BTreeMap::new()), None);
    }
}
