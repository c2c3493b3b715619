//! [`Simulation`]: N real foca members in one process, on virtual time, over a lossy virtual
//! network.
//!
//! Every member is an unmodified `Foca<GossipIdentity, PostcardCodec, SmallRng,
//! NoCustomBroadcast>`, the driver's type, configured with the profile under test. The run
//! starts from a converged cluster: each member's view is filled with every other member as
//! alive through [`Foca::apply_many`] without broadcasting, which is what a cluster looks like
//! once its joins have settled, and costs far less than simulating N joins. Members then
//! start at random instants within one probe period, so that their probes are not in
//! lockstep. From there on only packets and timers happen, in virtual time, deterministically
//! from the seed.
//!
//! Cost: foca keeps its members in a `Vec` searched linearly, so handling one packet costs
//! O(N) and filling the views O(N³) in total (spread over [`SimConfig::threads`]); memory is
//! O(N²), about 150 bytes per pair of members (1.3 GB at 3,000, 15 GB at 10,000).

use std::time::Duration;

use foca::{Foca, Member, PostcardCodec, Timer};
use rand_foca::rngs::SmallRng;
use rand_foca::{RngExt, SeedableRng};
use thiserror::Error;

use crate::config::Profile;
use crate::driver::{Swim, should_deliver};
use crate::framing::Framing;
use crate::identity::GossipIdentity;
use crate::pacing::IdleGossip;
use crate::seal::{GossipKey, KEY_LEN, Keyring};
use crate::sim::addressing::{self, address_of, identity_of};
use crate::sim::clock::{EventQueue, SimTime};
use crate::sim::network::{Network, NetworkModel};
use crate::sim::observer::{Change, FalseDowns, Observer, Propagation};
use crate::sim::runtime::{Deferred, SimIo};
use crate::sim::traffic::Traffic;
use crate::sim::world::{Event, World};

/// How often a joining member that knows nobody yet announces itself again, as the driver
/// does (`REANNOUNCE_EVERY` in [`driver`](crate::driver)).
const REANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Members at the start, all converged.
    pub members: usize,
    pub network: NetworkModel,
    /// The timings under test, as the driver would get them from its [`Profile`].
    pub foca: foca::Config,
    /// Everything random in a run (member choices, losses, latencies, start offsets) derives
    /// from it.
    pub seed: u64,
    /// How many running members a joining member announces to (the agent's `--join` list).
    pub join_seeds: usize,
    /// Threads that fill the members' views before the run; the run itself is sequential.
    /// The result does not depend on it.
    pub threads: usize,
    /// Whether members seal their packets as the agent does with a gossip keyring (one
    /// cluster key, a replay guard per member): costs CPU, and adds the sealed overhead to
    /// the byte counts.
    pub sealed: bool,
}

impl SimConfig {
    /// `members` members with `profile`'s timings over a LAN with `loss`.
    pub fn new(members: usize, loss: f64, profile: &Profile, seed: u64) -> SimConfig {
        SimConfig {
            members,
            network: NetworkModel::lan(loss),
            foca: profile.foca_config(),
            seed,
            join_seeds: 3,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            sealed: false,
        }
    }
}

/// Why a simulation could not be set up or continued.
#[derive(Debug, Error)]
pub enum SimError {
    #[error("a simulation needs between 2 and {max} members, not {0}", max = addressing::MAX_MEMBERS)]
    MemberCount(usize),
    #[error("the network model is invalid: loss must be in [0, 1) and min latency <= max latency")]
    Network,
    #[error("foca: {0}")]
    Foca(#[from] foca::Error),
    #[error("a thread filling the members' views panicked")]
    Thread,
}

/// A running simulation. See the module documentation.
pub struct Simulation {
    config: SimConfig,
    members: Vec<Swim>,
    /// Each member's framing, plain or sealed as the driver's.
    framings: Vec<Framing>,
    /// Each member's held periodic gossip, as the driver keeps it ([`crate::pacing`]).
    idle_gossip: Vec<IdleGossip>,
    world: World,
    now: SimTime,
    /// The simulation's own choices (start offsets, seeds, crash victims).
    rng: SmallRng,
    events: u64,
    timer_errors: u64,
}

/// `member`'s foca if it is running. A function of the two fields rather than a method, so
/// that the caller can go on to borrow the world mutably.
fn live_member<'a>(members: &'a mut [Swim], world: &World, member: u32) -> Option<&'a mut Swim> {
    if !world.is_alive(member) {
        return None;
    }
    members.get_mut(usize::try_from(member).ok()?)
}

/// Each member's RNG seed, distinct per member and per run.
fn member_seed(seed: u64, index: usize) -> u64 {
    addressing::mix(seed.rotate_left(17) ^ addressing::mix(index as u64))
}

fn new_member(config: &SimConfig, index: usize, identity: GossipIdentity) -> Swim {
    let rng = SmallRng::seed_from_u64(member_seed(config.seed, index));
    Foca::new(identity, config.foca.clone(), rng, PostcardCodec)
}

/// Fills every member's view with every other member as alive, `threads` at a time, and
/// returns what each asked for meanwhile.
fn fill_views(
    members: &mut [Swim],
    identities: &[GossipIdentity],
    threads: usize,
) -> Result<Vec<Deferred>, SimError> {
    let chunk = members.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = members
            .chunks_mut(chunk)
            .enumerate()
            .map(|(part, slice)| {
                scope.spawn(move || {
                    slice
                        .iter_mut()
                        .enumerate()
                        .map(|(offset, foca)| {
                            let me = part * chunk + offset;
                            let others = identities
                                .iter()
                                .enumerate()
                                .filter(move |(index, _)| *index != me)
                                .map(|(_, id)| Member::alive(id.clone()));
                            let mut deferred = Deferred::default();
                            foca.apply_many(others, false, &mut deferred)?;
                            Ok(deferred)
                        })
                        .collect::<Result<Vec<_>, SimError>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(identities.len());
        for worker in workers {
            all.extend(worker.join().map_err(|_| SimError::Thread)??);
        }
        Ok(all)
    })
}

impl Simulation {
    /// Builds a converged cluster of `config.members` members, each started at a random
    /// instant within the first probe period.
    pub fn new(config: SimConfig) -> Result<Simulation, SimError> {
        let max = usize::try_from(addressing::MAX_MEMBERS).unwrap_or(usize::MAX);
        if config.members < 2 || config.members > max {
            return Err(SimError::MemberCount(config.members));
        }
        if !config.network.is_valid() {
            return Err(SimError::Network);
        }
        let identities = (0..config.members)
            .map(|index| {
                u32::try_from(index)
                    .ok()
                    .and_then(|index| identity_of(index, config.seed))
                    .ok_or(SimError::MemberCount(config.members))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut members: Vec<Swim> = identities
            .iter()
            .enumerate()
            .map(|(index, identity)| new_member(&config, index, identity.clone()))
            .collect();
        let deferred = fill_views(&mut members, &identities, config.threads)?;
        let mut framings: Vec<Framing> = identities
            .iter()
            .map(|identity| framing_for(&config, identity))
            .collect();

        let mut world = World {
            queue: EventQueue::default(),
            network: Network::new(config.network, addressing::mix(config.seed ^ 0x6e65_7477)),
            observer: Observer::default(),
            alive: vec![true; config.members],
            traffic: Traffic::default(),
        };
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let period = u64::try_from(config.foca.probe_period.as_nanos()).unwrap_or(u64::MAX);
        for (index, asked) in deferred.into_iter().enumerate() {
            let member = u32::try_from(index).map_err(|_| SimError::MemberCount(index))?;
            let start = SimTime::from_nanos(rng.random_range(0..period.max(1)));
            for (after, timer) in asked.timers {
                world.queue.push(
                    start.after(after),
                    Event::Timer {
                        member,
                        timer: Box::new(timer),
                    },
                );
            }
            let Some(framing) = framings.get_mut(index) else {
                continue;
            };
            for (to, data) in asked.sends {
                world.send(start, framing, to.gossip_addr, &data);
            }
        }
        Ok(Simulation {
            config,
            idle_gossip: members.iter().map(|_| IdleGossip::default()).collect(),
            members,
            framings,
            world,
            now: SimTime::ZERO,
            rng,
            events: 0,
            timer_errors: 0,
        })
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now.since_start()
    }

    /// Members ever started, crashed ones included.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true: a simulation has at least two members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members running now.
    pub fn running(&self) -> usize {
        self.world.alive.iter().filter(|alive| **alive).count()
    }

    pub fn is_running(&self, member: u32) -> bool {
        self.world.is_alive(member)
    }

    /// The active members `member` knows of (itself excluded).
    pub fn view_size(&self, member: u32) -> Option<usize> {
        self.member(member).map(Swim::num_members)
    }

    /// Packet counters since the start.
    pub fn traffic(&self) -> Traffic {
        self.world.traffic
    }

    /// False downs since the start.
    pub fn false_downs(&self) -> FalseDowns {
        self.world.observer.false_downs()
    }

    /// Events handled since the start (a measure of the work done).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Timers and packets waiting to happen.
    pub fn pending_events(&self) -> usize {
        self.world.queue.len()
    }

    /// Timer events foca refused (should stay zero; a sign of a runtime bug otherwise).
    pub fn timer_errors(&self) -> u64 {
        self.timer_errors
    }

    /// The timings under test.
    pub fn foca_config(&self) -> &foca::Config {
        &self.config.foca
    }

    /// How far the change being watched (the last join or crash) has spread.
    pub fn propagation(&self) -> Option<Propagation> {
        self.world.observer.propagation()
    }

    /// Runs every event due in the next `duration`.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now.after(duration);
        self.run_until(deadline, |_| false);
    }

    /// Runs until every observer noticed the watched change, or for `timeout`; returns the
    /// change's spread.
    pub fn run_until_noticed(&mut self, timeout: Duration) -> Option<Propagation> {
        let deadline = self.now.after(timeout);
        self.run_until(deadline, |world| world.observer.watch_complete());
        self.propagation()
    }

    /// Starts a new member that announces itself to `join_seeds` random running members
    /// (again every second while it knows nobody, like the driver), and watches how the
    /// others see it come up. Returns its index.
    pub fn start_join(&mut self) -> Result<u32, SimError> {
        let index = self.members.len();
        let member = u32::try_from(index).map_err(|_| SimError::MemberCount(index))?;
        let identity = identity_of(member, self.config.seed).ok_or(SimError::MemberCount(index))?;
        self.framings.push(framing_for(&self.config, &identity));
        self.members.push(new_member(&self.config, index, identity));
        self.idle_gossip.push(IdleGossip::default());
        self.world.alive.push(true);
        self.world
            .observer
            .watch(member, Change::Up, self.now, &self.world.alive);
        self.world.queue.push(self.now, Event::Announce { member });
        Ok(member)
    }

    /// Stops `member` as `kill -9` would: it neither sends nor receives from now on. Watches
    /// how the others see it go down.
    pub fn crash(&mut self, member: u32) {
        if let Some(alive) = usize::try_from(member)
            .ok()
            .and_then(|index| self.world.alive.get_mut(index))
        {
            *alive = false;
        }
        self.world
            .observer
            .watch(member, Change::Down, self.now, &self.world.alive);
    }

    /// Crashes a random running member and returns it, if any runs.
    pub fn crash_random(&mut self) -> Option<u32> {
        let running = self.running_members(None);
        let victim = *running.get(self.rng.random_range(0..running.len().max(1)))?;
        self.crash(victim);
        Some(victim)
    }

    fn member(&self, member: u32) -> Option<&Swim> {
        self.members.get(usize::try_from(member).ok()?)
    }

    fn running_members(&self, except: Option<u32>) -> Vec<u32> {
        (0..self.members.len())
            .filter_map(|index| u32::try_from(index).ok())
            .filter(|index| Some(*index) != except && self.world.is_alive(*index))
            .collect()
    }

    /// Handles events in order until `deadline` or until `stop` holds after one.
    fn run_until(&mut self, deadline: SimTime, stop: impl Fn(&World) -> bool) {
        while let Some((at, event)) = self.world.queue.pop_until(deadline) {
            self.handle(at, event);
            if stop(&self.world) {
                return;
            }
        }
        self.now = self.now.max(deadline);
    }

    fn handle(&mut self, at: SimTime, event: Event) {
        self.now = at;
        self.events += 1;
        match event {
            Event::Timer { member, timer } => {
                let Some(foca) = live_member(&mut self.members, &self.world, member) else {
                    return;
                };
                if !should_deliver(foca, &timer) {
                    return;
                }
                let Some(timer) = idle_gossip_of(&mut self.idle_gossip, member)
                    .and_then(|idle| idle.filter(foca, *timer))
                else {
                    return;
                };
                self.deliver_timer(member, at, timer);
                self.release_held_gossip(member, at);
            }
            Event::Deliver { to, data } => {
                let Some(foca) = live_member(&mut self.members, &self.world, to) else {
                    self.world.traffic.undeliverable += 1;
                    return;
                };
                let Some(framing) = framing_of(&mut self.framings, to) else {
                    return;
                };
                // Plain packets travel unframed (see `World::send`); sealed ones are opened.
                let body = if framing.keyring().is_none() {
                    std::borrow::Cow::Borrowed(&data[..])
                } else {
                    match framing.unframe(&data, at.as_nanos() / 1_000_000) {
                        Ok(body) => body,
                        Err(_) => {
                            self.world.traffic.unsealed_drops += 1;
                            return;
                        }
                    }
                };
                self.world.traffic.delivered += 1;
                let io = SimIo {
                    me: to,
                    now: at,
                    world: &mut self.world,
                    framing,
                };
                if foca.handle_data(&body, io).is_err() {
                    self.world.traffic.rejected += 1;
                }
                self.release_held_gossip(to, at);
            }
            Event::Announce { member } => self.announce(member),
        }
    }

    fn announce(&mut self, member: u32) {
        if !self.world.is_alive(member) || self.view_size(member).is_none_or(|size| size > 0) {
            return;
        }
        let mut candidates = self.running_members(Some(member));
        let wanted = self.config.join_seeds.max(1).min(candidates.len());
        // A partial Fisher-Yates shuffle: the first `wanted` are a uniform sample.
        for slot in 0..wanted {
            let pick = self.rng.random_range(slot..candidates.len());
            candidates.swap(slot, pick);
        }
        let now = self.now;
        let Some(foca) = live_member(&mut self.members, &self.world, member) else {
            return;
        };
        let Some(framing) = framing_of(&mut self.framings, member) else {
            return;
        };
        for seed in candidates
            .iter()
            .take(wanted)
            .filter_map(|seed| address_of(*seed))
        {
            let io = SimIo {
                me: member,
                now,
                world: &mut self.world,
                framing: &mut *framing,
            };
            if foca.announce(GossipIdentity::seed(seed), io).is_err() {
                self.timer_errors += 1;
            }
        }
        self.release_held_gossip(member, now);
        self.world
            .queue
            .push(now.after(REANNOUNCE_EVERY), Event::Announce { member });
    }

    /// Hands `member` its held periodic gossip once it has news, as the driver does.
    fn release_held_gossip(&mut self, member: u32, at: SimTime) {
        let Some(foca) = live_member(&mut self.members, &self.world, member) else {
            return;
        };
        if let Some(timer) =
            idle_gossip_of(&mut self.idle_gossip, member).and_then(|idle| idle.release(foca))
        {
            self.deliver_timer(member, at, timer);
        }
    }

    fn deliver_timer(&mut self, member: u32, at: SimTime, timer: Timer<GossipIdentity>) {
        let Some(foca) = live_member(&mut self.members, &self.world, member) else {
            return;
        };
        let Some(framing) = framing_of(&mut self.framings, member) else {
            return;
        };
        let io = SimIo {
            me: member,
            now: at,
            world: &mut self.world,
            framing,
        };
        if foca.handle_timer(timer, io).is_err() {
            self.timer_errors += 1;
        }
    }
}

fn framing_of(framings: &mut [Framing], member: u32) -> Option<&mut Framing> {
    framings.get_mut(usize::try_from(member).ok()?)
}

/// A member's framing: sealed under one key derived from the seed (a simulation needs no
/// secret, only the work and the bytes of sealing), or plain.
fn framing_for(config: &SimConfig, identity: &GossipIdentity) -> Framing {
    const TAG: u64 = 0x5349_4d55; // "SIMU"
    if !config.sealed {
        return Framing::plain(TAG);
    }
    let mut key = [0_u8; KEY_LEN];
    for (index, byte) in key.iter_mut().enumerate() {
        *byte = addressing::mix(config.seed ^ index as u64).to_be_bytes()[0];
    }
    match Keyring::new(1, [(1, GossipKey::from_bytes(key))]) {
        Ok(keyring) => Framing::sealed(TAG, keyring, identity.node_id, 1),
        Err(_) => Framing::plain(TAG),
    }
}

fn idle_gossip_of(idle_gossip: &mut [IdleGossip], member: u32) -> Option<&mut IdleGossip> {
    idle_gossip.get_mut(usize::try_from(member).ok()?)
}
