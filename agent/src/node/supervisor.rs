//! The role supervisor: the one task that changes what this node is.
//!
//! It carries out [`RoleCommand`]s one at a time, so two changes of membership never
//! interleave, and publishes the [`NodeState`] after each step that others must see (a Raft
//! node started, a worker's membership saved). The [`Owner`] is what the transitions in
//! [`super::init`], [`super::leave`] and [`crate::worker`] work through: its methods are the only
//! code that starts or stops the Raft node, opens or closes the Raft port, or writes
//! `key.json` and `worker.json`.

use std::sync::Arc;
use std::time::Duration;

use symphony_consensus::{Consensus, ConsensusConfig};
use symphony_ctl::proto::{CtlError, ErrorCode};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::raft_port::RaftPort;
use super::{NodeConfig, NodeHandle, NodeState, RoleCommand};
use crate::context::Context;
use crate::errors::{consensus_error, internal};
use crate::identity::Identity;
use crate::worker::state::{ManagerContact, WorkerState};

/// What the supervisor owns, and the only ways to change it.
pub struct Owner {
    state: watch::Sender<NodeState>,
    raft_port: RaftPort,
    /// The agent's handles (this node's own among them), for the transitions.
    pub ctx: Context,
    /// When a Raft node whose store failed may next be started again.
    heal_after: Option<Instant>,
    heal_delay: Duration,
}

/// How often the supervisor looks at its Raft node's store, and the longest it waits between
/// two attempts to start a failed one again.
const HEAL_EVERY: Duration = Duration::from_secs(1);
const FIRST_HEAL_DELAY: Duration = Duration::from_secs(1);
const MAX_HEAL_DELAY: Duration = Duration::from_secs(30);

impl Owner {
    pub(crate) fn new(state: watch::Sender<NodeState>, raft_port: RaftPort, ctx: Context) -> Owner {
        Owner {
            state,
            raft_port,
            ctx,
            heal_after: None,
            heal_delay: FIRST_HEAL_DELAY,
        }
    }

    /// The node as published now.
    pub fn current(&self) -> NodeState {
        self.state.borrow().clone()
    }

    pub fn config(&self) -> &NodeConfig {
        self.ctx.node.config()
    }

    pub fn node(&self) -> &NodeHandle {
        &self.ctx.node
    }

    /// Publishes a change, and tells watchers the membership may have changed.
    fn publish(&self, change: impl FnOnce(&mut NodeState)) {
        self.state.send_modify(|state| {
            change(state);
            state.generation += 1;
        });
    }

    /// Tells watchers to look again (the cluster state reached this node, gossip should
    /// follow), without changing the handles.
    pub fn membership_changed(&self) {
        self.publish(|_| {});
    }

    /// The consensus configuration for this node's current Raft id.
    fn consensus_config(&self) -> ConsensusConfig {
        let mut config = self.config().setup.config.clone();
        config.raft_node_id = self.current().identity.raft_node_id;
        config
    }

    /// The Raft node, started if none runs, serving the Raft port (a manager must).
    pub async fn start_raft(&mut self) -> Result<Consensus, CtlError> {
        let consensus = match self.current().consensus {
            Some(consensus) => consensus,
            None => {
                let consensus =
                    Consensus::start(self.consensus_config(), self.config().setup.local.clone())
                        .await
                        .map_err(consensus_error)?;
                self.publish(|state| state.consensus = Some(consensus.clone()));
                consensus
            }
        };
        self.open_raft_port().await?;
        Ok(consensus)
    }

    /// Serves the Raft port, if it is not served yet.
    pub async fn open_raft_port(&mut self) -> Result<(), CtlError> {
        if self.raft_port.is_open() {
            return Ok(());
        }
        self.raft_port.open(self.ctx.node.clone()).await
    }

    /// Serves the Raft port on a listener bound at start-up.
    pub fn open_raft_port_with(&mut self, listener: TcpListener) {
        self.raft_port.open_with(listener, self.ctx.node.clone());
    }

    /// Frees the Raft port (a worker serves none), ending the connections it served.
    pub async fn close_raft_port(&mut self) {
        self.raft_port.close().await;
    }

    /// Stops the Raft node, if one runs, and forgets it.
    pub async fn stop_raft(&mut self) {
        if let Some(consensus) = self.current().consensus {
            consensus.shutdown().await;
            self.publish(|state| state.consensus = None);
        }
    }

    /// Whether a Raft node runs here and holds a membership: some peer made this node part of
    /// a Raft group, whether or not the cluster's state has reached it yet.
    pub async fn raft_has_membership(&self) -> bool {
        match self.current().consensus {
            Some(consensus) => consensus.is_initialised().await.unwrap_or(true),
            None => false,
        }
    }

    /// Gives this node a new Raft id (a manager that left must never come back under its old
    /// one; see [`Identity::renew_raft_id`]).
    pub fn renew_raft_id(&mut self) -> Result<Identity, CtlError> {
        let renewed = self
            .current()
            .identity
            .renew_raft_id(&self.config().settings.config_dir)
            .map_err(|error| internal(error.to_string()))?;
        self.publish(|state| state.identity = renewed.clone());
        Ok(renewed)
    }

    /// Makes this node a worker of the cluster `state` describes (or, with `None`, no longer
    /// a worker): `worker.json` is written (or removed) first, then the change is published.
    pub async fn set_worker(&mut self, worker: Option<WorkerState>) -> Result<(), CtlError> {
        let dir = self.config().settings.config_dir.clone();
        let saved = worker.clone();
        tokio::task::spawn_blocking(move || match saved {
            Some(state) => state.save(&dir),
            None => WorkerState::remove(&dir),
        })
        .await
        .map_err(|error| internal(error.to_string()))?
        .map_err(|error| internal(error.to_string()))?;
        self.publish(|state| state.worker = worker);
        Ok(())
    }

    /// Remembers the managers a worker's session learned, if they changed.
    async fn remember_managers(&mut self, managers: Vec<ManagerContact>) {
        let Some(worker) = self.current().worker else {
            return;
        };
        if managers.is_empty() || managers == worker.managers {
            return;
        }
        let updated = WorkerState { managers, ..worker };
        if let Err(error) = self.set_worker(Some(updated)).await {
            tracing::warn!(%error, "cannot remember the managers");
        }
    }

    /// Starts a Raft node whose store failed again from what is on disk, once the cause is
    /// gone: a full disk once it has room above its floor, any other failure after a growing
    /// delay. Reopening the file (not reusing the failed store) is what makes a failed fsync
    /// safe: nothing the kernel may have dropped is trusted. A Raft node that stopped without a
    /// failed write (openraft stops on any storage error, a snapshot that could not be built or
    /// installed among them) is started again the same way: left stopped, the manager would
    /// stay in the cluster with a replica that no longer moves. And one whose store failed a
    /// write openraft did not wait for (the state rows), which keeps running, is stopped and
    /// started again after a grace: until then its store counts as failed, and the node stays
    /// out of the gossip pool for ever.
    async fn heal(&mut self) {
        let Some(consensus) = self.current().consensus else {
            return;
        };
        let fault = consensus.store_fault();
        let delay = match self.heal_after {
            None => Delay::Unset,
            Some(at) if Instant::now() < at => Delay::Running,
            Some(_) => Delay::Passed,
        };
        let step = heal_step(consensus.has_stopped(), fault.as_ref(), delay, || {
            crate::manager::propose::check_room(consensus.data_dir()).is_ok()
        });
        match step {
            HealStep::Healthy => {
                self.heal_delay = FIRST_HEAL_DELAY;
                self.heal_after = None;
                return;
            }
            HealStep::Wait => return,
            HealStep::Grace => {
                self.heal_after = Some(Instant::now() + self.heal_delay);
                return;
            }
            HealStep::Restart => {}
        }
        self.heal_after = Some(Instant::now() + self.heal_delay);
        self.heal_delay = (self.heal_delay * 2).min(MAX_HEAL_DELAY);
        let why = fault.map_or_else(
            || "the Raft node stopped (a storage error other than a write; see above)".to_string(),
            |fault| fault.message,
        );
        tracing::info!(fault = %why, "starting the Raft node again from its store");
        consensus.shutdown().await;
        let config = self.consensus_config();
        let local = self.config().setup.local.clone();
        // The stopped node's tasks let go of the file a moment after it stops.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Consensus::start(config.clone(), local.clone()).await {
                Ok(restarted) => {
                    self.publish(|state| state.consensus = Some(restarted));
                    tracing::info!("the Raft node runs again");
                    return;
                }
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "the store is not free yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot start the Raft node again yet; retrying");
                    return;
                }
            }
        }
    }

    /// Stops everything this node runs: the Raft port and the Raft node.
    async fn shutdown(&mut self) {
        self.close_raft_port().await;
        if let Some(consensus) = self.current().consensus {
            consensus.shutdown().await;
        }
    }
}

/// What the supervisor's `heal` does about its Raft node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HealStep {
    /// It runs and its store writes: nothing to heal.
    Healthy,
    /// Not now: the delay since the last attempt has not passed, or the disk is still full.
    Wait,
    /// Its store failed a write but the Raft node still runs: openraft stops it when the
    /// failed write was one it waited for; give it the delay to, then restart it anyway (a
    /// failed write of the state rows alone stops nothing, and the store is not trusted).
    Grace,
    /// Start it again from its store (stopping it first if it still runs).
    Restart,
}

/// Where the delay before the next attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delay {
    /// Nothing was attempted since the node last ran healthy.
    Unset,
    Running,
    Passed,
}

/// The decision of `heal`, from whether the Raft node has `stopped`, its store's `fault`, the
/// `delay` since the last attempt, and whether its disk has room (asked only for a full disk).
fn heal_step(
    stopped: bool,
    fault: Option<&symphony_consensus::store::StoreFault>,
    delay: Delay,
    has_room: impl FnOnce() -> bool,
) -> HealStep {
    if !stopped && fault.is_none() {
        return HealStep::Healthy;
    }
    if delay == Delay::Running || fault.is_some_and(|fault| fault.no_space) && !has_room() {
        return HealStep::Wait;
    }
    if !stopped && delay == Delay::Unset {
        return HealStep::Grace;
    }
    HealStep::Restart
}

/// Carries out role commands until `shutdown`, then stops the Raft port and the Raft node.
pub async fn run(
    mut owner: Owner,
    mut commands: mpsc::Receiver<RoleCommand>,
    shutdown: CancellationToken,
) {
    let mut health = tokio::time::interval(HEAL_EVERY);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let command = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = health.tick() => {
                owner.heal().await;
                continue;
            }
            command = commands.recv() => match command {
                Some(command) => command,
                None => break,
            },
        };
        // A stop signal ends a transition half way, as it would end a command line.
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = carry_out(&mut owner, command) => {}
        }
    }
    owner.shutdown().await;
}

async fn carry_out(owner: &mut Owner, command: RoleCommand) {
    match command {
        RoleCommand::Init {
            peers,
            join_addr,
            cert_expiry,
            reply,
        } => {
            let _ = reply.send(super::init::init(owner, peers, join_addr, cert_expiry).await);
        }
        RoleCommand::Join { token, addr, reply } => {
            let result = if crate::tokens::is_worker_token(&token) {
                crate::worker::join::join(owner, token, &addr).await
            } else {
                super::init::join(owner, Some(token), &addr).await
            };
            let _ = reply.send(result);
        }
        RoleCommand::Leave { reply } => {
            let result = if owner.current().worker.is_some() {
                crate::worker::leave::leave(owner).await
            } else {
                super::leave::leave(owner).await
            };
            let _ = reply.send(result);
        }
        RoleCommand::Recover { reply } => {
            let result = if owner.current().worker.is_some() {
                Err(CtlError::new(
                    ErrorCode::NotManager,
                    "`recover` rebuilds a manager cluster, and this node is a worker; run it on a surviving manager",
                ))
            } else {
                super::leave::recover_force_new_cluster(owner).await
            };
            let _ = reply.send(result);
        }
        RoleCommand::StartRaft { reply } => {
            let result = if owner.current().worker.is_some() {
                Err(CtlError::new(
                    ErrorCode::NotManager,
                    "this node is a worker and serves no Raft RPCs",
                ))
            } else {
                owner.start_raft().await
            };
            let _ = reply.send(result);
        }
        RoleCommand::RememberManagers { managers } => owner.remember_managers(managers).await,
    }
}

/// The node's initial state and its handle, before the supervisor runs.
pub fn channels(
    initial: NodeState,
    config: Arc<NodeConfig>,
) -> (
    watch::Sender<NodeState>,
    mpsc::Receiver<RoleCommand>,
    NodeHandle,
) {
    let (state, receiver) = watch::channel(initial);
    let (commands, command_receiver) = mpsc::channel(64);
    (
        state,
        command_receiver,
        NodeHandle::new(receiver, commands, config),
    )
}

#[cfg(test)]
mod tests {
    use symphony_consensus::store::StoreFault;

    use super::*;

    fn fault(no_space: bool) -> StoreFault {
        StoreFault {
            no_space,
            message: "failed".into(),
        }
    }

    #[test]
    fn a_stopped_raft_node_is_started_again_whatever_stopped_it() {
        let room = || true;
        assert_eq!(
            heal_step(false, None, Delay::Unset, room),
            HealStep::Healthy
        );
        assert_eq!(
            heal_step(false, None, Delay::Passed, room),
            HealStep::Healthy
        );
        assert_eq!(
            heal_step(true, Some(&fault(false)), Delay::Unset, room),
            HealStep::Restart
        );
        // Stopped without a failed write (a snapshot it could not build or install).
        assert_eq!(heal_step(true, None, Delay::Unset, room), HealStep::Restart);
        // Not before the delay since the last attempt has passed.
        assert_eq!(heal_step(true, None, Delay::Running, room), HealStep::Wait);
        assert_eq!(
            heal_step(true, None, Delay::Passed, room),
            HealStep::Restart
        );
    }

    #[test]
    fn a_failed_write_that_did_not_stop_the_node_restarts_it_after_a_grace() {
        let room = || true;
        let failed = fault(false);
        assert_eq!(
            heal_step(false, Some(&failed), Delay::Unset, room),
            HealStep::Grace
        );
        assert_eq!(
            heal_step(false, Some(&failed), Delay::Running, room),
            HealStep::Wait
        );
        assert_eq!(
            heal_step(false, Some(&failed), Delay::Passed, room),
            HealStep::Restart
        );
    }

    #[test]
    fn a_full_disk_is_waited_for_and_only_it_asks_for_room() {
        assert_eq!(
            heal_step(true, Some(&fault(true)), Delay::Unset, || false),
            HealStep::Wait
        );
        assert_eq!(
            heal_step(false, Some(&fault(true)), Delay::Passed, || false),
            HealStep::Wait
        );
        assert_eq!(
            heal_step(true, Some(&fault(true)), Delay::Unset, || true),
            HealStep::Restart
        );
        let asked = std::cell::Cell::new(false);
        let room = || {
            asked.set(true);
            false
        };
        assert_eq!(
            heal_step(true, Some(&fault(false)), Delay::Unset, room),
            HealStep::Restart
        );
        assert!(!asked.get(), "another failure does not wait for room");
    }
}
