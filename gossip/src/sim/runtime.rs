//! The simulation's [`foca::Runtime`]: what a member asks for is done in virtual time.
//!
//! `send_to` hands the packet to the virtual network, `submit_after` queues the timer at
//! `now + after` on the one event queue, and notifications go to the observer. This is the
//! real driver's `Io` with the socket and the tokio clock replaced, and nothing else: the
//! foca instances under test are unmodified, and packets are framed (sealed, when the
//! simulation seals) by the member's own [`Framing`], as the driver frames them.

use std::time::Duration;

use foca::{Notification, Runtime, Timer};

use crate::framing::Framing;
use crate::identity::GossipIdentity;
use crate::sim::clock::SimTime;
use crate::sim::world::{Event, World};

/// The runtime of member `me` while it handles one event at `now`.
pub(crate) struct SimIo<'a> {
    pub(crate) me: u32,
    pub(crate) now: SimTime,
    pub(crate) world: &'a mut World,
    pub(crate) framing: &'a mut Framing,
}

impl Runtime<GossipIdentity> for SimIo<'_> {
    fn notify(&mut self, notification: Notification<'_, GossipIdentity>) {
        let World {
            observer, alive, ..
        } = &mut *self.world;
        observer.notify(self.me, self.now, &notification, alive);
    }

    fn send_to(&mut self, to: GossipIdentity, data: &[u8]) {
        self.world
            .send(self.now, self.framing, to.gossip_addr, data);
    }

    fn submit_after(&mut self, timer: Timer<GossipIdentity>, after: Duration) {
        if matches!(timer, Timer::ChangeSuspectToDown { .. }) {
            self.world.observer.suspected();
        }
        self.world.queue.push(
            self.now.after(after),
            Event::Timer {
                member: self.me,
                timer: Box::new(timer),
            },
        );
    }
}

/// The runtime of a member while its view is filled before the run starts: it keeps what
/// foca asks for, to be queued once the member's start time is chosen, and ignores the
/// notifications (every member coming up at once is the starting point, not an event).
#[derive(Default)]
pub(crate) struct Deferred {
    pub(crate) timers: Vec<(Duration, Timer<GossipIdentity>)>,
    pub(crate) sends: Vec<(GossipIdentity, Vec<u8>)>,
}

impl Runtime<GossipIdentity> for Deferred {
    fn notify(&mut self, _notification: Notification<'_, GossipIdentity>) {}

    fn send_to(&mut self, to: GossipIdentity, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, timer: Timer<GossipIdentity>, after: Duration) {
        self.timers.push((after, timer));
    }
}
