//! The replay guard: an authentic packet is accepted once, never again.
//!
//! Every sealed packet carries, inside its ciphertext, its sender's node id, the sender's
//! *epoch* (the incarnation its gossip driver started with: one per life of the node, each
//! above the last, as the agent keeps it in its config dir) and a sequence number that life
//! counts up from 1 for every packet it seals. Per sender the
//! guard remembers the newest epoch and a sliding window over that epoch's sequence numbers,
//! as IPsec and WireGuard do:
//!
//! - a newer epoch is a new life: the window starts again;
//! - in the current epoch, a number above the highest seen is new; one within the last
//!   [`WINDOW`] numbers is new unless its bit is set; anything older is refused;
//! - an older epoch is an earlier life, refused — unless the sender has been silent for
//!   [`SILENT_AFTER_MS`]: a node that lost the record of its last incarnation (a restored
//!   config dir) comes back with a smaller epoch, and must not be shut out for good. What an attacker could replay then is
//!   an earlier life's news, which foca already ignores (its incarnations are older).
//!
//! Senders are remembered up to [`MAX_SENDERS`], the longest silent one forgotten first. Only
//! authentic packets reach the guard, so only key holders can make it remember anything.
//! What it cannot see: a receiver that restarts has an empty guard, and accepts once each
//! packet captured before its restart from a sender's current life (foca treats such old
//! news as stale). The decisions are pure: time comes in as milliseconds of a monotonic clock.

use std::collections::HashMap;

use crate::seal::Stamp;

/// How many sequence numbers below the highest one a packet may arrive late and still be
/// accepted. A sender numbers all its packets, to every member, so a receiver sees a sparse
/// subsequence; 1024 numbers are many seconds of a busy sender's packets, far more than UDP
/// reorders on any network.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;
/// How long a sender must have been silent before an older epoch from it is taken as a new
/// life (a restart that lost the record of its incarnation).
pub const SILENT_AFTER_MS: u64 = 30_000;
/// How many senders the guard remembers.
pub const MAX_SENDERS: usize = 65_536;

/// Why a packet is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Seen already, in its sender's current life.
    Duplicate,
    /// Older than the window, or from an earlier life of a sender heard from lately.
    Stale,
}

/// One sender's current life and the numbers seen in it.
#[derive(Debug, Clone)]
struct Window {
    epoch: u64,
    highest: u64,
    /// Bit `seq % WINDOW` says whether `seq` was seen, for `seq` in `(highest - WINDOW,
    /// highest]`.
    seen: [u64; WORDS],
    last_heard_ms: u64,
}

impl Window {
    fn new(stamp: Stamp, now_ms: u64) -> Window {
        let mut window = Window {
            epoch: stamp.epoch,
            highest: stamp.seq,
            seen: [0; WORDS],
            last_heard_ms: now_ms,
        };
        window.mark(stamp.seq);
        window
    }

    fn slot(seq: u64) -> (usize, u64) {
        let bit = seq % WINDOW;
        (usize::try_from(bit / 64).unwrap_or(0), 1 << (bit % 64))
    }

    fn mark(&mut self, seq: u64) {
        let (word, mask) = Window::slot(seq);
        if let Some(word) = self.seen.get_mut(word) {
            *word |= mask;
        }
    }

    fn is_marked(&self, seq: u64) -> bool {
        let (word, mask) = Window::slot(seq);
        self.seen.get(word).is_some_and(|word| word & mask != 0)
    }

    /// Accepts `seq` of the current epoch once.
    fn accept(&mut self, seq: u64) -> Result<(), Refusal> {
        if seq > self.highest {
            if seq - self.highest >= WINDOW {
                self.seen = [0; WORDS];
            } else {
                // The numbers between leave the window's far end: forget them.
                for skipped in self.highest + 1..seq {
                    let (word, mask) = Window::slot(skipped);
                    if let Some(word) = self.seen.get_mut(word) {
                        *word &= !mask;
                    }
                }
                let (word, mask) = Window::slot(seq);
                if let Some(word) = self.seen.get_mut(word) {
                    *word &= !mask;
                }
            }
            self.highest = seq;
            self.mark(seq);
            return Ok(());
        }
        if self.highest - seq >= WINDOW {
            return Err(Refusal::Stale);
        }
        if self.is_marked(seq) {
            return Err(Refusal::Duplicate);
        }
        self.mark(seq);
        Ok(())
    }
}

/// Every sender's window. See the module documentation.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    senders: HashMap<u64, Window>,
}

impl ReplayGuard {
    /// Accepts an authentic packet stamped `stamp` at `now_ms` if it is new, and remembers it.
    pub fn check(&mut self, stamp: Stamp, now_ms: u64) -> Result<(), Refusal> {
        let Some(window) = self.senders.get_mut(&stamp.sender) else {
            self.make_room();
            self.senders
                .insert(stamp.sender, Window::new(stamp, now_ms));
            return Ok(());
        };
        let result = if stamp.epoch == window.epoch {
            window.accept(stamp.seq)
        } else if stamp.epoch > window.epoch
            || now_ms.saturating_sub(window.last_heard_ms) >= SILENT_AFTER_MS
        {
            *window = Window::new(stamp, now_ms);
            Ok(())
        } else {
            Err(Refusal::Stale)
        };
        if result.is_ok() {
            window.last_heard_ms = now_ms;
        }
        result
    }

    /// Senders remembered.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Forgets the longest silent sender when full. A scan, but only when a new sender comes
    /// to a guard that already remembers [`MAX_SENDERS`].
    fn make_room(&mut self) {
        if self.senders.len() < MAX_SENDERS {
            return;
        }
        let oldest = self
            .senders
            .iter()
            .min_by_key(|(_, window)| window.last_heard_ms)
            .map(|(sender, _)| *sender);
        if let Some(sender) = oldest {
            self.senders.remove(&sender);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(sender: u64, epoch: u64, seq: u64) -> Stamp {
        Stamp { sender, epoch, seq }
    }

    #[test]
    fn each_packet_is_accepted_once() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(stamp(1, 10, 1), 0), Ok(()));
        assert_eq!(guard.check(stamp(1, 10, 1), 0), Err(Refusal::Duplicate));
        assert_eq!(guard.check(stamp(1, 10, 2), 0), Ok(()));
        // Another sender's numbers are its own.
        assert_eq!(guard.check(stamp(2, 10, 1), 0), Ok(()));
        assert_eq!(guard.len(), 2);
    }

    #[test]
    fn late_packets_within_the_window_are_accepted_once() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(stamp(1, 10, 100), 0), Ok(()));
        // Gaps are normal (the sender's other packets went to other members).
        assert_eq!(guard.check(stamp(1, 10, 50), 0), Ok(()));
        assert_eq!(guard.check(stamp(1, 10, 50), 0), Err(Refusal::Duplicate));
        assert_eq!(guard.check(stamp(1, 10, 99), 0), Ok(()));
        assert_eq!(guard.check(stamp(1, 10, 300), 0), Ok(()));
        assert_eq!(guard.check(stamp(1, 10, 100), 0), Err(Refusal::Duplicate));
        // Far behind the highest: refused whether seen or not.
        assert_eq!(guard.check(stamp(1, 10, 300 + WINDOW), 0), Ok(()));
        assert_eq!(guard.check(stamp(1, 10, 300), 0), Err(Refusal::Stale));
        assert_eq!(guard.check(stamp(1, 10, 299), 0), Err(Refusal::Stale));
        assert_eq!(guard.check(stamp(1, 10, 301), 0), Ok(()));
    }

    #[test]
    fn moving_the_window_forgets_the_numbers_that_left_it() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(stamp(1, 10, 5), 0), Ok(()));
        // 5 + WINDOW reuses 5's bit: it is new, and 5 is now too old.
        assert_eq!(guard.check(stamp(1, 10, 5 + WINDOW), 0), Ok(()));
        assert_eq!(guard.check(stamp(1, 10, 5), 0), Err(Refusal::Stale));
        // A number between, never seen, is accepted exactly once.
        assert_eq!(guard.check(stamp(1, 10, 6 + WINDOW / 2), 0), Ok(()));
        assert_eq!(
            guard.check(stamp(1, 10, 6 + WINDOW / 2), 0),
            Err(Refusal::Duplicate)
        );
        // Every number of a long run in order, then all of them again.
        let mut run = ReplayGuard::default();
        for seq in 1..=5 * WINDOW {
            assert_eq!(run.check(stamp(3, 1, seq), 0), Ok(()), "{seq}");
        }
        for seq in 1..=5 * WINDOW {
            assert!(run.check(stamp(3, 1, seq), 0).is_err(), "{seq} replayed");
        }
    }

    #[test]
    fn a_new_life_starts_over_and_an_old_one_is_refused_while_the_sender_talks() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(stamp(1, 10, 500), 0), Ok(()));
        // Restarted: a later epoch, numbers from 1 again.
        assert_eq!(guard.check(stamp(1, 20, 1), 1_000), Ok(()));
        assert_eq!(guard.check(stamp(1, 20, 1), 1_000), Err(Refusal::Duplicate));
        // Packets captured from the earlier life are refused.
        assert_eq!(guard.check(stamp(1, 10, 501), 2_000), Err(Refusal::Stale));
        // Refusals do not count as hearing from the sender.
        assert_eq!(
            guard.check(stamp(1, 10, 502), 1_000 + SILENT_AFTER_MS - 1),
            Err(Refusal::Stale)
        );
    }

    #[test]
    fn an_older_epoch_is_a_new_life_once_the_sender_has_been_silent() {
        let mut guard = ReplayGuard::default();
        assert_eq!(guard.check(stamp(1, 20, 7), 0), Ok(()));
        // The node restarted with its clock stepped back: silent meanwhile, then epoch 15.
        assert_eq!(guard.check(stamp(1, 15, 1), SILENT_AFTER_MS), Ok(()));
        assert_eq!(
            guard.check(stamp(1, 15, 1), SILENT_AFTER_MS),
            Err(Refusal::Duplicate)
        );
        assert_eq!(guard.check(stamp(1, 15, 2), SILENT_AFTER_MS), Ok(()));
    }

    #[test]
    fn a_full_guard_forgets_the_longest_silent_sender() {
        let mut guard = ReplayGuard::default();
        for sender in 0..MAX_SENDERS as u64 {
            assert_eq!(guard.check(stamp(sender, 1, 1), sender + 1), Ok(()));
        }
        assert_eq!(guard.len(), MAX_SENDERS);
        assert_eq!(guard.check(stamp(u64::MAX, 1, 1), u64::MAX), Ok(()));
        assert_eq!(guard.len(), MAX_SENDERS);
        // Sender 0 was heard from longest ago and is the one forgotten.
        assert_eq!(
            guard.check(stamp(1, 1, 1), u64::MAX),
            Err(Refusal::Duplicate)
        );
        assert_eq!(guard.check(stamp(0, 1, 1), u64::MAX), Ok(()));
    }
}
