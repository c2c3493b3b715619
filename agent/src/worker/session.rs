//! The worker's session with one manager: the loop that owns it, and the handle `status` and
//! `join` use.
//!
//! Every few seconds the worker asks its manager for the managers and their leader, and at
//! once when gossip says a manager came or went: a worker whose manager dies is talking to
//! another as soon as gossip has declared it down (a few seconds), and learns a new leader
//! when the old one's death is gossiped. A manager that does not answer within a second is
//! replaced by the next one gossip sees alive. The same call carries how many members the
//! worker's gossip sees, and a manager that sees clearly more answers with its whole view
//! (see [`crate::manager::sessions`]). It also says which gossip keyring version the worker
//! holds, and a manager with a newer one hands it over: that is how workers follow a key
//! rotation. The session is where later work (task assignments)
//! will flow; a worker's liveness never depends on it.
//!
//! The period is a trade: each refresh wakes the worker and its manager, and at fleet scale
//! that is most of an idle fleet's CPU after gossip itself.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use symphony_ctl::proto::ErrorCode;
use symphony_gossip::{MemberEvent, Role};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gossip::GossipWatch;
use crate::keyring::KeyringStore;
use crate::node::NodeHandle;
use crate::remote::RemotePool;
use crate::remote::proto::{ManagerContact, RemoteReply, RemoteRequest};

/// How often the session is refreshed when gossip reports nothing about the managers.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How long one session call may take before the worker tries another manager.
const SESSION_TIMEOUT: Duration = Duration::from_secs(1);
/// The least time between two merges of a manager's gossip view into a worker's.
const VIEW_MERGE_EVERY: Duration = Duration::from_secs(60);

/// A worker's session as last heard from its manager.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub manager: ManagerContact,
    pub leader_node_id: Option<u64>,
    pub managers: Vec<ManagerContact>,
    pub at: Instant,
}

/// Reads the session and asks for a refresh; cheap to clone.
#[derive(Clone)]
pub struct SessionHandle {
    view: watch::Receiver<Option<SessionView>>,
    refresh: mpsc::Sender<oneshot::Sender<()>>,
}

impl SessionHandle {
    /// The session as last heard, while this node is a worker.
    pub fn view(&self) -> Option<SessionView> {
        self.view.borrow().clone()
    }

    /// Refreshes the session now and waits for the round to finish (after a join, so `status`
    /// names the managers at once).
    pub async fn refresh_now(&self) {
        let (done, wait) = oneshot::channel();
        if self.refresh.send(done).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// What the session loop needs, before it runs.
pub struct SessionLoop {
    view: watch::Sender<Option<SessionView>>,
    refresh: mpsc::Receiver<oneshot::Sender<()>>,
}

/// The loop and its handle.
pub fn channel() -> (SessionLoop, SessionHandle) {
    let (view, view_receiver) = watch::channel(None);
    let (refresh, refresh_receiver) = mpsc::channel(8);
    (
        SessionLoop {
            view,
            refresh: refresh_receiver,
        },
        SessionHandle {
            view: view_receiver,
            refresh,
        },
    )
}

/// Runs until `shutdown`; does something only while this node is a worker.
pub async fn run(
    parts: SessionLoop,
    node: NodeHandle,
    mut gossip: GossipWatch,
    remote: Arc<RemotePool>,
    keys: Arc<KeyringStore>,
    shutdown: CancellationToken,
) {
    let SessionLoop { view, mut refresh } = parts;
    let mut session = Session {
        node,
        remote,
        keys,
        view,
        view_merged: None,
    };
    let mut ticks = tokio::time::interval(REFRESH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events: Option<broadcast::Receiver<MemberEvent>> = None;
    loop {
        if events.is_none() {
            events = gossip.running().map(|running| running.gossip.subscribe());
        }
        let mut done = None;
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
            asked = refresh.recv() => done = asked,
            // Gossip started or stopped: subscribe again, and refresh.
            () = gossip.changed() => events = None,
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
            () = session.refresh(&gossip) => {}
        }
        if let Some(done) = done {
            let _ = done.send(());
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

/// The session loop's own state.
struct Session {
    node: NodeHandle,
    remote: Arc<RemotePool>,
    keys: Arc<KeyringStore>,
    view: watch::Sender<Option<SessionView>>,
    /// When this worker last merged a manager's gossip view.
    view_merged: Option<Instant>,
}

impl Session {
    /// One round: ask the current manager (or the next that answers) for the managers and
    /// their leader. Remembers the managers when they changed.
    async fn refresh(&mut self, gossip: &GossipWatch) {
        let Some(worker) = self.node.worker() else {
            self.view.send_replace(None);
            return;
        };
        let gossip = gossip.running().map(|running| running.gossip);
        // Not within VIEW_MERGE_EVERY of the last merge, so that a fleet that keeps growing
        // (every worker always a little behind) does not have each worker pull the whole view
        // from the managers every few seconds.
        let may_ask_for_view = self
            .view_merged
            .is_none_or(|merged| merged.elapsed() >= VIEW_MERGE_EVERY);
        let request = RemoteRequest::Session {
            node_id: self.node.node_id(),
            secret: worker.node_secret.clone(),
            members_seen: gossip
                .as_ref()
                .filter(|_| may_ask_for_view)
                .map(|gossip| u64::try_from(gossip.member_count()).unwrap_or(u64::MAX)),
            keyring_version: self.keys.version(&worker.cluster_id),
        };
        let current = self.view.borrow().clone();
        let previous = current.as_ref().map(|view| view.manager.node_id);
        let candidates = candidates(
            current.map(|view| view.manager),
            gossip.as_ref(),
            self.node.node_id(),
            worker.managers.clone(),
        )
        .await;
        for manager in candidates {
            let call = self
                .remote
                .call(&manager.remote_addr, request.clone(), SESSION_TIMEOUT);
            let reply = match tokio::time::timeout(SESSION_TIMEOUT * 2, call).await {
                Ok(Ok(RemoteReply::Session(reply))) => reply,
                Ok(Ok(_)) => continue,
                Ok(Err(error)) => {
                    // NotFound also comes from a manager that has not applied this
                    // worker's join yet; only a wrong secret is worth a warning.
                    if error.code == ErrorCode::InvalidToken {
                        tracing::warn!(manager = manager.node_id, %error, "a manager refused this worker's session");
                    } else {
                        tracing::debug!(manager = manager.node_id, %error, "session call failed");
                    }
                    continue;
                }
                Err(_) => {
                    tracing::debug!(manager = manager.node_id, "session call timed out");
                    continue;
                }
            };
            if reply.cluster_id != worker.cluster_id {
                tracing::warn!(manager = manager.node_id, cluster_id = %reply.cluster_id, "a manager of another cluster answered; skipping it");
                continue;
            }
            if previous != Some(manager.node_id) {
                tracing::info!(manager = manager.node_id, addr = %manager.remote_addr, "session with a manager");
            }
            if !reply.members.is_empty()
                && let Some(gossip) = &gossip
            {
                tracing::debug!(
                    members = reply.members.len(),
                    "merging the manager's gossip view"
                );
                if let Err(error) = gossip.apply(reply.members).await {
                    tracing::debug!(%error, "cannot merge the manager's gossip view");
                }
                self.view_merged = Some(Instant::now());
            }
            if let Some(keyring) = &reply.gossip_keys
                && let Err(error) = self.keys.offer(&worker.cluster_id, keyring)
            {
                tracing::warn!(%error, "cannot keep the new gossip keyring on disk");
            }
            if !reply.managers.is_empty() && reply.managers != worker.managers {
                self.node.remember_managers(reply.managers.clone());
            }
            self.view.send_replace(Some(SessionView {
                manager,
                leader_node_id: reply.leader_node_id,
                managers: reply.managers,
                at: Instant::now(),
            }));
            return;
        }
        // Said once per outage, not every second: an overloaded or cut-off worker would
        // otherwise fill its log with the same line.
        let last_answer = self.view.borrow().as_ref().map(|view| view.at.elapsed());
        if last_answer.is_none_or(|age| age < SESSION_TIMEOUT * 4) {
            tracing::warn!("no manager answered this worker's session; retrying");
        } else {
            tracing::debug!("no manager answered this worker's session; retrying");
        }
    }
}

/// The managers a worker of `ctx` tries now, best first (see [`candidates`]): its session's,
/// those its gossip sees, those its `worker.json` remembers.
pub async fn managers_to_try(ctx: &crate::context::Context) -> Vec<ManagerContact> {
    let remembered = ctx
        .node
        .worker()
        .map(|worker| worker.managers)
        .unwrap_or_default();
    let gossip = ctx.gossip.running().map(|running| running.gossip);
    let current = ctx.session.view().map(|view| view.manager);
    candidates(current, gossip.as_ref(), ctx.node.node_id(), remembered).await
}

/// The managers to try, best first: the current one (if gossip does not say it is gone), then
/// those gossip sees alive, then those remembered in `worker.json`; each group in an order of
/// this node's own (see [`spread`]).
pub async fn candidates(
    current: Option<ManagerContact>,
    gossip: Option<&symphony_gossip::Gossip>,
    own_id: u64,
    remembered: Vec<ManagerContact>,
) -> Vec<ManagerContact> {
    let alive: Vec<ManagerContact> = match gossip {
        Some(gossip) => gossip
            .managers()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|member| ManagerContact {
                node_id: member.node_id,
                remote_addr: member.remote_addr,
                gossip_addr: Some(member.gossip_addr.to_string()),
            })
            .collect(),
        None => Vec::new(),
    };
    let mut candidates = Vec::new();
    if let Some(current) = current
        && (alive.is_empty()
            || alive
                .iter()
                .any(|manager| manager.node_id == current.node_id))
    {
        candidates.push(current);
    }
    candidates.extend(spread(alive, own_id));
    candidates.extend(spread(remembered, own_id));
    let mut seen = BTreeSet::new();
    candidates.retain(|manager| seen.insert(manager.node_id));
    candidates
}

/// `managers` in an order that depends on `node_id`: sorted, then rotated by it. Workers keep
/// the first manager that answers, so without this every worker of a fleet would open its
/// session with the same manager (the first one listed at join) and leave the others idle.
fn spread(mut managers: Vec<ManagerContact>, node_id: u64) -> Vec<ManagerContact> {
    managers.sort_by_key(|manager| manager.node_id);
    if let Some(shift) = usize::try_from(node_id)
        .ok()
        .and_then(|id| id.checked_rem(managers.len()))
    {
        managers.rotate_left(shift);
    }
    managers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_spread_their_sessions_over_the_managers() {
        let managers: Vec<ManagerContact> = [30, 10, 20]
            .into_iter()
            .map(|node_id| ManagerContact {
                node_id,
                remote_addr: format!("127.0.0.1:{node_id}"),
                gossip_addr: None,
            })
            .collect();
        let first = |worker: u64| spread(managers.clone(), worker)[0].node_id;
        assert_eq!([first(0), first(1), first(2), first(3)], [10, 20, 30, 10]);
        assert_eq!(spread(managers.clone(), 4).len(), 3);
        assert!(spread(Vec::new(), 7).is_empty());
    }
}
