//! The observer: reads every member's foca notifications, the way an operator would read
//! every node's member events, and turns them into the figures a run reports.
//!
//! It watches one member at a time (a joiner, to time when the others see it up; a crashed
//! member, to time when they see it down) and, all the time, counts false downs: a
//! `MemberDown` about a member that is in fact running. foca gives a member declared down a
//! new identity (see [`GossipIdentity::renew`](foca::Identity::renew)), so one false
//! suspicion that runs its course shows up as one *incident* (a member's life declared down)
//! and as up to one *notification* per member that applied it.

use std::collections::BTreeSet;
use std::time::Duration;

use foca::Notification;

use crate::identity::GossipIdentity;
use crate::sim::addressing::index_of;
use crate::sim::clock::SimTime;

/// What a watch waits for the others to notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Up,
    Down,
}

struct Watch {
    target: u32,
    change: Change,
    started: SimTime,
    /// Which members have noticed, by index; members added after the watch started are not
    /// observers.
    noticed: Vec<bool>,
    /// When each noticing happened, in order.
    times: Vec<SimTime>,
    observers: usize,
}

/// How far a change spread among the members that could notice it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagation {
    /// Running members other than the one watched when the watch started.
    pub observers: usize,
    /// How many of them noticed.
    pub noticed: usize,
    /// When half of the observers had noticed, after the change.
    pub to_half: Option<Duration>,
    /// When 99.9% (rounded up) had.
    pub to_999: Option<Duration>,
    /// When all had.
    pub to_all: Option<Duration>,
}

/// False downs so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FalseDowns {
    /// Lives of running members declared down (each is one suspicion that was not refuted
    /// in time).
    pub incidents: u64,
    /// `MemberDown` notifications about running members, over all observers.
    pub notifications: u64,
    /// Members that learned they had been declared down and rejoined with a new identity.
    pub rejoins: u64,
    /// Suspicions raised (probes that failed directly and indirectly), crashed members'
    /// included. Each one that was not refuted in time became an incident.
    pub suspicions: u64,
}

#[derive(Default)]
pub(crate) struct Observer {
    watch: Option<Watch>,
    incidents: BTreeSet<(u32, u64)>,
    false_notifications: u64,
    rejoins: u64,
    suspicions: u64,
}

impl Observer {
    /// Starts timing how `target`'s `change` spreads; `alive` is every member's liveness.
    pub(crate) fn watch(&mut self, target: u32, change: Change, now: SimTime, alive: &[bool]) {
        let observers = alive
            .iter()
            .enumerate()
            .filter(|(index, alive)| **alive && u32::try_from(*index).ok() != Some(target))
            .count();
        self.watch = Some(Watch {
            target,
            change,
            started: now,
            noticed: vec![false; alive.len()],
            times: Vec::with_capacity(observers),
            observers,
        });
    }

    /// Whether the watched change reached every observer (true when nothing is watched).
    pub(crate) fn watch_complete(&self) -> bool {
        self.watch
            .as_ref()
            .is_none_or(|watch| watch.times.len() >= watch.observers)
    }

    /// The watched change's spread so far.
    pub(crate) fn propagation(&self) -> Option<Propagation> {
        let watch = self.watch.as_ref()?;
        let after = |fraction: f64| {
            // The smallest count that is at least `fraction` of the observers.
            let needed = ((watch.observers as f64) * fraction).ceil().max(1.0) as usize;
            watch
                .times
                .get(needed.checked_sub(1)?)
                .map(|at| at.duration_since(watch.started))
        };
        Some(Propagation {
            observers: watch.observers,
            noticed: watch.times.len(),
            to_half: after(0.5),
            to_999: after(0.999),
            to_all: after(1.0),
        })
    }

    pub(crate) fn false_downs(&self) -> FalseDowns {
        FalseDowns {
            incidents: u64::try_from(self.incidents.len()).unwrap_or(u64::MAX),
            notifications: self.false_notifications,
            rejoins: self.rejoins,
            suspicions: self.suspicions,
        }
    }

    /// A member suspects another (foca scheduled the suspicion's timeout).
    pub(crate) fn suspected(&mut self) {
        self.suspicions += 1;
    }

    /// Member `me` got `notification` at `now`.
    pub(crate) fn notify(
        &mut self,
        me: u32,
        now: SimTime,
        notification: &Notification<'_, GossipIdentity>,
        alive: &[bool],
    ) {
        match notification {
            Notification::MemberUp(id) => self.noticed(me, id, Change::Up, now),
            Notification::MemberDown(id) => {
                self.noticed(me, id, Change::Down, now);
                let index = index_of(id.gossip_addr);
                let running = index
                    .and_then(|index| alive.get(usize::try_from(index).ok()?))
                    .copied()
                    .unwrap_or(false);
                if let (true, Some(index)) = (running, index) {
                    self.false_notifications += 1;
                    self.incidents.insert((index, id.incarnation));
                }
            }
            Notification::Rejoin(_) => self.rejoins += 1,
            _ => {}
        }
    }

    fn noticed(&mut self, me: u32, id: &GossipIdentity, change: Change, now: SimTime) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        if watch.change != change || index_of(id.gossip_addr) != Some(watch.target) {
            return;
        }
        if let Some(noticed) = usize::try_from(me)
            .ok()
            .and_then(|me| watch.noticed.get_mut(me))
            && !*noticed
        {
            *noticed = true;
            watch.times.push(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::addressing::identity_of;

    #[test]
    fn times_the_spread_and_counts_false_downs() {
        let mut observer = Observer::default();
        let alive = vec![true; 5];
        let Some(target) = identity_of(4, 0) else {
            unreachable!()
        };
        let Some(other) = identity_of(2, 0) else {
            unreachable!()
        };
        observer.watch(4, Change::Up, SimTime::ZERO, &alive);
        for (me, ms) in [(0, 10), (1, 20), (1, 25), (2, 30)] {
            let now = SimTime::ZERO.after(Duration::from_millis(ms));
            observer.notify(me, now, &Notification::MemberUp(&target), &alive);
        }
        assert!(!observer.watch_complete());
        let spread = observer.propagation();
        assert_eq!(spread.as_ref().map(|spread| spread.noticed), Some(3));
        assert_eq!(
            spread.as_ref().and_then(|spread| spread.to_half),
            Some(Duration::from_millis(20))
        );
        assert_eq!(spread.and_then(|spread| spread.to_all), None);
        observer.notify(3, SimTime::ZERO, &Notification::MemberUp(&target), &alive);
        assert!(observer.watch_complete());

        // Member 2 is running: two observers declaring it down is one incident.
        observer.notify(0, SimTime::ZERO, &Notification::MemberDown(&other), &alive);
        observer.notify(1, SimTime::ZERO, &Notification::MemberDown(&other), &alive);
        let mut crashed = alive.clone();
        crashed[3] = false;
        let Some(dead) = identity_of(3, 0) else {
            unreachable!()
        };
        observer.notify(0, SimTime::ZERO, &Notification::MemberDown(&dead), &crashed);
        assert_eq!(
            observer.false_downs(),
            FalseDowns {
                incidents: 1,
                notifications: 2,
                rejoins: 0,
                suspicions: 0
            }
        );
    }
}
