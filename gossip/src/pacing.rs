//! Quiet periodic gossip: foca's `PeriodicGossip` timer, held while there is nothing to say.
//!
//! foca re-arms its periodic gossip timer every 100 ms (lan) and, when it fires, sends only if
//! some membership update still has transmissions left. On a settled fleet that is never, yet
//! the timer still wakes every member ten times a second: the largest share of an idle
//! worker's wake-ups. So a due `PeriodicGossip` that would send nothing is held here instead of
//! reaching foca, and is handed over the moment foca has an update to spread (after a packet,
//! a timer or an announce). Held, the timer chain simply pauses; released, foca gossips at once
//! and re-arms, so updates still go out at most once per period, and a fresh one goes out
//! without waiting for the next tick.
//!
//! The driver and the simulator both use it, so the simulated figures describe the agent.

use foca::Timer;

use crate::driver::Swim;
use crate::identity::GossipIdentity;

#[derive(Debug, Default)]
pub(crate) struct IdleGossip {
    held: Option<Timer<GossipIdentity>>,
}

impl IdleGossip {
    /// Whether foca has anything its periodic gossip would send.
    fn has_news(foca: &Swim) -> bool {
        foca.updates_backlog() > 0 || foca.custom_broadcast_backlog() > 0
    }

    /// Passes a due timer on, unless it is a periodic gossip with nothing to send: that one
    /// is kept until [`IdleGossip::release`] finds news.
    pub(crate) fn filter(
        &mut self,
        foca: &Swim,
        timer: Timer<GossipIdentity>,
    ) -> Option<Timer<GossipIdentity>> {
        if matches!(timer, Timer::PeriodicGossip(_)) && !IdleGossip::has_news(foca) {
            // A newer one (foca reconnected under a new timer token) replaces an older one,
            // which foca would have ignored anyway.
            self.held = Some(timer);
            return None;
        }
        Some(timer)
    }

    /// The held periodic gossip, once foca has something to send; call after every call into
    /// foca that may have queued an update.
    pub(crate) fn release(&mut self, foca: &Swim) -> Option<Timer<GossipIdentity>> {
        if self.held.is_some() && IdleGossip::has_news(foca) {
            return self.held.take();
        }
        None
    }

    #[cfg(test)]
    pub(crate) fn is_holding(&self) -> bool {
        self.held.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use foca::{Foca, Notification, PostcardCodec, Runtime};
    use rand_foca::SeedableRng;
    use rand_foca::rngs::SmallRng;

    use super::*;
    use crate::identity::{GossipIdentity, Role};

    #[derive(Default)]
    struct Recorded {
        sent: usize,
        timers: Vec<Timer<GossipIdentity>>,
    }

    impl Runtime<GossipIdentity> for &mut Recorded {
        fn notify(&mut self, _notification: Notification<'_, GossipIdentity>) {}
        fn send_to(&mut self, _to: GossipIdentity, _data: &[u8]) {
            self.sent += 1;
        }
        fn submit_after(&mut self, timer: Timer<GossipIdentity>, _after: Duration) {
            self.timers.push(timer);
        }
    }

    fn member(index: u16) -> Swim {
        let addr: SocketAddr = ([127, 0, 0, 1], 7000 + index).into();
        let identity =
            GossipIdentity::new(u64::from(index), Role::Worker, addr, addr.to_string(), None);
        Foca::new(
            identity,
            crate::config::lan_config(std::num::NonZeroU32::MIN),
            SmallRng::seed_from_u64(u64::from(index)),
            PostcardCodec,
        )
    }

    #[test]
    fn holds_an_idle_periodic_gossip_and_releases_it_with_news() {
        let mut foca = member(1);
        let mut idle = IdleGossip::default();
        let mut io = Recorded::default();

        // Nothing known, nothing to say: the timer is held, and stays held.
        assert!(idle.filter(&foca, Timer::PeriodicGossip(0)).is_none());
        assert!(idle.is_holding());
        assert!(idle.release(&foca).is_none());

        // Learning a member queues an update to spread: the held timer comes back.
        let other = member(2).identity().clone();
        foca.apply_many(std::iter::once(foca::Member::alive(other)), true, &mut io)
            .expect("apply a member");
        assert!(foca.updates_backlog() > 0);
        assert!(matches!(
            idle.release(&foca),
            Some(Timer::PeriodicGossip(_))
        ));
        assert!(!idle.is_holding());

        // With news, a due periodic gossip passes straight through; other timers always do.
        assert!(idle.filter(&foca, Timer::PeriodicGossip(0)).is_some());
        assert!(idle.filter(&foca, Timer::ProbeRandomMember(0)).is_some());
    }
}
