//! The [`World`]: everything a simulated member's actions touch besides its own foca — the
//! event queue, the network, liveness, the counters and the observer.
//!
//! It lives apart from the members so that one member's foca can be borrowed mutably while
//! what it does (send, schedule, notify) lands in the world: see
//! [`runtime`](crate::sim::runtime).

use std::net::SocketAddr;

use foca::Timer;

use crate::framing::Framing;
use crate::identity::GossipIdentity;
use crate::sim::addressing::index_of;
use crate::sim::clock::{EventQueue, SimTime};
use crate::sim::network::Network;
use crate::sim::observer::Observer;
use crate::sim::traffic::Traffic;

/// Something that happens to one member at one instant.
pub(crate) enum Event {
    /// A timer foca asked for is due. Boxed: a timer holds identities, and the event queue
    /// moves its entries on every push and pop.
    Timer {
        member: u32,
        timer: Box<Timer<GossipIdentity>>,
    },
    /// A packet arrives.
    Deliver { to: u32, data: Box<[u8]> },
    /// A joining member announces itself to seeds, as the driver does until it knows a member.
    Announce { member: u32 },
}

pub(crate) struct World {
    pub(crate) queue: EventQueue<Event>,
    pub(crate) network: Network,
    pub(crate) observer: Observer,
    /// Whether each member is running; a crashed member neither receives nor acts.
    pub(crate) alive: Vec<bool>,
    pub(crate) traffic: Traffic,
}

impl World {
    /// A member sent foca's `data` to `to` at `now`, framed by `framing`: count it, then lose
    /// it or queue its arrival. Plain packets travel as foca's bytes (the header is only
    /// counted); sealed ones as what the driver would put on the wire.
    pub(crate) fn send(
        &mut self,
        now: SimTime,
        framing: &mut Framing,
        to: SocketAddr,
        data: &[u8],
    ) {
        let wire_len = data.len() + framing.overhead();
        let data: Box<[u8]> = if framing.keyring().is_some() {
            match framing.frame(data) {
                Ok(packet) => packet.as_ref().into(),
                Err(_) => {
                    self.traffic.undeliverable += 1;
                    return;
                }
            }
        } else {
            data.into()
        };
        self.traffic.record_send(wire_len);
        let Some(index) = index_of(to) else {
            self.traffic.undeliverable += 1;
            return;
        };
        match self.network.transit(now) {
            None => self.traffic.lost += 1,
            Some(at) => self.queue.push(at, Event::Deliver { to: index, data }),
        }
    }

    pub(crate) fn is_alive(&self, member: u32) -> bool {
        usize::try_from(member)
            .ok()
            .and_then(|index| self.alive.get(index))
            .copied()
            .unwrap_or(false)
    }
}
