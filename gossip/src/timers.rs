//! The one timer queue of a driver: foca's timer events, delivered in deadline order.
//!
//! foca requires every scheduled event to be delivered and tolerates lateness, not loss. One
//! queue polled by the driver's select loop (rather than a spawned sleep per event) keeps
//! delivery in order, costs no task per timer, and drops every pending timer with the driver.
//! Events due at the same instant keep the order foca submitted them in.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

use foca::Timer;
use tokio::time::Instant;

use crate::identity::GossipIdentity;

struct Scheduled {
    at: Instant,
    seq: u64,
    timer: Timer<GossipIdentity>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Scheduled) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Scheduled) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so that std's max-heap pops the earliest deadline first.
    fn cmp(&self, other: &Scheduled) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
pub(crate) struct TimerQueue {
    heap: BinaryHeap<Scheduled>,
    next_seq: u64,
}

impl TimerQueue {
    pub(crate) fn schedule(&mut self, now: Instant, after: Duration, timer: Timer<GossipIdentity>) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.heap.push(Scheduled {
            at: now + after,
            seq,
            timer,
        });
    }

    /// When the earliest event is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|scheduled| scheduled.at)
    }

    /// The earliest event if it is due by `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer<GossipIdentity>> {
        if self.heap.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|scheduled| scheduled.timer)
    }
}

#[cfg(test)]
mod tests {
    use foca::Timer;

    use super::*;

    #[test]
    fn pops_in_deadline_then_submission_order() {
        let now = Instant::now();
        let mut queue = TimerQueue::default();
        queue.schedule(now, Duration::from_millis(20), Timer::PeriodicGossip(3));
        queue.schedule(now, Duration::from_millis(10), Timer::PeriodicGossip(1));
        queue.schedule(now, Duration::from_millis(10), Timer::PeriodicGossip(2));
        assert_eq!(queue.next_deadline(), Some(now + Duration::from_millis(10)));
        assert!(queue.pop_due(now).is_none());
        let later = now + Duration::from_millis(30);
        let mut order = Vec::new();
        while let Some(timer) = queue.pop_due(later) {
            order.push(timer);
        }
        assert_eq!(
            order,
            [
                Timer::PeriodicGossip(1),
                Timer::PeriodicGossip(2),
                Timer::PeriodicGossip(3)
            ]
        );
    }
}
