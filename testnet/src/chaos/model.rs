//! The sequential specification of one KV key, as the checker needs it: given the key's state
//! and an operation with the result the client saw, is that result possible, and what is the
//! state afterwards?
//!
//! Why one key at a time: linearizability is compositional (Herlihy & Wing; porcupine calls the
//! partitioned use "P-compositionality"), so a history is linearizable iff each key's
//! sub-history is. Checking keys separately turns one search exponential in the total
//! concurrency into many small ones.
//!
//! The price is a deliberate weakening. Symphony takes every write's revision from one global
//! counter, so across keys revisions are unique and ordered by real time. Seen from one key we
//! can only demand that each write's revision be greater than the key's current `mod_revision`
//! (other keys' writes fill the gaps). A bug that, say, hands out the same revision to writes on
//! two different keys is therefore not caught here.
//!
//! The state of a key is absent, or a value with its `mod_revision`. A write whose reply was lost
//! leaves a revision we do not know; rather than guess, the state keeps what is known about it —
//! a lower bound and the revisions a refused compare-and-set ruled out — and a later read or
//! compare-and-set that names a revision pins it down. The set of candidates is never empty: it
//! is unbounded above (only a later write could bound it, and that write replaces the state).
//! Choosing the smallest candidate whenever the revision is overwritten unseen is safe, because a
//! smaller predecessor only leaves later writes more room.
//!
//! The candidates also leave out the revisions of the key's acknowledged writes ([`Taken`]).
//! That changes no verdict (revisions only grow, so a lost write placed before an acknowledged
//! one has a smaller revision and one placed after it a greater one), but it refutes at once a
//! compare-and-set that would otherwise pin a lost write's revision to one only found taken much
//! later in the search, and so keeps the search small.
//!
//! Values are interned to small integers per key ([`ValueId`]) so states are cheap to hash and
//! clone in the checker's memo table.

/// A value, interned per key.
pub type ValueId = u32;

/// The revisions of the key's acknowledged writes, which a lost write's revision cannot be.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    /// Sorted, without duplicates.
    revisions: Vec<u64>,
    /// For each revision, the last one of the run of consecutive revisions it belongs to, so that
    /// the next free revision is one lookup away even when almost all are taken.
    run_ends: Vec<u64>,
}

impl Taken {
    pub fn new(mut revisions: Vec<u64>) -> Taken {
        revisions.sort_unstable();
        revisions.dedup();
        let mut run_ends = revisions.clone();
        for index in (0..revisions.len().saturating_sub(1)).rev() {
            if revisions[index].checked_add(1) == Some(revisions[index + 1]) {
                run_ends[index] = run_ends[index + 1];
            }
        }
        Taken {
            revisions,
            run_ends,
        }
    }

    fn contains(&self, revision: u64) -> bool {
        self.revisions.binary_search(&revision).is_ok()
    }

    /// The first revision from `revision` on that is not taken.
    fn next_free(&self, revision: u64) -> u64 {
        match self.revisions.binary_search(&revision) {
            Ok(index) => self.run_ends[index].saturating_add(1),
            Err(_) => revision,
        }
    }
}

/// What is known about the key's `mod_revision`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revision {
    Known(u64),
    /// Set by a write whose reply was lost: at least `at_least`, and none of `excluded`
    /// (sorted, all `>= at_least`) nor of the taken revisions.
    Unknown {
        at_least: u64,
        excluded: Vec<u64>,
    },
}

impl Revision {
    /// Whether the revision can be `revision`.
    fn could_be(&self, revision: u64, taken: &Taken) -> bool {
        match self {
            Revision::Known(known) => *known == revision,
            Revision::Unknown { at_least, excluded } => {
                revision >= *at_least
                    && excluded.binary_search(&revision).is_err()
                    && !taken.contains(revision)
            }
        }
    }

    /// The smallest revision it can be.
    fn smallest(&self, taken: &Taken) -> u64 {
        match self {
            Revision::Known(known) => *known,
            Revision::Unknown { at_least, excluded } => {
                let mut candidate = *at_least;
                loop {
                    let mut next = taken.next_free(candidate);
                    while excluded.binary_search(&next).is_ok() {
                        next = next.saturating_add(1);
                    }
                    if next == candidate {
                        return candidate;
                    }
                    candidate = next;
                }
            }
        }
    }

    /// The same, knowing it is not `revision`.
    fn excluding(&self, revision: u64, taken: &Taken) -> Revision {
        match self {
            Revision::Unknown { at_least, excluded } if self.could_be(revision, taken) => {
                let mut excluded = excluded.clone();
                let at = excluded.partition_point(|&ruled_out| ruled_out < revision);
                excluded.insert(at, revision);
                Revision::Unknown {
                    at_least: *at_least,
                    excluded,
                }
            }
            _ => self.clone(),
        }
    }
}

/// One key's state: absent, or a value and its revision. Keys start absent (the chaos runner
/// uses keys no one wrote before).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KeyState(pub Option<(ValueId, Revision)>);

/// How a write ended, from the model's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteResult {
    /// Applied at this revision.
    Written(u64),
    /// A compare-and-set refused because the revision differed.
    Mismatch,
    /// The reply was lost: applied (at an unknown revision) or not at all. The checker may
    /// place such a write anywhere after its invoke, including after everything else, which is
    /// the same as never.
    Unknown,
}

/// An operation on one key with the result the client saw.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyOp {
    /// A put (`if_revision: None`) or a compare-and-set.
    Write {
        if_revision: Option<u64>,
        value: ValueId,
        result: WriteResult,
    },
    /// A get that returned this value and `mod_revision`, or nothing.
    Get { found: Option<(ValueId, u64)> },
}

impl KeyState {
    /// The smallest revision the key can have now; 0 when absent.
    fn floor(&self, taken: &Taken) -> u64 {
        self.0
            .as_ref()
            .map_or(0, |(_, revision)| revision.smallest(taken))
    }

    /// Whether the compare of a compare-and-set with `if_revision` can succeed.
    fn compare_could_succeed(&self, if_revision: u64, taken: &Taken) -> bool {
        match &self.0 {
            None => if_revision == 0,
            Some((_, revision)) => if_revision != 0 && revision.could_be(if_revision, taken),
        }
    }

    /// Whether the compare can fail.
    fn compare_could_fail(&self, if_revision: u64) -> bool {
        match &self.0 {
            None => if_revision != 0,
            Some((_, Revision::Known(known))) => *known != if_revision,
            // An unknown revision has infinitely many candidates, so one can always differ.
            Some((_, Revision::Unknown { .. })) => true,
        }
    }
}

/// Whether `op`, placed right after a lost write (one with [`WriteResult::Unknown`]) that
/// replaced the state `before`, may need that write to explain its result.
///
/// This lets the checker place a lost write only right before an operation that may use it
/// (or after everything, which is the same as never). Without the restriction a run with `k`
/// lost writes still pending makes the search try all `2^k` subsets of them before each later
/// read. Why nothing is lost, case by case, for an operation `o` right after the lost write `x`
/// in some valid order: if `o` is a put (acknowledged or lost), moving `x` to the very end gives
/// another valid order, because `x` only raised the revision `o` had to exceed (and any later
/// state's set of possible revisions only grows, which never rules out more); if `o` is a
/// refused compare-and-set whose compare would fail on `before` as well, swapping `o` and `x`
/// changes nothing, or only widens `x`'s possible revisions. (When `before`'s revision is
/// unknown, "would fail" must also not raise its smallest candidate, which only ruling out that
/// very candidate does; the checker otherwise pairs every pending lost write with every refused
/// compare-and-set around.) Each such move only pushes `x` later, so
/// repeating them ends in an order the restricted search also tries. A get of `x`'s value, a
/// compare-and-set that succeeds on `x`'s revision and a lost compare-and-set that applies on
/// it may all need `x`; a get of anything else cannot follow `x` at all.
pub fn may_use_lost_write(op: &KeyOp, before: &KeyState, taken: &Taken) -> bool {
    match op {
        KeyOp::Get { found } => found.is_some(),
        KeyOp::Write {
            if_revision: None, ..
        } => false,
        KeyOp::Write {
            if_revision: Some(_),
            result: WriteResult::Written(_) | WriteResult::Unknown,
            ..
        } => true,
        KeyOp::Write {
            if_revision: Some(expected),
            result: WriteResult::Mismatch,
            ..
        } => match &before.0 {
            None | Some((_, Revision::Known(_))) => before.compare_could_succeed(*expected, taken),
            Some((_, unknown)) => *expected == unknown.smallest(taken),
        },
    }
}

/// Applies `op` to `state`: the state afterwards, or `None` if the result the client saw is
/// impossible in this state.
pub fn step(state: &KeyState, op: &KeyOp, taken: &Taken) -> Option<KeyState> {
    match *op {
        KeyOp::Get { found: None } => state.0.is_none().then(|| state.clone()),
        KeyOp::Get {
            found: Some((value, revision)),
        } => match &state.0 {
            Some((current, known)) if *current == value && known.could_be(revision, taken) => {
                Some(KeyState(Some((value, Revision::Known(revision)))))
            }
            _ => None,
        },
        KeyOp::Write {
            if_revision,
            value,
            result: WriteResult::Written(revision),
        } => {
            if let Some(expected) = if_revision {
                if !state.compare_could_succeed(expected, taken) || revision <= expected {
                    return None;
                }
            } else if revision <= state.floor(taken) {
                // Revisions only grow.
                return None;
            }
            Some(KeyState(Some((value, Revision::Known(revision)))))
        }
        KeyOp::Write {
            if_revision,
            result: WriteResult::Mismatch,
            ..
        } => {
            // A put never reports a mismatch; the history validation rules that out, and the
            // model refuses it too rather than guess.
            let expected = if_revision?;
            if !state.compare_could_fail(expected) {
                return None;
            }
            Some(KeyState(state.0.as_ref().map(|(current, revision)| {
                (*current, revision.excluding(expected, taken))
            })))
        }
        KeyOp::Write {
            if_revision,
            value,
            result: WriteResult::Unknown,
        } => {
            let applies = match if_revision {
                None => true,
                Some(expected) => state.compare_could_succeed(expected, taken),
            };
            if !applies {
                // The compare failed, or the write never arrived: no effect. (If it could have
                // applied, not applying here is the same as placing it last, which the checker
                // also tries.)
                return Some(state.clone());
            }
            let at_least = match if_revision {
                Some(expected) => expected,
                None => state.floor(taken),
            }
            .saturating_add(1);
            Some(KeyState(Some((
                value,
                Revision::Unknown {
                    at_least,
                    excluded: Vec::new(),
                },
            ))))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn put(value: ValueId, revision: u64) -> KeyOp {
        KeyOp::Write {
            if_revision: None,
            value,
            result: WriteResult::Written(revision),
        }
    }

    fn cas(if_revision: u64, value: ValueId, result: WriteResult) -> KeyOp {
        KeyOp::Write {
            if_revision: Some(if_revision),
            value,
            result,
        }
    }

    fn get(found: Option<(ValueId, u64)>) -> KeyOp {
        KeyOp::Get { found }
    }

    fn run(ops: &[KeyOp]) -> Option<KeyState> {
        ops.iter().try_fold(KeyState::default(), |state, op| {
            step(&state, op, &Taken::default())
        })
    }

    #[test]
    fn puts_need_growing_revisions() {
        assert!(run(&[put(1, 3), put(2, 7), get(Some((2, 7)))]).is_some());
        assert!(run(&[put(1, 3), put(2, 3)]).is_none());
        assert!(run(&[put(1, 3), put(2, 2)]).is_none());
        assert!(run(&[put(1, 0)]).is_none());
    }

    #[test]
    fn gets_see_exactly_the_state() {
        assert!(run(&[get(None)]).is_some());
        assert!(run(&[put(1, 1), get(None)]).is_none());
        assert!(run(&[put(1, 1), get(Some((2, 1)))]).is_none());
        assert!(run(&[put(1, 1), get(Some((1, 2)))]).is_none());
    }

    #[test]
    fn compare_and_set_follows_mod_revision() {
        use WriteResult::*;
        assert!(
            run(&[
                cas(0, 1, Written(1)),
                cas(1, 2, Written(4)),
                get(Some((2, 4)))
            ])
            .is_some()
        );
        assert!(run(&[cas(0, 1, Mismatch)]).is_none());
        assert!(run(&[cas(5, 1, Mismatch), get(None)]).is_some());
        assert!(run(&[put(1, 1), cas(0, 2, Mismatch), cas(2, 2, Mismatch)]).is_some());
        assert!(run(&[put(1, 1), cas(1, 2, Mismatch)]).is_none());
        assert!(run(&[put(1, 1), cas(2, 2, Written(3))]).is_none());
        // The new revision must be greater than the compared one.
        assert!(run(&[put(1, 5), cas(5, 2, Written(5))]).is_none());
    }

    #[test]
    fn an_unknown_write_is_pinned_down_by_later_observations() {
        use WriteResult::*;
        let unknown_put = KeyOp::Write {
            if_revision: None,
            value: 1,
            result: Unknown,
        };
        // Its revision is at least one more than the previous one...
        assert!(run(&[put(9, 4), unknown_put.clone(), get(Some((1, 4)))]).is_none());
        assert!(run(&[put(9, 4), unknown_put.clone(), get(Some((1, 5)))]).is_some());
        // ...fixed by the first read that sees it...
        assert!(run(&[unknown_put.clone(), get(Some((1, 7))), get(Some((1, 8)))]).is_none());
        // ...or by a compare-and-set that succeeds on it...
        assert!(
            run(&[
                unknown_put.clone(),
                cas(7, 2, Written(9)),
                get(Some((2, 9)))
            ])
            .is_some()
        );
        // ...and a refused compare-and-set rules a revision out.
        assert!(run(&[unknown_put.clone(), cas(7, 2, Mismatch), get(Some((1, 7)))]).is_none());
        assert!(run(&[unknown_put.clone(), cas(7, 2, Mismatch), get(Some((1, 8)))]).is_some());
        // A later put needs room for the unknown revision below its own.
        assert!(run(&[put(9, 4), unknown_put.clone(), put(3, 5)]).is_none());
        assert!(run(&[put(9, 4), unknown_put.clone(), put(3, 6)]).is_some());
        assert!(
            run(&[
                put(9, 4),
                unknown_put.clone(),
                cas(5, 2, Mismatch),
                put(3, 6)
            ])
            .is_none()
        );
        // Overwritten unseen, it still counts.
        assert!(run(&[put(9, 4), unknown_put.clone(), unknown_put, put(3, 6)]).is_none());
    }

    #[test]
    fn an_unknown_compare_and_set_applies_only_if_it_could() {
        let unknown_cas = cas(1, 2, WriteResult::Unknown);
        let state = run(&[put(1, 1), unknown_cas.clone()]).unwrap();
        assert_eq!(
            state,
            KeyState(Some((
                2,
                Revision::Unknown {
                    at_least: 2,
                    excluded: vec![]
                }
            )))
        );
        let state = run(&[put(1, 3), unknown_cas]).unwrap();
        assert_eq!(state, KeyState(Some((1, Revision::Known(3)))));
    }

    #[test]
    fn a_lost_write_never_gets_a_taken_revision() {
        let taken = Taken::new(vec![1, 6]);
        let lost_put = KeyOp::Write {
            if_revision: None,
            value: 1,
            result: WriteResult::Unknown,
        };
        let after_put = step(&KeyState::default(), &put(9, 1), &taken).unwrap();
        let after_lost = step(&after_put, &lost_put, &taken).unwrap();
        // A compare-and-set naming a taken revision cannot apply on it...
        let lost_cas = cas(6, 2, WriteResult::Unknown);
        assert_eq!(step(&after_lost, &lost_cas, &taken).unwrap(), after_lost);
        assert!(step(&after_lost, &cas(6, 2, WriteResult::Written(7)), &taken).is_none());
        // ...nor can a read see it there.
        assert!(step(&after_lost, &get(Some((1, 6))), &taken).is_none());
        assert!(step(&after_lost, &get(Some((1, 7))), &taken).is_some());
        // And a later put needs room for it: 2 is free, so 3 will do.
        assert!(step(&after_lost, &put(3, 3), &taken).is_some());
        assert!(step(&after_lost, &put(3, 2), &taken).is_none());
    }

    #[test]
    fn lost_writes_are_needed_only_by_operations_that_could_use_them() {
        let none = Taken::default();
        let known = KeyState(Some((1, Revision::Known(4))));
        let unknown = KeyState(Some((
            1,
            Revision::Unknown {
                at_least: 4,
                excluded: vec![],
            },
        )));
        assert!(may_use_lost_write(&get(Some((2, 9))), &known, &none));
        assert!(!may_use_lost_write(&get(None), &known, &none));
        assert!(!may_use_lost_write(&put(2, 9), &known, &none));
        assert!(may_use_lost_write(
            &cas(9, 2, WriteResult::Written(10)),
            &known,
            &none
        ));
        // A refusal needs a lost write only if it would have matched without it.
        assert!(may_use_lost_write(
            &cas(4, 2, WriteResult::Mismatch),
            &known,
            &none
        ));
        assert!(!may_use_lost_write(
            &cas(3, 2, WriteResult::Mismatch),
            &known,
            &none
        ));
        assert!(may_use_lost_write(
            &cas(4, 2, WriteResult::Mismatch),
            &unknown,
            &none
        ));
        assert!(!may_use_lost_write(
            &cas(5, 2, WriteResult::Mismatch),
            &unknown,
            &none
        ));
        assert!(may_use_lost_write(
            &cas(0, 2, WriteResult::Mismatch),
            &KeyState(None),
            &none
        ));
    }

    #[test]
    fn smallest_skips_excluded_revisions() {
        let revision = Revision::Unknown {
            at_least: 3,
            excluded: vec![3, 4, 6],
        };
        let none = Taken::default();
        assert_eq!(revision.smallest(&none), 5);
        assert!(!revision.could_be(4, &none));
        assert!(revision.could_be(5, &none));
        assert_eq!(revision.excluding(5, &none).smallest(&none), 7);
        assert_eq!(revision.excluding(2, &none), revision);
        // Taken revisions are skipped too, runs of them in one step.
        let taken = Taken::new(vec![9, 5, 8, 7, 20]);
        assert_eq!(revision.smallest(&taken), 10);
        assert!(!revision.could_be(5, &taken));
        assert!(revision.could_be(10, &taken));
        assert_eq!(taken.next_free(7), 10);
        assert_eq!(taken.next_free(6), 6);
        assert_eq!(taken.next_free(20), 21);
    }
}
