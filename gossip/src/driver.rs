//! The driver: one tokio task that owns the [`Foca`] instance, its UDP socket and its timers,
//! and [`Gossip`], the clone-able handle the agent talks to it through.
//!
//! foca is a state machine without I/O; everything it asks for comes back through
//! [`foca::Runtime`]. The driver's select loop feeds it four inputs — cancellation, commands
//! from handles, due timers, received packets — and `Io` carries out what it asks: packets
//! go out on the socket, or to a writer task when it would block (a slow `send_to` must not
//! stall probes and timers), timer events into the `TimerQueue`, notifications out as
//! [`MemberEvent`]s. Every packet goes through the member's [`Framing`]: sealed under the
//! cluster keyring when there is one, so a packet that fails authentication or repeats one
//! already received is dropped and counted before foca sees a byte of it.

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use foca::{Foca, NoCustomBroadcast, Notification, PostcardCodec, Runtime, State, Timer};
use rand_foca::SeedableRng;
use rand_foca::rngs::SmallRng;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

use crate::config::GossipConfig;
use crate::error::GossipError;
use crate::event::MemberEvent;
use crate::framing::Framing;
use crate::identity::{GossipIdentity, Role};
use crate::pacing::IdleGossip;
use crate::packet;
use crate::seal::Keyring;
use crate::stats::{Counters, GossipStats};
use crate::timers::TimerQueue;

/// The foca type of a member, here and in the simulator ([`crate::sim`]).
pub(crate) type Swim = Foca<GossipIdentity, PostcardCodec, SmallRng, NoCustomBroadcast>;

/// What one member knows of another: identity, incarnation and alive, suspect or down.
pub type MemberState = foca::Member<GossipIdentity>;

/// Whether a due timer should reach foca: all do except a suspicion that no longer holds.
/// On a `ChangeSuspectToDown` whose member has refuted the suspicion meanwhile (or was
/// renamed, or is down already), foca 2.0 changes nothing but still sends the member
/// `TurnUndead`, which makes a healthy member believe it was declared down and rejoin under a
/// new identity (the simulator saw dozens a minute at 1,000 members and 5% loss). Skipping
/// the timer in exactly those cases has no other effect. The check scans the view, but only
/// for suspicion timers, which are rare.
pub(crate) fn should_deliver(foca: &Swim, timer: &Timer<GossipIdentity>) -> bool {
    let Timer::ChangeSuspectToDown {
        member_id,
        incarnation,
        ..
    } = timer
    else {
        return true;
    };
    foca.iter_membership_state().any(|member| {
        member.id() == member_id
            && member.incarnation() == *incarnation
            && member.state() == State::Suspect
    })
}

/// Large enough for any UDP datagram, so an oversized one is dropped by its checksum or by
/// foca rather than truncated into something that might parse.
const RECV_BUFFER: usize = 64 * 1024;
/// Packets waiting for the writer. Gossip tolerates loss; an unbounded queue would not.
const SEND_QUEUE: usize = 1024;
/// Commands waiting for the driver.
const COMMAND_QUEUE: usize = 64;
/// Member events buffered per subscriber; one that lags this far behind loses the oldest.
const EVENT_QUEUE: usize = 1024;

enum Command {
    Announce(Vec<SocketAddr>, oneshot::Sender<Result<(), GossipError>>),
    Members(oneshot::Sender<Vec<GossipIdentity>>),
    Unseen(Vec<SocketAddr>, oneshot::Sender<Vec<SocketAddr>>),
    Managers(oneshot::Sender<Vec<GossipIdentity>>),
    State(oneshot::Sender<Vec<MemberState>>),
    Apply(Vec<MemberState>, oneshot::Sender<()>),
    SetKeyring(Keyring, oneshot::Sender<()>),
    Leave(oneshot::Sender<()>),
}

/// A handle to a running gossip driver. Cloning is cheap; when every handle is dropped the
/// driver stops without leaving, as if the node had crashed.
#[derive(Debug, Clone)]
pub struct Gossip {
    commands: mpsc::Sender<Command>,
    events: broadcast::Sender<MemberEvent>,
    counters: Arc<Counters>,
    member_count: Arc<AtomicUsize>,
    /// This node's current incarnation, published after every step.
    incarnation: Arc<AtomicU64>,
    cancel: CancellationToken,
    local_addr: SocketAddr,
}

impl Gossip {
    /// Binds the socket and starts the driver, stopped by [`Gossip::shutdown`].
    pub async fn start(config: GossipConfig) -> Result<Gossip, GossipError> {
        Gossip::start_with_cancel(config, CancellationToken::new()).await
    }

    /// Like [`Gossip::start`], stopped (without leaving) when `cancel` is cancelled.
    pub async fn start_with_cancel(
        config: GossipConfig,
        cancel: CancellationToken,
    ) -> Result<Gossip, GossipError> {
        let GossipConfig {
            mut identity,
            bind_addr,
            cluster_id,
            profile,
            keyring,
        } = config;
        let socket = UdpSocket::bind(bind_addr)
            .await
            .map_err(|source| GossipError::Bind {
                addr: bind_addr,
                source,
            })?;
        let local_addr = socket.local_addr().map_err(|source| GossipError::Bind {
            addr: bind_addr,
            source,
        })?;
        if identity.gossip_addr.port() == 0 {
            identity.gossip_addr.set_port(local_addr.port());
        }
        let socket = Arc::new(socket);
        let counters = Arc::new(Counters::default());
        let member_count = Arc::new(AtomicUsize::new(0));
        let incarnation = Arc::new(AtomicU64::new(identity.incarnation));
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (send_tx, send_rx) = mpsc::channel(SEND_QUEUE);

        // Seeded from std's per-process random keys: foca only needs its member choices to
        // differ between nodes, not cryptographic randomness.
        let rng = SmallRng::seed_from_u64(RandomState::new().hash_one(identity.node_id));
        info!(node_id = identity.node_id, %local_addr, sealed = keyring.is_some(), "gossip starting");
        let sender = identity.node_id;
        // One life of this node: the incarnation it starts with, above every earlier life's.
        let epoch = identity.incarnation;
        let tag = packet::cluster_tag(&cluster_id);
        let framing = match keyring {
            Some(keyring) => Framing::sealed(tag, keyring, sender, epoch),
            None => Framing::plain(tag),
        };
        let foca = Foca::new(identity, profile.foca_config(), rng, PostcardCodec);
        let writer = tokio::spawn(write_packets(
            Arc::clone(&socket),
            send_rx,
            Arc::clone(&counters),
        ));
        let driver = Driver {
            foca,
            idle_gossip: IdleGossip::default(),
            member_count: Arc::clone(&member_count),
            sender,
            epoch,
            started: Instant::now(),
            incarnation: Arc::clone(&incarnation),
            io: Io {
                framing,
                socket: Arc::clone(&socket),
                send: send_tx,
                timers: TimerQueue::default(),
                events: events.clone(),
                counters: Arc::clone(&counters),
                rejoined: false,
            },
            socket,
            commands: command_rx,
            cancel: cancel.clone(),
            seeds: Vec::new(),
        };
        tokio::spawn(driver.run(writer));
        Ok(Gossip {
            commands: command_tx,
            events,
            counters,
            member_count,
            incarnation,
            cancel,
            local_addr,
        })
    }

    /// The address the gossip socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The incarnation this node gossips under now: higher than at start after each rejoin.
    /// The agent persists it, so that its next life starts above it.
    pub fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::Relaxed)
    }

    /// Asks each seed to let this node join its cluster. Returns once the announces are
    /// queued, not when they are answered: watch [`Gossip::subscribe`] or
    /// [`Gossip::members`]. A seed that is not up yet is not retried.
    pub async fn announce(&self, seeds: Vec<SocketAddr>) -> Result<(), GossipError> {
        self.call(|reply| Command::Announce(seeds, reply)).await?
    }

    /// The active members this node knows of, itself included.
    pub async fn members(&self) -> Result<Vec<GossipIdentity>, GossipError> {
        self.call(Command::Members).await
    }

    /// Of `addrs`, those no active member gossips from: cheaper than [`Gossip::members`] when
    /// only a few addresses matter (the managers).
    pub async fn unseen(&self, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, GossipError> {
        self.call(|reply| Command::Unseen(addrs, reply)).await
    }

    /// How many other members this node sees active, as of the driver's last step; read
    /// without a round trip to the driver.
    pub fn member_count(&self) -> usize {
        self.member_count.load(Ordering::Relaxed)
    }

    /// The active members with the manager role, this node excepted.
    pub async fn managers(&self) -> Result<Vec<GossipIdentity>, GossipError> {
        self.call(Command::Managers).await
    }

    /// Everything this node knows of the pool (down members included), for another member to
    /// [`Gossip::apply`]: a newcomer learns the whole pool at once instead of from a feed of a
    /// few dozen members at a time.
    pub async fn membership_state(&self) -> Result<Vec<MemberState>, GossipError> {
        self.call(Command::State).await
    }

    /// Merges another member's [`Gossip::membership_state`] into this node's view, by foca's
    /// usual rules (a newer incarnation or a stronger state wins).
    pub async fn apply(&self, state: Vec<MemberState>) -> Result<(), GossipError> {
        self.call(|reply| Command::Apply(state, reply)).await
    }

    /// Member events from now on. Subscribe before reading [`Gossip::members`] so that no
    /// change falls between the snapshot and the stream.
    pub fn subscribe(&self) -> broadcast::Receiver<MemberEvent> {
        self.events.subscribe()
    }

    /// Seals with `keyring` from now on, and accepts what any of its keys sealed. Plain
    /// framing becomes sealed.
    pub async fn set_keyring(&self, keyring: Keyring) -> Result<(), GossipError> {
        self.call(|reply| Command::SetKeyring(keyring, reply)).await
    }

    /// Tells the cluster this node is leaving, flushes that to the socket, then stops.
    pub async fn leave(&self) -> Result<(), GossipError> {
        self.call(Command::Leave).await
    }

    /// Stops the driver without telling anyone; the others will declare this node down.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    pub fn stats(&self) -> GossipStats {
        self.counters.snapshot()
    }

    async fn call<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, GossipError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| GossipError::Stopped)?;
        response.await.map_err(|_| GossipError::Stopped)
    }
}

struct Driver {
    foca: Swim,
    idle_gossip: IdleGossip,
    /// This node's id and this life's epoch, for the framing's stamps.
    sender: u64,
    epoch: u64,
    /// The replay guard's clock starts here.
    started: Instant,
    /// Published after every step for [`Gossip::member_count`].
    member_count: Arc<AtomicUsize>,
    /// Published after every step for [`Gossip::incarnation`].
    incarnation: Arc<AtomicU64>,
    io: Io,
    socket: Arc<UdpSocket>,
    commands: mpsc::Receiver<Command>,
    cancel: CancellationToken,
    /// The seeds last announced to. While this node knows no other member it keeps announcing
    /// to them, so a node started before its seeds (or cut off from all of them) still joins.
    seeds: Vec<SocketAddr>,
}

/// How often a node that knows no other member announces itself to its seeds again.
const REANNOUNCE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Driver {
    async fn run(mut self, writer: JoinHandle<()>) {
        let mut buffer = vec![0_u8; RECV_BUFFER];
        let mut reannounce = tokio::time::interval(REANNOUNCE_EVERY);
        reannounce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let left = loop {
            let deadline = self.io.timers.next_deadline();
            tokio::select! {
                // Cancellation first, and timers before packets, so a flood of packets can
                // neither delay shutdown nor starve probes.
                biased;
                () = self.cancel.cancelled() => break None,
                command = self.commands.recv() => match command {
                    None => break None,
                    Some(Command::Leave(reply)) => {
                        if let Err(error) = self.foca.leave_cluster(&mut self.io) {
                            warn!(%error, "leaving the gossip cluster failed");
                        }
                        break Some(reply);
                    }
                    Some(command) => self.handle_command(command),
                },
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.fire_due_timers();
                }
                // Only armed while alone, so a member of a formed pool does not wake for it.
                _ = reannounce.tick(), if !self.seeds.is_empty() && self.foca.num_members() == 0 => {
                    if let Err(error) = self.announce_to_seeds() {
                        debug!(%error, "announcing to the seeds again failed");
                    }
                    self.after_foca();
                }
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((len, from)) => self.handle_packet(buffer.get(..len).unwrap_or_default(), from),
                    Err(error) => debug!(%error, "gossip socket receive failed"),
                },
            }
        };
        // Let every handle see the stop, then let the writer flush what is queued (the leave
        // announcement above) before confirming.
        self.cancel.cancel();
        drop(self.io);
        if let Err(error) = writer.await {
            warn!(%error, "gossip writer task failed");
        }
        info!("gossip stopped");
        if let Some(reply) = left {
            let _ = reply.send(());
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Announce(seeds, reply) => {
                let own = self.foca.identity().gossip_addr;
                self.seeds = seeds.into_iter().filter(|seed| *seed != own).collect();
                let _ = reply.send(self.announce_to_seeds());
                self.after_foca();
            }
            Command::Members(reply) => {
                let mut members = vec![self.foca.identity().clone()];
                members.extend(self.foca.iter_members().map(|member| member.id().clone()));
                let _ = reply.send(members);
            }
            Command::Managers(reply) => {
                let managers = self
                    .foca
                    .iter_members()
                    .filter(|member| member.id().role == Role::Manager)
                    .map(|member| member.id().clone())
                    .collect();
                let _ = reply.send(managers);
            }
            Command::State(reply) => {
                let state = self.foca.iter_membership_state().cloned().collect();
                let _ = reply.send(state);
            }
            Command::Apply(state, reply) => {
                // Not re-broadcast: the state comes from a member that knows it already, and
                // so, by then, does most of the pool.
                if let Err(error) = self.foca.apply_many(state.into_iter(), false, &mut self.io) {
                    debug!(%error, "applying another member's view failed");
                }
                self.after_foca();
                let _ = reply.send(());
            }
            Command::SetKeyring(keyring, reply) => {
                info!(primary = keyring.primary(), keys = ?keyring.ids(), "gossip keyring set");
                self.io
                    .framing
                    .set_keyring(keyring, self.sender, self.epoch);
                let _ = reply.send(());
            }
            Command::Unseen(mut addrs, reply) => {
                addrs.retain(|addr| {
                    !self
                        .foca
                        .iter_members()
                        .any(|member| member.id().gossip_addr == *addr)
                });
                let _ = reply.send(addrs);
            }
            // Handled in the loop, which must stop after it.
            Command::Leave(reply) => {
                let _ = reply.send(());
            }
        }
    }

    fn announce_to_seeds(&mut self) -> Result<(), GossipError> {
        for seed in &self.seeds {
            self.foca
                .announce(GossipIdentity::seed(*seed), &mut self.io)
                .map_err(GossipError::from)?;
        }
        Ok(())
    }

    fn fire_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(timer) = self.io.timers.pop_due(now) {
            if !should_deliver(&self.foca, &timer) {
                continue;
            }
            if let Some(timer) = self.idle_gossip.filter(&self.foca, timer) {
                self.deliver_timer(timer);
            }
        }
        self.after_foca();
    }

    fn deliver_timer(&mut self, timer: Timer<GossipIdentity>) {
        if let Err(error) = self.foca.handle_timer(timer, &mut self.io) {
            debug!(%error, "foca rejected a timer event");
        }
    }

    /// What follows every call into foca: its held periodic gossip handed back once it has
    /// news (see [`crate::pacing`]), and the member count published to the handles.
    fn after_foca(&mut self) {
        if let Some(timer) = self.idle_gossip.release(&self.foca) {
            self.deliver_timer(timer);
        }
        if std::mem::take(&mut self.io.rejoined) {
            self.outbid_older_lives();
        }
        self.member_count
            .store(self.foca.num_members(), Ordering::Relaxed);
        self.incarnation
            .store(self.foca.identity().incarnation, Ordering::Relaxed);
    }

    /// After a rejoin: if the pool still talks of an older life of this node under an
    /// incarnation as high as ours (a restart whose record of its last incarnation was lost),
    /// take the next one above it at once. foca renews by one step per rejoin, and every step
    /// loses to the old life again until the pool forgets it: thousands of rejoins a second,
    /// and the node shown down meanwhile.
    fn outbid_older_lives(&mut self) {
        let own = self.foca.identity().clone();
        let highest = self
            .foca
            .iter_membership_state()
            .map(foca::Member::id)
            .filter(|id| id.gossip_addr == own.gossip_addr && id.node_id == own.node_id)
            .map(|id| id.incarnation)
            .max();
        let Some(highest) = highest.filter(|highest| *highest >= own.incarnation) else {
            return;
        };
        let next = own.with_incarnation(highest.saturating_add(1));
        info!(
            old = highest,
            new = next.incarnation,
            "the pool knew an older life of this node under a higher incarnation; taking the next one"
        );
        if let Err(error) = self.foca.change_identity(next, &mut self.io) {
            warn!(%error, "cannot take a higher gossip incarnation");
        }
    }

    fn handle_packet(&mut self, data: &[u8], from: SocketAddr) {
        self.io.counters.received();
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let body = match self.io.framing.unframe(data, now_ms) {
            Ok(body) => body,
            Err(reason) => {
                trace!(%from, %reason, "dropped gossip packet");
                self.io.counters.dropped(reason);
                return;
            }
        };
        if let Err(error) = self.foca.handle_data(&body, &mut self.io) {
            trace!(%from, %error, "foca rejected a gossip packet");
            self.io.counters.dropped_by_foca();
        }
        self.after_foca();
    }
}

/// What foca asks of the outside world, carried out.
struct Io {
    framing: Framing,
    /// Sends go straight out when the socket takes them (UDP on a healthy host almost always
    /// does); only when it would block do they queue for the writer task. A hop through the
    /// writer for every packet would cost a task wake-up each.
    socket: Arc<UdpSocket>,
    send: mpsc::Sender<(SocketAddr, Bytes)>,
    timers: TimerQueue,
    events: broadcast::Sender<MemberEvent>,
    counters: Arc<Counters>,
    /// foca rejoined under a new identity since the driver last looked.
    rejoined: bool,
}

impl Runtime<GossipIdentity> for Io {
    fn notify(&mut self, notification: Notification<'_, GossipIdentity>) {
        if matches!(notification, Notification::Rejoin(_)) {
            self.rejoined = true;
        }
        match MemberEvent::from_notification(&notification) {
            Some(event) => {
                debug!(?event, "gossip member event");
                // No subscriber is not an error: events are also readable as `members()`.
                let _ = self.events.send(event);
            }
            None => info!(?notification, "gossip state of this node"),
        }
    }

    fn send_to(&mut self, to: GossipIdentity, data: &[u8]) {
        let packet = match self.frame(data) {
            Some(packet) => packet,
            None => return,
        };
        match self.socket.try_send_to(&packet, to.gossip_addr) {
            Ok(_) => self.counters.sent(),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                if self.send.try_send((to.gossip_addr, packet)).is_err() {
                    self.counters.send_failed();
                }
            }
            Err(error) => {
                debug!(to = %to.gossip_addr, %error, "gossip send failed");
                self.counters.send_failed();
            }
        }
    }

    fn submit_after(&mut self, event: Timer<GossipIdentity>, after: Duration) {
        self.timers.schedule(Instant::now(), after, event);
    }
}

impl Io {
    fn frame(&mut self, data: &[u8]) -> Option<Bytes> {
        match self.framing.frame(data) {
            Ok(packet) => Some(packet),
            Err(error) => {
                warn!(%error, "cannot seal a gossip packet");
                self.counters.send_failed();
                None
            }
        }
    }
}

/// Sends queued packets in order until the driver drops its sender.
async fn write_packets(
    socket: Arc<UdpSocket>,
    mut queue: mpsc::Receiver<(SocketAddr, Bytes)>,
    counters: Arc<Counters>,
) {
    while let Some((to, packet)) = queue.recv().await {
        match socket.send_to(&packet, to).await {
            Ok(_) => counters.sent(),
            Err(error) => {
                debug!(%to, %error, "gossip send failed");
                counters.send_failed();
            }
        }
    }
}
