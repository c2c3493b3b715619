//! Virtual time and the discrete-event queue that drives it.
//!
//! Simulated members never sleep: the simulation pops the earliest pending event (a foca timer
//! or a packet arriving), sets the clock to its time and hands it to the member. Events due at
//! the same instant are ordered by the sequence number they were queued with, so a run is a
//! pure function of its seed — no wall clock, no hash-map iteration order, no threads decide
//! anything.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Duration;

/// A point in simulated time: nanoseconds since the simulation started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SimTime(u64);

impl SimTime {
    pub const ZERO: SimTime = SimTime(0);

    pub fn from_nanos(nanos: u64) -> SimTime {
        SimTime(nanos)
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// This time as the duration since the start of the simulation.
    pub fn since_start(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `after` later (saturating: a run never reaches 584 years).
    pub fn after(self, after: Duration) -> SimTime {
        let nanos = u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
        SimTime(self.0.saturating_add(nanos))
    }

    /// How long after `earlier` this is (zero if it is not later).
    pub fn duration_since(self, earlier: SimTime) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

struct Scheduled<E> {
    at: SimTime,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Scheduled<E>) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Scheduled<E>) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    /// Reversed, so that std's max-heap pops the earliest event first.
    fn cmp(&self, other: &Scheduled<E>) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Pending events in (time, queue order) order.
pub(crate) struct EventQueue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    next_seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> EventQueue<E> {
        EventQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub(crate) fn push(&mut self, at: SimTime, event: E) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.heap.push(Scheduled { at, seq, event });
    }

    /// The earliest pending event if it is due by `deadline`.
    pub(crate) fn pop_until(&mut self, deadline: SimTime) -> Option<(SimTime, E)> {
        if self.heap.peek()?.at > deadline {
            return None;
        }
        self.heap
            .pop()
            .map(|scheduled| (scheduled.at, scheduled.event))
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_queue_order() {
        let mut queue = EventQueue::default();
        let start = SimTime::ZERO;
        queue.push(start.after(Duration::from_millis(5)), "late");
        queue.push(start.after(Duration::from_millis(1)), "first");
        queue.push(start.after(Duration::from_millis(1)), "second");
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.pop_until(start), None);
        let mut order = Vec::new();
        while let Some((_, event)) = queue.pop_until(start.after(Duration::from_secs(1))) {
            order.push(event);
        }
        assert_eq!(order, ["first", "second", "late"]);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn time_arithmetic_saturates() {
        let t = SimTime::from_nanos(10);
        assert_eq!(t.after(Duration::MAX).as_nanos(), u64::MAX);
        assert_eq!(SimTime::ZERO.duration_since(t), Duration::ZERO);
        assert_eq!(t.duration_since(SimTime::ZERO), Duration::from_nanos(10));
    }
}
