//! Where a node's assignments come from, and when it last heard the cluster.
//!
//! A worker reads the assignments stream of the manager its session is with, moving to the
//! next one gossip sees when that one stops answering or stops vouching for it (a manager
//! vouches only from a replica in touch with a quorum, see [`dispatcher`]); a manager reads its
//! own replica the same way, without the network, while its Raft node runs. Either way the
//! executor sees one [`Assigned`] set, kept whole across increments, and the time of the last
//! message that said the cluster counts this node ready — for a manager, also only while its
//! own Raft node is in touch with a quorum. That time is what the isolation lease runs from.

use std::collections::BTreeMap;
use std::time::Duration;

use symphony_consensus::{Consensus, DesiredState};
use symphony_ctl::proto::CtlError;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::manager::dispatcher;
use crate::remote::proto::{Assignment, AssignmentUpdate, RemoteReply, RemoteRequest};
use crate::worker::session::candidates;

/// How long after a broken stream the next manager is tried.
const RETRY: Duration = Duration::from_millis(500);

/// The node's assignments as last heard.
#[derive(Debug, Clone, Default)]
pub struct Assigned {
    /// `None` until a full set arrived (an agent that just started changes nothing before).
    pub tasks: Option<BTreeMap<u64, Assignment>>,
    /// Bumped with every full set: a new stream, whose manager may have missed reports.
    pub epoch: u64,
}

pub fn wants_running(assignment: &Assignment) -> bool {
    assignment.desired == DesiredState::Running
}

/// Keeps `assigned` and `contact` up to date until `shutdown`.
pub async fn run(
    ctx: Context,
    assigned: watch::Sender<Assigned>,
    contact: watch::Sender<Option<Instant>>,
    shutdown: CancellationToken,
) {
    let mut node = ctx.node.clone();
    let lease = ctx.node.config().settings.isolation_lease;
    loop {
        let state = node.state();
        if state.worker.is_none()
            && state
                .consensus
                .as_ref()
                .is_some_and(symphony_consensus::Consensus::has_stopped)
        {
            // This manager's Raft node has stopped (its store failed): its replica no longer
            // moves, so it assigns nothing new and vouches for nothing until the supervisor
            // starts the node again, which changes the node's state.
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = node.changed() => continue,
            }
        }
        let source = if let Some(worker) = &state.worker {
            Source::Manager {
                secret: worker.node_secret.clone(),
            }
        } else if let Some(consensus) = state.consensus.clone().filter(|consensus| {
            let own = state.identity.node_id;
            consensus.read_stale(|replica| replica.nodes.contains_key(&own))
        }) {
            Source::Replica(consensus)
        } else {
            // In no cluster: nothing is assigned; whatever runs stops.
            if state.cluster().is_none() {
                assigned.send_modify(|set| {
                    if set.tasks.as_ref().is_none_or(|tasks| !tasks.is_empty()) {
                        set.tasks = Some(BTreeMap::new());
                        set.epoch += 1;
                    }
                });
            }
            // A manager that just joined runs its Raft node before its replica holds its own
            // record: that arrives with the log, not with a change of the node's state, so
            // the replica's node table is watched as well.
            let mut own_record = state.consensus.as_ref().map(|consensus| {
                consensus.watch_tables(&[symphony_consensus::state::nodes::TABLE])
            });
            // It may have arrived since the check above, before the watch was made.
            let own = state.identity.node_id;
            if state.consensus.as_ref().is_some_and(|consensus| {
                consensus.read_stale(|replica| replica.nodes.contains_key(&own))
            }) {
                continue;
            }
            let record_changed = async {
                match own_record.as_mut() {
                    Some(watch) => {
                        if !watch.changed().await {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = node.changed() => continue,
                () = record_changed => continue,
            }
        };
        let mut follow = Follower {
            assigned: &assigned,
            contact: &contact,
            seq: None,
            heartbeat: dispatcher::heartbeat_every(lease),
            give_up: give_up_after(lease),
        };
        let ended = tokio::select! {
            () = shutdown.cancelled() => return,
            () = node.changed() => None,
            ended = follow.source(&ctx, source) => Some(ended),
        };
        if let Some(Err(error)) = ended {
            tracing::debug!(%error, "the assignments stream ended; trying again");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }
}

enum Source {
    /// A manager's stream, proved with this worker's secret.
    Manager { secret: String },
    /// This manager's own replica.
    Replica(Consensus),
}

/// How long a worker stays on a manager's stream that has not vouched for it (said that the
/// cluster counts it ready, from a replica in touch with a quorum): about half the isolation
/// lease, but at least two heartbeats. A manager that was cut off or whose Raft node stopped
/// keeps a connection open and may keep beating from a replica that no longer moves; the
/// worker must move on to one that does while its lease still runs, or it would neither hear
/// of new tasks nor keep its lease although the rest of the cluster is reachable.
pub fn give_up_after(lease: Duration) -> Duration {
    let heartbeat = dispatcher::heartbeat_every(lease);
    (lease / 2).min(heartbeat * 3).max(heartbeat * 2)
}

/// When a manager's stream has gone on too long without vouching for the node.
#[derive(Debug, Clone, Copy)]
struct Vouching {
    last: Instant,
    give_up: Duration,
}

impl Vouching {
    /// A stream just opened: it has until `give_up` from now.
    fn new(now: Instant, give_up: Duration) -> Vouching {
        Vouching { last: now, give_up }
    }

    fn vouched(&mut self, at: Instant) {
        self.last = self.last.max(at);
    }

    /// When the stream is given up unless it vouches again.
    fn deadline(&self) -> Instant {
        self.last + self.give_up
    }
}

/// Applies one stream's updates to the set.
struct Follower<'a> {
    assigned: &'a watch::Sender<Assigned>,
    contact: &'a watch::Sender<Option<Instant>>,
    /// The last sequence number applied on this stream.
    seq: Option<u64>,
    /// How often a quiet stream beats, for this node's isolation lease.
    heartbeat: Duration,
    /// How long a manager's stream may go without vouching for this node.
    give_up: Duration,
}

impl Follower<'_> {
    async fn source(&mut self, ctx: &Context, source: Source) -> Result<(), CtlError> {
        match source {
            Source::Replica(consensus) => {
                let node_id = ctx.node.node_id();
                let mut updates =
                    dispatcher::assignments(consensus.clone(), node_id, self.heartbeat);
                let mut ticks = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tokio::select! {
                        update = updates.recv() => match update {
                            Some(update) => {
                                self.apply(update, consensus.in_touch_with_quorum())?;
                            }
                            // The Raft node stopped: the next source is chosen afresh.
                            None => return Err(crate::errors::internal(
                                "this manager's replica stopped streaming its assignments",
                            )),
                        },
                        // A manager is in touch while its Raft node is, whatever the stream.
                        _ = ticks.tick() => {
                            if consensus.in_touch_with_quorum() && self.seq.is_some() {
                                self.touch();
                            }
                        }
                    }
                }
            }
            Source::Manager { secret } => {
                let current = ctx.session.view().map(|view| view.manager);
                let remembered = ctx.node.worker().map(|w| w.managers).unwrap_or_default();
                let gossip = ctx.gossip.running().map(|running| running.gossip);
                let managers =
                    candidates(current, gossip.as_ref(), ctx.node.node_id(), remembered).await;
                let mut last_error = None;
                for manager in managers {
                    let request = RemoteRequest::Assignments {
                        node_id: ctx.node.node_id(),
                        secret: secret.clone(),
                        heartbeat_ms: Some(
                            u64::try_from(self.heartbeat.as_millis()).unwrap_or(u64::MAX),
                        ),
                    };
                    let mut stream = match ctx.remote.stream(&manager.remote_addr, request).await {
                        Ok(stream) => stream,
                        Err(error) => {
                            last_error = Some(error);
                            continue;
                        }
                    };
                    self.seq = None;
                    let mut vouching = Vouching::new(Instant::now(), self.give_up);
                    loop {
                        let next = tokio::time::timeout_at(vouching.deadline(), stream.next());
                        match next.await {
                            Ok(Some(Ok(RemoteReply::Assignments(AssignmentUpdate::Trust {
                                bundle,
                                removed,
                            })))) => keep_trust(ctx, &bundle, &removed),
                            Ok(Some(Ok(RemoteReply::Assignments(update)))) => {
                                if self.apply(update, true)? {
                                    vouching.vouched(Instant::now());
                                }
                            }
                            Ok(Some(Ok(_)) | None) => break,
                            Ok(Some(Err(error))) => {
                                last_error = Some(crate::errors::internal(error.to_string()));
                                break;
                            }
                            Err(_) => {
                                tracing::debug!(
                                    manager = manager.node_id,
                                    "the manager has not vouched for this node for {:?}; trying the next",
                                    self.give_up
                                );
                                last_error = Some(crate::errors::internal(format!(
                                    "manager {} did not vouch for this node within {:?}",
                                    manager.node_id, self.give_up
                                )));
                                break;
                            }
                        }
                    }
                }
                Err(last_error.unwrap_or_else(|| {
                    crate::errors::internal("no manager serves this node's assignments")
                }))
            }
        }
    }

    /// Applies one update; a gap in the numbering ends the stream (the next starts with a
    /// full set). Says whether it vouched for the node (and so moved its last contact).
    fn apply(&mut self, update: AssignmentUpdate, in_touch: bool) -> Result<bool, CtlError> {
        let ready = match update {
            AssignmentUpdate::Full {
                seq,
                tasks,
                node_ready,
            } => {
                self.seq = Some(seq);
                self.assigned.send_modify(|set| {
                    set.tasks = Some(tasks.into_iter().map(|task| (task.task_id, task)).collect());
                    set.epoch += 1;
                });
                node_ready
            }
            AssignmentUpdate::Increment {
                seq,
                changed,
                removed,
                node_ready,
            } => {
                if self.seq.map(|last| last + 1) != Some(seq) {
                    return Err(gap(self.seq, seq));
                }
                self.seq = Some(seq);
                self.assigned.send_modify(|set| {
                    let tasks = set.tasks.get_or_insert_with(BTreeMap::new);
                    for id in removed {
                        tasks.remove(&id);
                    }
                    for task in changed {
                        tasks.insert(task.task_id, task);
                    }
                });
                node_ready
            }
            AssignmentUpdate::Heartbeat { seq, node_ready } => {
                if self.seq != Some(seq) {
                    return Err(gap(self.seq, seq));
                }
                node_ready
            }
            // A manager's own trust follows its replica (`manager::trust`); a worker's is
            // kept where the stream is read.
            AssignmentUpdate::Trust { .. } => return Ok(false),
        };
        let vouched = ready && in_touch;
        if vouched {
            self.touch();
        }
        Ok(vouched)
    }

    fn touch(&self) {
        self.contact.send_replace(Some(Instant::now()));
    }
}

/// Trusts the CA bundle the session's manager says the cluster trusts, and refuses the nodes
/// it says were removed: it came over this node's mutual TLS from a manager of its cluster.
fn keep_trust(ctx: &Context, bundle: &str, removed: &std::collections::BTreeSet<u64>) {
    ctx.tls.set_removed(removed);
    match ctx.tls.set_trust(&symphony_pki::CaBundle::new(bundle)) {
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot keep the cluster's CA bundle"),
    }
}

fn gap(last: Option<u64>, got: u64) -> CtlError {
    crate::errors::internal(format!(
        "the assignments stream skipped from {last:?} to {got}; asking for the full set again"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_leaves_a_stream_that_stops_vouching_while_its_lease_runs() {
        // The chaos runs' lease: beats every 750 ms, given up after two missed.
        let lease = Duration::from_secs(3);
        assert_eq!(give_up_after(lease), Duration::from_millis(1_500));
        assert!(give_up_after(lease) < lease);
        // The default lease: half of it.
        assert_eq!(
            give_up_after(Duration::from_secs(10)),
            Duration::from_secs(5)
        );
        // A long lease: three beats, not half an hour.
        assert_eq!(
            give_up_after(Duration::from_secs(3_600)),
            dispatcher::HEARTBEAT * 3
        );
        // Never less than two beats, so one late beat is not enough.
        let tiny = Duration::from_millis(100);
        assert_eq!(give_up_after(tiny), dispatcher::heartbeat_every(tiny) * 2);
    }

    #[test]
    fn only_vouching_moves_the_deadline() {
        let start = Instant::now();
        let mut vouching = Vouching::new(start, Duration::from_secs(2));
        assert_eq!(vouching.deadline(), start + Duration::from_secs(2));
        vouching.vouched(start + Duration::from_secs(1));
        assert_eq!(vouching.deadline(), start + Duration::from_secs(3));
        // A late report of an earlier vouch does not move it back.
        vouching.vouched(start);
        assert_eq!(vouching.deadline(), start + Duration::from_secs(3));
    }
}
