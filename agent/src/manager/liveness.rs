//! The leader's liveness reconciler: what gossip says about nodes, turned into node status.
//!
//! Gossip is every node's opinion; the cluster state is one decision, made by the leader
//! (Consul's leader loop works the same way). The reconciler compares the leader's own gossip
//! view with the node records, by level rather than by event, so a lost or reordered event
//! cannot leave a wrong status behind:
//! - a node gossip sees alive is `ready` (a `down` one is marked ready again);
//! - a node gossip has not seen alive for the grace period is marked `down`;
//! - a node that `left` stays so: only a new join brings it back.
//!
//! Members are keyed by node id, not by gossip identity, so a restarted node (a new identity
//! at the same address, while gossip declares the old one down) is alive as soon as its new
//! life is. A leader that has just been elected, or whose gossip has just started, has not
//! heard from everyone yet: it marks nothing down until its view is a few probe rounds old,
//! and it refuses to mark most of a sizeable fleet down at once unless that view persists,
//! since a leader cut off from the fleet sees exactly that.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use symphony_consensus::{Command, NodeCommand, NodeStatus};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::leader::LeaderHandles;
use super::propose::propose;

/// How often the leader compares gossip with the node records.
const TICK: Duration = Duration::from_millis(250);
/// The shortest time a view must be held (since gossip started, or this node became leader)
/// before it may mark anything down.
const MIN_WARM_UP: Duration = Duration::from_secs(5);
/// Marking more than half of at least this many other ready nodes down at once needs the view
/// to persist for [`WHOLESALE_HOLD`].
const WHOLESALE_MIN_NODES: usize = 4;
const WHOLESALE_HOLD: Duration = Duration::from_secs(30);

/// Runs while this node leads (until `stop`); a new term starts with a new reconciler.
pub async fn run(handles: LeaderHandles, stop: CancellationToken) {
    let mut reconciler = Reconciler::new(handles.liveness_grace);
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        reconcile(&handles, &mut reconciler).await;
    }
}

/// The reconciler's memory; reset whenever this node stops leading.
#[derive(Debug)]
pub struct Reconciler {
    grace: Duration,
    leading_since: Option<Instant>,
    /// When each node was first seen missing by this leader.
    missing_since: BTreeMap<u64, Instant>,
    /// Whether the wholesale guard has been reported, so it is logged once per episode.
    holding: bool,
}

/// One node as the reconciler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    pub node_id: u64,
    pub status: NodeStatus,
}

impl Reconciler {
    pub fn new(grace: Duration) -> Reconciler {
        Reconciler {
            grace,
            leading_since: None,
            missing_since: BTreeMap::new(),
            holding: false,
        }
    }

    /// Forgets everything: this node no longer leads.
    pub fn step_down(&mut self) {
        self.leading_since = None;
        self.missing_since.clear();
        self.holding = false;
    }

    /// The status changes to propose, given the records and the nodes gossip sees alive.
    pub fn decide(
        &mut self,
        now: Instant,
        gossip_started: Instant,
        own_id: u64,
        records: &[Observed],
        alive: &BTreeSet<u64>,
    ) -> Vec<(u64, NodeStatus)> {
        let leading_since = *self.leading_since.get_or_insert(now);
        let known: BTreeSet<u64> = records.iter().map(|record| record.node_id).collect();
        self.missing_since.retain(|id, _| known.contains(id));
        let mut changes = Vec::new();
        let mut downs = Vec::new();
        for record in records {
            if record.status == NodeStatus::Left {
                self.missing_since.remove(&record.node_id);
                continue;
            }
            if record.node_id == own_id || alive.contains(&record.node_id) {
                self.missing_since.remove(&record.node_id);
                if record.status == NodeStatus::Down {
                    changes.push((record.node_id, NodeStatus::Ready));
                }
                continue;
            }
            let since = *self.missing_since.entry(record.node_id).or_insert(now);
            if record.status == NodeStatus::Ready && now.duration_since(since) >= self.grace {
                downs.push((record.node_id, now.duration_since(since)));
            }
        }
        let warm_up = self.grace.max(MIN_WARM_UP);
        let view_age = now.duration_since(leading_since.max(gossip_started));
        if downs.is_empty() || view_age < warm_up {
            return changes;
        }
        let others_ready = records
            .iter()
            .filter(|record| record.node_id != own_id && record.status == NodeStatus::Ready)
            .count();
        let wholesale = others_ready >= WHOLESALE_MIN_NODES && downs.len() * 2 > others_ready;
        if wholesale
            && downs
                .iter()
                .any(|(_, missing_for)| *missing_for < WHOLESALE_HOLD)
        {
            if !self.holding {
                tracing::warn!(
                    missing = downs.len(),
                    ready = others_ready,
                    "gossip on the leader misses most of the fleet; not marking it down unless this lasts {WHOLESALE_HOLD:?}"
                );
                self.holding = true;
            }
            return changes;
        }
        self.holding = false;
        changes.extend(downs.into_iter().map(|(id, _)| (id, NodeStatus::Down)));
        changes
    }
}

/// One pass: feeds the reconciler the records and the gossip view, and proposes its decisions.
async fn reconcile(handles: &LeaderHandles, reconciler: &mut Reconciler) {
    let Some(running) = handles.gossip.running() else {
        reconciler.step_down();
        return;
    };
    let Ok(members) = running.gossip.members().await else {
        return;
    };
    let alive: BTreeSet<u64> = members.iter().map(|member| member.node_id).collect();
    let records: Vec<Observed> = handles.consensus.read_stale(|state| {
        state
            .nodes
            .values()
            .map(|record| Observed {
                node_id: record.node_id,
                status: record.status,
            })
            .collect()
    });
    let changes = reconciler.decide(
        Instant::now(),
        running.started,
        handles.node_id,
        &records,
        &alive,
    );
    for (node_id, status) in changes {
        let command = Command::Node(Box::new(NodeCommand::SetStatus {
            node_id,
            status,
            at_ms: crate::now_ms(),
        }));
        match propose(&handles.consensus, command).await {
            Ok(_) => tracing::info!(node_id, status = status.as_str(), "node status changed"),
            Err(error) => {
                tracing::debug!(node_id, %error, "recording a node status failed; will retry")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(1);
    const ME: u64 = 1;

    fn observed(node_id: u64, status: NodeStatus) -> Observed {
        Observed { node_id, status }
    }

    fn ready(ids: &[u64]) -> Vec<Observed> {
        ids.iter()
            .map(|id| observed(*id, NodeStatus::Ready))
            .collect()
    }

    fn alive(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_missing_node_goes_down_after_the_grace_period_and_comes_back() {
        let start = Instant::now();
        let mut reconciler = Reconciler::new(GRACE);
        let records = ready(&[ME, 2, 3]);
        // Warm: the view is older than the warm-up.
        let gossip_started = start;
        let at = |secs| start + MIN_WARM_UP + Duration::from_secs(secs);
        assert!(
            reconciler
                .decide(start, gossip_started, ME, &records, &alive(&[ME, 2, 3]))
                .is_empty()
        );
        assert!(
            reconciler
                .decide(at(0), gossip_started, ME, &records, &alive(&[ME, 2]))
                .is_empty()
        );
        assert_eq!(
            reconciler.decide(at(1), gossip_started, ME, &records, &alive(&[ME, 2])),
            vec![(3, NodeStatus::Down)]
        );
        let records = vec![
            observed(ME, NodeStatus::Ready),
            observed(2, NodeStatus::Ready),
            observed(3, NodeStatus::Down),
        ];
        assert_eq!(
            reconciler.decide(at(2), gossip_started, ME, &records, &alive(&[ME, 2, 3])),
            vec![(3, NodeStatus::Ready)]
        );
    }

    #[test]
    fn a_new_leader_marks_nothing_down_until_its_view_has_warmed_up() {
        let start = Instant::now();
        let mut reconciler = Reconciler::new(GRACE);
        let records = ready(&[ME, 2, 3]);
        // Gossip has run for long, but this node has only just become leader.
        let gossip_started = start - Duration::from_secs(60);
        for secs in [0, 1, 2, 4] {
            let now = start + Duration::from_secs(secs);
            assert!(
                reconciler
                    .decide(now, gossip_started, ME, &records, &alive(&[ME, 2]))
                    .is_empty(),
                "marked down {secs}s after becoming leader"
            );
        }
        assert_eq!(
            reconciler.decide(
                start + MIN_WARM_UP,
                gossip_started,
                ME,
                &records,
                &alive(&[ME, 2])
            ),
            vec![(3, NodeStatus::Down)]
        );
        // Stepping down forgets; the next term starts over.
        reconciler.step_down();
        let later = start + Duration::from_secs(100);
        assert!(
            reconciler
                .decide(later, gossip_started, ME, &records, &alive(&[ME, 2]))
                .is_empty()
        );
    }

    #[test]
    fn a_leader_that_loses_sight_of_most_of_the_fleet_holds_off() {
        let start = Instant::now();
        let mut reconciler = Reconciler::new(GRACE);
        let records = ready(&[ME, 2, 3, 4, 5, 6, 7]);
        let gossip_started = start - Duration::from_secs(60);
        reconciler.decide(
            start,
            gossip_started,
            ME,
            &records,
            &alive(&[ME, 2, 3, 4, 5, 6, 7]),
        );
        let cut_off = start + MIN_WARM_UP;
        for secs in [0, 5, 20] {
            let now = cut_off + Duration::from_secs(secs);
            assert!(
                reconciler
                    .decide(now, gossip_started, ME, &records, &alive(&[ME, 2]))
                    .is_empty()
            );
        }
        let changes = reconciler.decide(
            cut_off + WHOLESALE_HOLD,
            gossip_started,
            ME,
            &records,
            &alive(&[ME, 2]),
        );
        assert_eq!(changes.len(), 5);
    }

    #[test]
    fn left_nodes_are_left_alone_and_the_leader_is_always_alive() {
        let start = Instant::now();
        let mut reconciler = Reconciler::new(GRACE);
        let gossip_started = start - Duration::from_secs(60);
        let records = vec![
            observed(ME, NodeStatus::Down),
            observed(2, NodeStatus::Left),
        ];
        reconciler.decide(start, gossip_started, ME, &records, &alive(&[]));
        let changes = reconciler.decide(
            start + Duration::from_secs(30),
            gossip_started,
            ME,
            &records,
            &alive(&[2]),
        );
        assert_eq!(changes, vec![(ME, NodeStatus::Ready)]);
    }
}
