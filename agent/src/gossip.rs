//! The node's place in the gossip pool: the keeper task, which owns the gossip driver, and the
//! [`GossipWatch`] everyone else reads it through.
//!
//! Gossip runs while the node belongs to a cluster, as a manager (its Raft state holds the
//! cluster) or as a worker (`worker.json`). The cluster id tags every packet, so the driver can
//! only start once the node knows it: after `init`, after a join, or at start-up from what is
//! on disk. Rather than start and stop gossip at each of those places, [`keep`] compares what
//! gossip does with what it should do, once a second and whenever the node's supervisor
//! publishes a change, and fixes the difference. The same pass reconnects: announcing to
//! managers that gossip does not see (a restart, a healed partition) is what merges two halves
//! of a pool again. The same pass keeps the driver's keys in line with the node's keyring
//! ([`crate::keyring`]): on a manager it first takes the keyring from its replica.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use symphony_consensus::NodeRole;
use symphony_gossip::{FocaConfig, Gossip, GossipConfig, GossipIdentity, Profile, Role};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::GossipProfile;
use crate::incarnation::IncarnationFile;
use crate::keyring::{self, KeyringStore};
use crate::node::{NodeHandle, NodeState};

/// How often the keeper checks gossip.
const KEEP_EVERY: Duration = Duration::from_secs(1);
/// How often a node announces itself to managers gossip does not see, while it sees others.
const REANNOUNCE_MISSING_EVERY: Duration = Duration::from_secs(5);
/// How long a graceful leave may take before the driver is simply stopped.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// How this node gossips, from the command line.
#[derive(Debug, Clone)]
pub struct GossipSettings {
    /// Where the UDP socket listens.
    pub bind_addr: SocketAddr,
    /// The address other members send to (`--advertise-addr`'s IP, the bound port).
    pub advertised_addr: SocketAddr,
    pub profile: GossipProfile,
    pub probe_period: Option<Duration>,
    pub probe_rtt: Option<Duration>,
    pub suspect: Option<Duration>,
}

impl GossipSettings {
    /// The foca timings for a pool of about `cluster_size` members: the profile's, with
    /// the timings given by flag put over them.
    pub fn profile(&self, cluster_size: usize) -> Profile {
        let size = std::num::NonZeroU32::new(u32::try_from(cluster_size).unwrap_or(u32::MAX))
            .unwrap_or(std::num::NonZeroU32::MIN);
        let base = match self.profile {
            GossipProfile::Lan => Profile::Lan { cluster_size: size },
            GossipProfile::Wan => Profile::Wan { cluster_size: size },
        };
        if self.probe_period.is_none() && self.probe_rtt.is_none() && self.suspect.is_none() {
            return base;
        }
        let mut config: FocaConfig = base.foca_config();
        if let Some(period) = self.probe_period {
            config.probe_period = period;
            // foca requires the round trip to fit in the period.
            config.probe_rtt = config.probe_rtt.min(period / 2);
        }
        if let Some(rtt) = self.probe_rtt {
            config.probe_rtt = rtt;
        }
        if let Some(suspect) = self.suspect {
            config.suspect_to_down_after = suspect;
        }
        Profile::Custom(config)
    }
}

/// The running driver, as others see it.
#[derive(Clone)]
pub struct GossipRunning {
    pub gossip: Gossip,
    /// When it started: a view younger than a few probe rounds has not heard from everyone.
    pub started: Instant,
}

/// Reads the gossip driver the keeper runs; cheap to clone.
#[derive(Clone)]
pub struct GossipWatch {
    running: watch::Receiver<Option<GossipRunning>>,
}

impl GossipWatch {
    /// The driver, while gossip runs.
    pub fn running(&self) -> Option<GossipRunning> {
        self.running.borrow().clone()
    }

    /// Gossip packets dropped so far; `None` without gossip.
    pub fn dropped(&self) -> Option<u64> {
        self.running()
            .map(|running| running.gossip.stats().dropped())
    }

    /// Node ids gossip sees alive right now, this node included; `None` without gossip.
    pub async fn alive(&self) -> Option<BTreeSet<u64>> {
        let running = self.running()?;
        let members = running.gossip.members().await.ok()?;
        Some(members.iter().map(|member| member.node_id).collect())
    }

    /// Resolves when gossip starts, stops or restarts.
    pub async fn changed(&mut self) {
        if self.running.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The keeper's own view of the driver and what it was started for.
struct Running {
    gossip: Gossip,
    cluster_id: String,
    role: Role,
    started: Instant,
    last_reannounce: Instant,
    /// Where its incarnation is kept, and the last one saved there.
    incarnations: IncarnationFile,
    saved_incarnation: u64,
    /// The keyring version the driver was last given.
    keyring_version: Option<u64>,
}

/// What gossip should be doing: in which cluster, as what.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    cluster_id: String,
    role: Role,
}

/// The watch the keeper will publish to, and its sending end for [`keep`].
pub fn channel() -> (watch::Sender<Option<GossipRunning>>, GossipWatch) {
    let (sender, running) = watch::channel(None);
    (sender, GossipWatch { running })
}

/// Runs until `shutdown`, keeping gossip in line with the node's membership; then leaves the
/// pool gracefully, so the others see this node go at once instead of after a probe timeout.
pub async fn keep(
    mut node: NodeHandle,
    keys: std::sync::Arc<KeyringStore>,
    publish: watch::Sender<Option<GossipRunning>>,
    shutdown: CancellationToken,
) {
    let mut new_keys = keys.subscribe();
    let mut keeper = Keeper {
        running: None,
        publish,
        keys,
    };
    let mut ticks = tokio::time::interval(KEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
            () = node.changed() => {}
            _ = new_keys.changed() => {}
        }
        keeper.reconcile(&node).await;
    }
    keeper.stop().await;
}

struct Keeper {
    running: Option<Running>,
    publish: watch::Sender<Option<GossipRunning>>,
    keys: std::sync::Arc<KeyringStore>,
}

impl Keeper {
    /// Starts, stops or reconnects gossip to match the node's membership.
    async fn reconcile(&mut self, node: &NodeHandle) {
        let state = node.state();
        let target = gossip_target(&state);
        if let Some(target) = &target {
            take_replica_keyring(&self.keys, &state, target);
        }
        let matches = match (self.running.as_ref(), target.as_ref()) {
            (Some(current), Some(target)) => {
                current.cluster_id == target.cluster_id && current.role == target.role
            }
            (None, None) => true,
            _ => false,
        };
        if !matches {
            self.stop().await;
            if let Some(target) = target {
                self.running = start_gossip(node, &state, target, &self.keys).await;
                self.publish
                    .send_replace(self.running.as_ref().map(|running| GossipRunning {
                        gossip: running.gossip.clone(),
                        started: running.started,
                    }));
            }
            return;
        }
        if let Some(current) = self.running.as_mut() {
            // A rejoin during the run raised the incarnation: the next life must start above.
            let incarnation = current.gossip.incarnation();
            if incarnation > current.saved_incarnation {
                current.incarnations.save(incarnation);
                current.saved_incarnation = incarnation;
            }
            apply_keyring(&self.keys, current).await;
            reconnect(node, &state, current).await;
        }
    }

    /// Leaves the pool gracefully and stops gossip.
    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            self.publish.send_replace(None);
            self.keys.set_applied(None);
            leave_pool(&running.gossip).await;
        }
    }
}

fn gossip_target(state: &NodeState) -> Option<Target> {
    if let Some(worker) = &state.worker {
        return Some(Target {
            cluster_id: worker.cluster_id.clone(),
            role: Role::Worker,
        });
    }
    // A manager whose store has stopped writing, or whose Raft node has stopped for another
    // reason, is out of the pool until it is healed: the leader then marks it down (and moves
    // its tasks), so `node ls` never shows it ready meanwhile.
    if state
        .consensus
        .as_ref()
        .is_some_and(|consensus| consensus.store_fault().is_some() || consensus.has_stopped())
    {
        return None;
    }
    let own_id = state.identity.node_id;
    state.read_stale(|replica| {
        let cluster = replica.cluster.as_ref()?;
        let record = replica.nodes.get(&own_id)?;
        (record.role == NodeRole::Manager).then(|| Target {
            cluster_id: cluster.cluster_id.clone(),
            role: Role::Manager,
        })
    })
}

/// Whom this node announces to when gossip does not see them, its own address excepted: on
/// a worker the managers it knows; on a manager [`manager_seeds`].
fn gossip_seeds(node: &NodeHandle, state: &NodeState) -> Vec<SocketAddr> {
    let own = node.config().settings.gossip.advertised_addr;
    let addrs: Vec<String> = match &state.worker {
        Some(worker) => worker
            .managers
            .iter()
            .filter_map(|manager| manager.gossip_addr.clone())
            .collect(),
        None => state.read_stale(manager_seeds),
    };
    let mut seeds: Vec<SocketAddr> = addrs
        .iter()
        .filter_map(|addr| addr.parse().ok())
        .filter(|addr| *addr != own)
        .collect();
    seeds.sort();
    seeds.dedup();
    seeds
}

/// A manager's seeds: every manager whatever its status (a healed partition), and every ready
/// node. A manager knows the whole fleet from its replica, so a member whose join its gossip
/// missed (packets lost while a large fleet forms on busy machines) is announced to within
/// [`REANNOUNCE_MISSING_EVERY`], and its reply makes it known. Without this it was found
/// only when it happened to probe this manager or to be in a random feed: one manager counted
/// 152 of 153 members for 39 s in a 150-worker fleet.
fn manager_seeds(replica: &symphony_consensus::ClusterState) -> Vec<String> {
    replica
        .nodes
        .values()
        .filter(|record| {
            record.role == NodeRole::Manager
                || record.status == symphony_consensus::NodeStatus::Ready
        })
        .filter_map(|record| record.gossip_addr.clone())
        .collect()
}

async fn start_gossip(
    node: &NodeHandle,
    state: &NodeState,
    target: Target,
    keys: &KeyringStore,
) -> Option<Running> {
    let config = node.config();
    let settings = &config.settings.gossip;
    let raft_addr = (target.role == Role::Manager).then(|| config.advertised.raft_addr.clone());
    let incarnations = IncarnationFile::new(&config.settings.config_dir);
    let incarnation = incarnations.next(crate::now_ms());
    let identity = GossipIdentity::new(
        state.identity.node_id,
        target.role,
        settings.advertised_addr,
        config.advertised.remote_addr.clone(),
        raft_addr,
    )
    .with_incarnation(incarnation);
    let held = keys.held(&target.cluster_id);
    // How many members the pool has, roughly, to scale foca's timings.
    let pool_size = state.read_stale(|replica| replica.nodes.len()).max(32);
    let gossip_config = GossipConfig {
        identity,
        bind_addr: settings.bind_addr,
        cluster_id: target.cluster_id.clone(),
        profile: settings.profile(pool_size),
        keyring: held.as_ref().and_then(keyring::HeldKeyring::sealing),
    };
    let gossip = match Gossip::start(gossip_config).await {
        Ok(gossip) => gossip,
        Err(error) => {
            tracing::warn!(%error, "cannot start gossip; retrying (--listen-gossip-addr)");
            return None;
        }
    };
    let seeds = gossip_seeds(node, state);
    tracing::info!(cluster_id = %target.cluster_id, role = ?target.role, seeds = seeds.len(), "gossip started");
    if !seeds.is_empty()
        && let Err(error) = gossip.announce(seeds).await
    {
        tracing::debug!(%error, "announcing to the gossip seeds failed");
    }
    if let Some(held) = &held {
        let sealing = held.sealing();
        keys.set_applied(Some(keyring::applied(
            &held.cluster_id,
            &held.keyring,
            sealing.as_ref(),
        )));
    }
    let now = Instant::now();
    Some(Running {
        gossip,
        cluster_id: target.cluster_id,
        role: target.role,
        started: now,
        last_reannounce: now,
        incarnations,
        saved_incarnation: incarnation,
        keyring_version: held.map(|held| held.keyring.version),
    })
}

/// On a manager, the keyring its replica holds is the node's keyring.
fn take_replica_keyring(keys: &KeyringStore, state: &NodeState, target: &Target) {
    if target.role != Role::Manager {
        return;
    }
    let Some(keyring) = state.read_stale(|replica| {
        replica
            .cluster
            .as_ref()
            .filter(|cluster| cluster.cluster_id == target.cluster_id)
            .map(|cluster| cluster.gossip_keys.clone())
    }) else {
        return;
    };
    if let Err(error) = keys.offer(&target.cluster_id, &keyring) {
        tracing::warn!(%error, "cannot keep the gossip keyring on disk");
    }
}

/// Gives the driver the node's keyring when it has changed since it was last given.
async fn apply_keyring(keys: &KeyringStore, current: &mut Running) {
    let Some(held) = keys.held(&current.cluster_id) else {
        return;
    };
    if current.keyring_version == Some(held.keyring.version) {
        return;
    }
    let sealing = held.sealing();
    if let Some(sealing) = &sealing
        && let Err(error) = current.gossip.set_keyring(sealing.clone()).await
    {
        tracing::debug!(%error, "cannot give gossip its new keyring");
        return;
    }
    current.keyring_version = Some(held.keyring.version);
    keys.set_applied(Some(keyring::applied(
        &held.cluster_id,
        &held.keyring,
        sealing.as_ref(),
    )));
}

/// Announces to the seeds gossip does not see ([`gossip_seeds`]): alone, every pass (the
/// driver also retries on its own); otherwise now and then, which merges the halves of a
/// healed partition faster than foca's own announcements to members it declared down, and
/// on a manager finds a ready node its gossip missed.
async fn reconnect(node: &NodeHandle, state: &NodeState, current: &mut Running) {
    let alone = current.gossip.member_count() == 0;
    if !alone && current.last_reannounce.elapsed() < REANNOUNCE_MISSING_EVERY {
        return;
    }
    current.last_reannounce = Instant::now();
    let Ok(missing) = current.gossip.unseen(gossip_seeds(node, state)).await else {
        return;
    };
    if missing.is_empty() {
        return;
    }
    tracing::debug!(
        missing = missing.len(),
        "announcing to managers gossip does not see"
    );
    if let Err(error) = current.gossip.announce(missing).await {
        tracing::debug!(%error, "announcing to the managers failed");
    }
}

async fn leave_pool(gossip: &Gossip) {
    match tokio::time::timeout(LEAVE_TIMEOUT, gossip.leave()).await {
        Ok(Ok(())) => tracing::info!("left the gossip pool"),
        Ok(Err(error)) => tracing::debug!(%error, "leaving the gossip pool failed"),
        Err(_) => {
            tracing::warn!("leaving the gossip pool took too long; stopping it");
            gossip.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn settings() -> GossipSettings {
        GossipSettings {
            bind_addr: "127.0.0.1:0".parse().unwrap(),
            advertised_addr: "127.0.0.1:0".parse().unwrap(),
            profile: GossipProfile::Lan,
            probe_period: None,
            probe_rtt: None,
            suspect: None,
        }
    }

    #[test]
    fn a_manager_seeds_every_manager_and_every_ready_node() {
        use crate::manager::testing;
        use symphony_consensus::{Command, NodeCommand, NodeJoin, NodeStatus};

        let mut state = testing::cluster(0);
        let join = |state: &mut symphony_consensus::ClusterState, id: u64, role: NodeRole| {
            testing::apply(
                state,
                Command::Node(Box::new(NodeCommand::Join {
                    node: NodeJoin {
                        node_id: id,
                        raft_node_id: (role == NodeRole::Manager).then_some(id + 100),
                        role,
                        hostname: format!("n{id}"),
                        remote_addr: String::new(),
                        raft_addr: None,
                        gossip_addr: Some(format!("127.0.0.{id}:7946")),
                        resources: Default::default(),
                        agent_version: String::new(),
                        labels: Default::default(),
                        node_secret: Some("s".into()),
                        certificate: None,
                    },
                    at_ms: 0,
                })),
            );
        };
        join(&mut state, 2, NodeRole::Manager);
        join(&mut state, 3, NodeRole::Worker);
        join(&mut state, 4, NodeRole::Worker);
        join(&mut state, 5, NodeRole::Worker);
        testing::set_status(&mut state, 2, NodeStatus::Down);
        testing::set_status(&mut state, 4, NodeStatus::Down);
        testing::set_status(&mut state, 5, NodeStatus::Left);
        let mut seeds = manager_seeds(&state);
        seeds.sort();
        // The down manager still (a partition heals through it); the down and the departed
        // workers not; the bootstrap manager has no gossip address in this state.
        assert_eq!(seeds, ["127.0.0.2:7946", "127.0.0.3:7946"]);
    }

    #[test]
    fn flags_override_single_timings_of_the_profile() {
        assert!(matches!(settings().profile(10), Profile::Lan { .. }));
        let fast = GossipSettings {
            probe_period: Some(Duration::from_millis(200)),
            suspect: Some(Duration::from_millis(600)),
            ..settings()
        };
        let Profile::Custom(config) = fast.profile(10) else {
            panic!("flags make a custom profile");
        };
        assert_eq!(config.probe_period, Duration::from_millis(200));
        assert!(config.probe_rtt <= Duration::from_millis(100));
        assert_eq!(config.suspect_to_down_after, Duration::from_millis(600));
    }
}
