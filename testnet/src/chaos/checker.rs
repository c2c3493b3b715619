//! Does a history have a linearization: one order of its operations that respects real time (an
//! operation that completed before another was invoked comes first) and in which every result is
//! what the sequential [`model`](super::model) would have returned?
//!
//! The search is Wing & Gong's, with Lowe's refinements as porcupine also uses them:
//! - per key (see the model's docs), so that each search is small;
//! - invoke and completion events in one time-ordered list; the next operation to place must be
//!   invoked before the earliest completion still in the list, and placing one unlinks both its
//!   events (undone on backtracking, dancing-links style);
//! - memoisation of (set of placed operations, model state): reaching a configuration already
//!   explored means its whole subtree already failed.
//!
//! Faults make histories much harder than that search expects, because a lost write (an
//! indeterminate outcome) has no completion: it may be placed anywhere after its invoke, or not
//! at all (the same as last), and a run under faults leaves hundreds pending at once. Three
//! reductions, each argued where it is implemented, keep the search near linear in practice
//! without changing any verdict (a brute-force cross-check in the tests holds them to that):
//! - a lost write is placed only right before an operation that may use it
//!   ([`model::may_use_lost_write`]), and the search stops as soon as every acknowledged
//!   operation is placed;
//! - lost puts of values no get returned are interchangeable, so only the earliest unplaced one
//!   is ever tried;
//! - a read or a refused compare-and-set that can go next without changing the state goes next,
//!   with no alternatives tried.
//!
//! The search is still exponential in the worst case, so each key has a step budget; running out
//! gives [`KeyResult::Unknown`], never a false verdict.
//!
//! On a violation, the failing key's history is cut to something a person can read: first the
//! shortest prefix in time that already fails (a prefix of a history is itself a history; those
//! in flight at the cut become lost writes, or are dropped if reads), then runs of operations and
//! single ones are dropped while it still fails. Every cut and drop is a weakening (see
//! `may_drop`), so the part is a witness: it fails only if the whole history does, and for the
//! same reason.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::history::{History, HistoryError, Op, OpRecord, OpResult, Outcome};
use super::model::{self, KeyOp, KeyState, Taken, ValueId, WriteResult};

/// Limits that keep a pathological history from running forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckConfig {
    /// Model steps tried per key before giving up with [`KeyResult::Unknown`]. The memo table
    /// grows by at most one entry per step (roughly 100 bytes plus one bit per operation of the
    /// key), so this also bounds memory.
    pub max_steps_per_key: u64,
    /// Model steps spent, in total, on cutting a failing key down to a minimal failing part; when
    /// they run out the smallest part found so far is reported.
    pub max_shrink_steps: u64,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            max_steps_per_key: 1_000_000,
            max_shrink_steps: 2_000_000,
        }
    }
}

/// The verdict on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyResult {
    Linearizable,
    NotLinearizable,
    Unknown { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVerdict {
    pub key: String,
    /// Operations on the key, of any outcome.
    pub ops: usize,
    /// Model steps the search took.
    pub steps: u64,
    pub result: KeyResult,
}

/// The verdict on the whole history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    Linearizable,
    /// The first failing key (in key order) and a small part of its history that already fails.
    NotLinearizable {
        key: String,
        minimal: Vec<OpRecord>,
    },
    /// No key failed, but at least one search ran out of budget.
    Unknown {
        reason: String,
    },
}

/// What the chaos runner prints, and writes out on a violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub ops_total: usize,
    pub ops_ok: usize,
    pub ops_failed: usize,
    pub ops_indeterminate: usize,
    /// One per key, in key order.
    pub keys: Vec<KeyVerdict>,
    pub result: CheckResult,
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        self.result == CheckResult::Linearizable
    }

    pub fn is_violation(&self) -> bool {
        matches!(self.result, CheckResult::NotLinearizable { .. })
    }

    /// The keys whose history is not linearizable.
    pub fn failed_keys(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .filter(|key| key.result == KeyResult::NotLinearizable)
            .map(|key| key.key.as_str())
    }
}

impl fmt::Display for Verdict {
    /// A few lines for people: the counts, the verdict and, on a violation, the minimal part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ops: {} done, {} ok, {} failed, {} indeterminate, on {} keys",
            self.ops_total,
            self.ops_ok,
            self.ops_failed,
            self.ops_indeterminate,
            self.keys.len()
        )?;
        match &self.result {
            CheckResult::Linearizable => write!(f, "verdict: linearizable"),
            CheckResult::Unknown { reason } => write!(f, "verdict: unknown ({reason})"),
            CheckResult::NotLinearizable { key, minimal } => {
                write!(
                    f,
                    "verdict: NOT linearizable ({} of {} keys failed); the first, {key:?}, fails with these {} operations:",
                    self.failed_keys().count(),
                    self.keys.len(),
                    minimal.len()
                )?;
                for record in minimal {
                    write!(f, "\n  {record}")?;
                }
                Ok(())
            }
        }
    }
}

/// The file a violating run leaves behind: the verdict (with the minimal failing part) and the
/// whole history, which [`check`] can judge again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationReport {
    pub verdict: Verdict,
    pub history: History,
}

impl ViolationReport {
    pub fn write_json(&self, path: &Path) -> Result<(), HistoryError> {
        let text = serde_json::to_string_pretty(self).map_err(|source| HistoryError::Json {
            context: "could not serialise the violation report".to_string(),
            source,
        })?;
        std::fs::write(path, text).map_err(|source| HistoryError::Io {
            context: format!("could not write {}", path.display()),
            source,
        })
    }

    pub fn read_json(path: &Path) -> Result<ViolationReport, HistoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Io {
            context: format!("could not read {}", path.display()),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| HistoryError::Json {
            context: format!("could not parse {}", path.display()),
            source,
        })
    }
}

/// Checks a whole history, key by key. Fails only if the history is malformed
/// ([`History::validate`]).
pub fn check(history: &History, config: &CheckConfig) -> Result<Verdict, HistoryError> {
    history.validate()?;
    let mut ordered: Vec<&OpRecord> = history.ops.iter().collect();
    ordered.sort_by_key(|record| (record.invoke_ns, record.id));
    let mut by_key: BTreeMap<&str, Vec<OpRecord>> = BTreeMap::new();
    for record in ordered {
        by_key
            .entry(record.op.key())
            .or_default()
            .push(record.clone());
    }

    let mut keys = Vec::with_capacity(by_key.len());
    let mut first_failure: Option<(&str, &[OpRecord])> = None;
    let mut gave_up = Vec::new();
    for (&key, records) in &by_key {
        let (search, steps) = search(&entries(records), config.max_steps_per_key);
        let result = match search {
            Search::Linearizable => KeyResult::Linearizable,
            Search::NotLinearizable => {
                first_failure.get_or_insert((key, records));
                KeyResult::NotLinearizable
            }
            Search::GaveUp => {
                gave_up.push(key);
                KeyResult::Unknown {
                    reason: format!("the search gave up after {steps} steps (max_steps_per_key)"),
                }
            }
        };
        keys.push(KeyVerdict {
            key: key.to_string(),
            ops: records.len(),
            steps,
            result,
        });
    }

    let result = if let Some((key, records)) = first_failure {
        CheckResult::NotLinearizable {
            key: key.to_string(),
            minimal: minimal_failing_part(records, config),
        }
    } else if gave_up.is_empty() {
        CheckResult::Linearizable
    } else {
        CheckResult::Unknown {
            reason: format!(
                "the search ran out of its budget of {} steps on {} key(s) ({}); none failed",
                config.max_steps_per_key,
                gave_up.len(),
                gave_up.join(", ")
            ),
        }
    };
    Ok(Verdict {
        ops_total: history.ops.len(),
        ops_ok: history.count_ok(),
        ops_failed: history.count_failed(),
        ops_indeterminate: history.count_indeterminate(),
        keys,
        result,
    })
}

fn intern<'a>(values: &mut HashMap<&'a str, ValueId>, value: &'a str) -> ValueId {
    let next = ValueId::try_from(values.len()).unwrap_or(ValueId::MAX);
    *values.entry(value).or_insert(next)
}

/// An operation as the search sees it.
#[derive(Debug)]
struct Entry {
    op: KeyOp,
    invoke: u64,
    /// `u64::MAX` for a lost write.
    complete: u64,
    /// Acknowledged: it must be placed, before its completion.
    acknowledged: bool,
    /// A lost put of a value no get returned (see `entries`).
    anonymous: bool,
}

/// The value of every lost put that no get returned. Such puts are interchangeable (they leave
/// the same state behind), so the search only ever tries the earliest one still unplaced.
const ANONYMOUS: ValueId = ValueId::MAX - 1;

/// One key's records as search entries: failed operations and lost reads dropped (they tell
/// nothing), lost writes without a completion, values interned.
fn entries(records: &[OpRecord]) -> Vec<Entry> {
    let mut values: HashMap<&str, ValueId> = HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let (if_revision, value) = match &record.op {
            Op::Put { value, .. } => (None, value.as_str()),
            Op::Cas {
                if_revision, value, ..
            } => (Some(*if_revision), value.as_str()),
            Op::Get { .. } => (None, ""),
        };
        let (op, acknowledged) = match (&record.op, &record.outcome) {
            (_, Outcome::Failed { .. }) | (Op::Get { .. }, Outcome::Indeterminate { .. }) => {
                continue;
            }
            (Op::Get { .. }, Outcome::Ok(OpResult::Read { found })) => (
                KeyOp::Get {
                    found: found
                        .as_ref()
                        .map(|read| (intern(&mut values, &read.value), read.mod_revision)),
                },
                true,
            ),
            (_, Outcome::Indeterminate { .. }) => (
                KeyOp::Write {
                    if_revision,
                    value: intern(&mut values, value),
                    result: WriteResult::Unknown,
                },
                false,
            ),
            (_, Outcome::Ok(OpResult::Written { revision })) => (
                KeyOp::Write {
                    if_revision,
                    value: intern(&mut values, value),
                    result: WriteResult::Written(*revision),
                },
                true,
            ),
            (_, Outcome::Ok(OpResult::Mismatch)) => (
                KeyOp::Write {
                    if_revision,
                    value: intern(&mut values, value),
                    result: WriteResult::Mismatch,
                },
                true,
            ),
            // A get answered like a write: `History::validate` rejects these.
            (_, Outcome::Ok(OpResult::Read { .. })) => continue,
        };
        out.push(Entry {
            op,
            invoke: record.invoke_ns,
            complete: if acknowledged {
                record.complete_ns
            } else {
                u64::MAX
            },
            acknowledged,
            anonymous: false,
        });
    }
    let read: std::collections::HashSet<ValueId> = out
        .iter()
        .filter_map(|entry| match entry.op {
            KeyOp::Get {
                found: Some((value, _)),
            } => Some(value),
            _ => None,
        })
        .collect();
    for entry in &mut out {
        if let KeyOp::Write {
            if_revision: None,
            value,
            result: WriteResult::Unknown,
        } = &mut entry.op
            && !read.contains(value)
        {
            *value = ANONYMOUS;
            entry.anonymous = true;
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    Linearizable,
    NotLinearizable,
    GaveUp,
}

const NONE: usize = usize::MAX;
const HEAD: usize = 0;

/// The time-ordered invoke and completion events as a doubly linked list over node indices,
/// node 0 being the head. Placing an operation unlinks its two nodes; backtracking relinks them
/// in reverse order, which restores the list exactly.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The entry a node belongs to, and whether it is its invoke.
    entry: Vec<usize>,
    is_invoke: Vec<bool>,
    invoke_node: Vec<usize>,
    complete_node: Vec<usize>,
}

impl Events {
    fn new(entries: &[Entry]) -> Events {
        // At equal times invokes go first, so touching intervals count as concurrent: the
        // lenient reading, as timestamps cannot order them.
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(entries.len() * 2);
        for (index, entry) in entries.iter().enumerate() {
            order.push((entry.invoke, false, index));
            order.push((entry.complete, true, index));
        }
        order.sort_unstable();
        let nodes = order.len() + 1;
        let mut events = Events {
            next: vec![NONE; nodes],
            prev: vec![NONE; nodes],
            entry: vec![0; nodes],
            is_invoke: vec![false; nodes],
            invoke_node: vec![0; entries.len()],
            complete_node: vec![0; entries.len()],
        };
        for (position, &(_, is_completion, index)) in order.iter().enumerate() {
            let node = position + 1;
            events.prev[node] = position;
            events.next[position] = node;
            events.entry[node] = index;
            events.is_invoke[node] = !is_completion;
            if is_completion {
                events.complete_node[index] = node;
            } else {
                events.invoke_node[index] = node;
            }
        }
        events
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NONE {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NONE {
            self.prev[next] = node;
        }
    }

    /// An acknowledged read or refused compare-and-set that can be placed now (invoked before
    /// the earliest completion still in the list) and leaves `state` exactly as it is.
    fn harmless(&self, entries: &[Entry], state: &KeyState, taken: &Taken) -> Option<usize> {
        let mut node = self.next[HEAD];
        while node != NONE && self.is_invoke[node] {
            let index = self.entry[node];
            let entry = &entries[index];
            let read_only = matches!(
                entry.op,
                KeyOp::Get { .. }
                    | KeyOp::Write {
                        result: WriteResult::Mismatch,
                        ..
                    }
            );
            if entry.acknowledged
                && read_only
                && model::step(state, &entry.op, taken).is_some_and(|next| next == *state)
            {
                return Some(index);
            }
            node = self.next[node];
        }
        None
    }

    fn lift(&mut self, entry: usize) {
        self.unlink(self.invoke_node[entry]);
        self.unlink(self.complete_node[entry]);
    }

    fn unlift(&mut self, entry: usize) {
        self.relink(self.complete_node[entry]);
        self.relink(self.invoke_node[entry]);
    }
}

/// A placed operation, with what to restore when it is taken back.
struct Frame {
    entry: usize,
    state: KeyState,
    pending_lost: Option<usize>,
    /// Placed without alternatives (see `Events::harmless`).
    forced: bool,
}

/// The memo table: for each set of placed operations, the (state, pending lost write) pairs
/// already explored from it.
type Seen = HashMap<Box<[u64]>, Vec<(KeyState, Option<usize>)>>;

/// Records a configuration; false if it was already there.
fn remember(seen: &mut Seen, placed: &[u64], state: &KeyState, pending: Option<usize>) -> bool {
    match seen.get_mut(placed) {
        Some(known) => {
            if known.iter().any(|(s, p)| s == state && *p == pending) {
                false
            } else {
                known.push((state.clone(), pending));
                true
            }
        }
        None => {
            seen.insert(placed.into(), vec![(state.clone(), pending)]);
            true
        }
    }
}

fn toggle(bits: &mut [u64], index: usize) {
    bits[index / 64] ^= 1 << (index % 64);
}

/// The depth-first search for a linearization of one key's entries, and the steps it took.
fn search(entries: &[Entry], budget: u64) -> (Search, u64) {
    let mut unplaced_acknowledged = entries.iter().filter(|entry| entry.acknowledged).count();
    if unplaced_acknowledged == 0 {
        return (Search::Linearizable, 0);
    }
    let taken = Taken::new(
        entries
            .iter()
            .filter_map(|entry| match entry.op {
                KeyOp::Write {
                    result: WriteResult::Written(revision),
                    ..
                } => Some(revision),
                _ => None,
            })
            .collect(),
    );
    let mut events = Events::new(entries);
    let mut placed = vec![0u64; entries.len().div_ceil(64)].into_boxed_slice();
    let mut state = KeyState::default();
    // A lost write placed last, which the next placed operation must be able to use.
    let mut pending_lost: Option<usize> = None;
    let mut stack: Vec<Frame> = Vec::new();
    let mut seen = Seen::new();
    let mut steps = 0u64;
    let mut node = events.next[HEAD];
    // Who could use a lost write placed at this point; computed when first needed, dropped
    // whenever the state or the list changes.
    let mut lookahead: Option<Lookahead> = None;
    // Whether the search just arrived at a new configuration (rather than came back to it).
    let mut arrived = true;
    // The unplaced anonymous lost puts, earliest first: only the first is ever a candidate.
    let mut anonymous: std::collections::BTreeSet<(u64, usize)> = entries
        .iter()
        .enumerate()
        .filter(|(_, entry)| entry.anonymous)
        .map(|(index, entry)| (entry.invoke, index))
        .collect();

    while unplaced_acknowledged > 0 {
        if arrived && pending_lost.is_none() {
            arrived = false;
            // An operation that can go next and leaves the state exactly as it is (a read, a
            // refused compare-and-set) goes next, without trying alternatives: in any order
            // that works from here it can be moved to the front, since it changes nothing for
            // what it then precedes. Reads and refusals no longer multiply the search by all
            // the orders in which they could interleave.
            if let Some(index) = events.harmless(entries, &state, &taken) {
                if steps >= budget {
                    return (Search::GaveUp, steps);
                }
                steps += 1;
                toggle(&mut placed, index);
                if remember(&mut seen, &placed, &state, None) {
                    stack.push(Frame {
                        entry: index,
                        state: state.clone(),
                        pending_lost: None,
                        forced: true,
                    });
                    events.lift(index);
                    unplaced_acknowledged -= 1;
                    lookahead = None;
                    arrived = true;
                    node = events.next[HEAD];
                } else {
                    // Explored before and failed, so this configuration fails too.
                    toggle(&mut placed, index);
                    node = NONE;
                }
                continue;
            }
        }
        if node == NONE || !events.is_invoke[node] {
            // The earliest completion still in the list: everything placed from here on would
            // come after it, so its operation had to be placed already. Take back the last
            // choice and try the next candidate after it.
            let Some(frame) = stack.pop() else {
                return (Search::NotLinearizable, steps);
            };
            toggle(&mut placed, frame.entry);
            events.unlift(frame.entry);
            let undone = &entries[frame.entry];
            if undone.acknowledged {
                unplaced_acknowledged += 1;
            }
            if undone.anonymous {
                anonymous.insert((undone.invoke, frame.entry));
            }
            state = frame.state;
            pending_lost = frame.pending_lost;
            lookahead = None;
            // A forced placement had no alternatives: keep backtracking.
            node = if frame.forced {
                NONE
            } else {
                events.next[events.invoke_node[frame.entry]]
            };
            continue;
        }

        let index = events.entry[node];
        let entry = &entries[index];
        node = events.next[node];
        let allowed = match (pending_lost, stack.last()) {
            (Some(_), Some(frame)) => model::may_use_lost_write(&entry.op, &frame.state, &taken),
            _ => true,
        };
        if !allowed {
            continue;
        }
        // A lost write goes in only if something that can be placed right after it may use it
        // (see `model::may_use_lost_write`). Those that cannot are skipped without counting a
        // step: they are cheap, and at most one per pending lost write per placement.
        let lost_put = match entry.op {
            KeyOp::Write {
                if_revision: None,
                value,
                result: WriteResult::Unknown,
            } => Some(value),
            _ => None,
        };
        if entry.anonymous && anonymous.first() != Some(&(entry.invoke, index)) {
            continue;
        }
        if let Some(value) = lost_put {
            let users =
                lookahead.get_or_insert_with(|| Lookahead::new(&events, entries, &state, &taken));
            if !users.any_put && !users.put_values.contains(&value) {
                continue;
            }
        }
        if steps >= budget {
            return (Search::GaveUp, steps);
        }
        let Some(next_state) = model::step(&state, &entry.op, &taken) else {
            steps += 1;
            continue;
        };
        if !entry.acknowledged && lost_put.is_none() {
            // A lost compare-and-set with no effect here is the same as one placed last.
            if next_state == state {
                continue;
            }
            let users =
                lookahead.get_or_insert_with(|| Lookahead::new(&events, entries, &state, &taken));
            if !users.may_follow(index, &next_state, entries, &state, &taken) {
                continue;
            }
        }
        steps += 1;
        let next_pending = (!entry.acknowledged).then_some(index);
        toggle(&mut placed, index);
        if remember(&mut seen, &placed, &next_state, next_pending) {
            stack.push(Frame {
                entry: index,
                state: std::mem::replace(&mut state, next_state),
                pending_lost: std::mem::replace(&mut pending_lost, next_pending),
                forced: false,
            });
            events.lift(index);
            if entry.acknowledged {
                unplaced_acknowledged -= 1;
            }
            if entry.anonymous {
                anonymous.remove(&(entry.invoke, index));
            }
            lookahead = None;
            arrived = true;
            node = events.next[HEAD];
        } else {
            toggle(&mut placed, index);
        }
    }
    (Search::Linearizable, steps)
}

/// The operations that could be placed right after a lost write at the current point of the
/// search, and what that means for lost puts, which all leave the same revision behind.
struct Lookahead {
    /// Candidates that may use a lost write: acknowledged operations and lost
    /// compare-and-sets invoked before the earliest completion still in the list.
    window: Vec<usize>,
    /// Whether some candidate other than a get may use a lost put placed now.
    any_put: bool,
    /// The values of lost puts a candidate get would accept if placed now.
    put_values: Vec<ValueId>,
}

impl Lookahead {
    fn new(events: &Events, entries: &[Entry], state: &KeyState, taken: &Taken) -> Lookahead {
        let mut window = Vec::new();
        let mut node = events.next[HEAD];
        while node != NONE && events.is_invoke[node] {
            let index = events.entry[node];
            let entry = &entries[index];
            let lost_cas = matches!(
                entry.op,
                KeyOp::Write {
                    if_revision: Some(_),
                    result: WriteResult::Unknown,
                    ..
                }
            );
            if entry.acknowledged || lost_cas {
                window.push(index);
            }
            node = events.next[node];
        }
        // What any lost put placed now leaves: its value (a placeholder here) at a revision
        // just above the current one.
        let lost_put = KeyOp::Write {
            if_revision: None,
            value: ValueId::MAX,
            result: WriteResult::Unknown,
        };
        let mut any_put = false;
        let mut put_values = Vec::new();
        if let Some(KeyState(Some((_, revision)))) = model::step(state, &lost_put, taken) {
            for &index in &window {
                let op = &entries[index].op;
                match *op {
                    KeyOp::Get {
                        found: Some((value, _)),
                    } => {
                        let after = KeyState(Some((value, revision.clone())));
                        if model::step(&after, op, taken).is_some() {
                            put_values.push(value);
                        }
                    }
                    _ => {
                        let after = KeyState(Some((ValueId::MAX, revision.clone())));
                        any_put = any_put
                            || Self::uses(op, entries[index].acknowledged, state, &after, taken);
                    }
                }
            }
        }
        Lookahead {
            window,
            any_put,
            put_values,
        }
    }

    /// Whether `op` (acknowledged or not), placed right after a lost write that turned `before`
    /// into `after`, may use it.
    fn uses(
        op: &KeyOp,
        acknowledged: bool,
        before: &KeyState,
        after: &KeyState,
        taken: &Taken,
    ) -> bool {
        model::may_use_lost_write(op, before, taken)
            && model::step(after, op, taken).is_some_and(|next| acknowledged || next != *after)
    }

    /// Whether the lost write `lost`, which would turn `before` into `after`, may be used by
    /// something placed right after it.
    fn may_follow(
        &self,
        lost: usize,
        after: &KeyState,
        entries: &[Entry],
        before: &KeyState,
        taken: &Taken,
    ) -> bool {
        self.window.iter().any(|&index| {
            index != lost
                && Self::uses(
                    &entries[index].op,
                    entries[index].acknowledged,
                    before,
                    after,
                    taken,
                )
        })
    }
}

/// Cuts a failing key's records (in invoke order) down to a small part that still fails.
fn minimal_failing_part(records: &[OpRecord], config: &CheckConfig) -> Vec<OpRecord> {
    let mut budget = config.max_shrink_steps;
    let mut fails = |part: &[OpRecord]| -> Option<bool> {
        let (search, steps) = search(&entries(part), budget.min(config.max_steps_per_key));
        budget = budget.saturating_sub(steps);
        match search {
            Search::NotLinearizable => Some(true),
            Search::Linearizable => Some(false),
            Search::GaveUp => None,
        }
    };

    // The shortest failing prefix in time. A violation shows at some completion (a result that
    // cannot be explained), so only cuts at completions of acknowledged operations matter; and
    // once a prefix fails every longer one does, so binary search finds the first.
    let mut cuts: Vec<u64> = records
        .iter()
        .filter(|record| matches!(record.outcome, Outcome::Ok(_)))
        .map(|record| record.complete_ns)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let (mut low, mut high) = (0, cuts.len());
    while low < high {
        let middle = low + (high - low) / 2;
        match fails(&prefix(records, cuts[middle])) {
            Some(true) => high = middle,
            Some(false) => low = middle + 1,
            None => break,
        }
    }
    let mut part = match cuts.get(high) {
        Some(&cut) => prefix(records, cut),
        None => prefix(records, u64::MAX),
    };

    // Then drop runs of operations, halving the run length, and single ones until nothing more
    // can go.
    let mut run = (part.len() / 2).max(1);
    loop {
        let mut dropped_any = false;
        let mut start = 0;
        while start < part.len() {
            let end = (start + run).min(part.len());
            if may_drop(&part, start..end) {
                let candidate: Vec<OpRecord> =
                    part[..start].iter().chain(&part[end..]).cloned().collect();
                match fails(&candidate) {
                    Some(true) => {
                        part = candidate;
                        dropped_any = true;
                        continue;
                    }
                    Some(false) => {}
                    None => return part,
                }
            }
            start = end;
        }
        if run > 1 {
            run /= 2;
        } else if !dropped_any {
            return part;
        }
    }
}

/// The history as it stood at time `cut`: operations invoked by then, those completed by then
/// with their results, writes still in flight as lost, reads still in flight and failed
/// operations dropped.
fn prefix(records: &[OpRecord], cut: u64) -> Vec<OpRecord> {
    records
        .iter()
        .filter(|record| record.invoke_ns <= cut)
        .filter_map(|record| match &record.outcome {
            Outcome::Failed { .. } => None,
            Outcome::Ok(_) if record.complete_ns <= cut => Some(record.clone()),
            Outcome::Indeterminate { .. } if record.op.is_write() => Some(record.clone()),
            Outcome::Ok(_) if record.op.is_write() => Some(OpRecord {
                outcome: Outcome::Indeterminate {
                    reason: format!(
                        "treated as in flight: completed after {cut} ns, where the failing part ends"
                    ),
                },
                ..record.clone()
            }),
            Outcome::Ok(_) | Outcome::Indeterminate { .. } => None,
        })
        .collect()
}

/// Whether the operations in `range` may be dropped while shrinking. Only drops that keep the
/// part a *weakening* of the history are allowed: any linearization of the history, minus the
/// dropped operations, must still be one of the part. Then a failing part proves that the history
/// fails, for the reasons the part shows (a write dropped from under a read would fail with a
/// made-up "value never written" instead).
///
/// Reads and refused compare-and-sets change nothing, so they can always go. A write can go if no
/// operation that stays may have needed it: a read of its value or revision; an acknowledged
/// compare-and-set that may come after it and was refused (perhaps because of this write), or
/// succeeded on its revision (any revision, for a lost write, whose revision is open); or a lost
/// compare-and-set that may have applied on it and whose own effect was seen ([`observed`]).
/// Then, in a linearization without the write, what followed it sees a state it accepts just as
/// well, a lost compare-and-set that had applied on it is simply placed last, and the next write
/// only has a lower revision to exceed.
fn may_drop(part: &[OpRecord], range: Range<usize>) -> bool {
    struct Dropped<'a> {
        value: &'a str,
        invoke: u64,
        /// `None` for a lost write.
        revision: Option<u64>,
    }
    let dropped: Vec<Dropped<'_>> = part[range.clone()]
        .iter()
        .filter_map(|record| {
            let revision = match record.outcome {
                Outcome::Ok(OpResult::Written { revision }) => Some(revision),
                Outcome::Indeterminate { .. } => None,
                Outcome::Ok(_) | Outcome::Failed { .. } => return None,
            };
            Some(Dropped {
                value: written_value(&record.op)?,
                invoke: record.invoke_ns,
                revision,
            })
        })
        .collect();
    if dropped.is_empty() {
        return true;
    }
    let kept: Vec<&OpRecord> = part[..range.start]
        .iter()
        .chain(&part[range.end..])
        .collect();
    let earliest = dropped.iter().map(|write| write.invoke).min().unwrap_or(0);
    let observed = observed(&kept, earliest);
    kept.iter().zip(observed).all(|(record, observed)| {
        !dropped.iter().any(|write| {
            let after = effective_completion(record) > write.invoke;
            let on_its_revision =
                |if_revision: u64| write.revision.is_none_or(|r| r == if_revision);
            match (&record.op, &record.outcome) {
                (Op::Get { .. }, Outcome::Ok(OpResult::Read { found: Some(read) })) => {
                    read.value == write.value || Some(read.mod_revision) == write.revision
                }
                (Op::Cas { if_revision, .. }, outcome) if after => match outcome {
                    Outcome::Ok(OpResult::Mismatch) => true,
                    Outcome::Ok(OpResult::Written { .. }) => on_its_revision(*if_revision),
                    Outcome::Indeterminate { .. } => observed && on_its_revision(*if_revision),
                    Outcome::Ok(OpResult::Read { .. }) | Outcome::Failed { .. } => false,
                },
                _ => false,
            }
        })
    })
}

/// For each record, whether it is a lost compare-and-set whose effect, had it applied after
/// `since`, may have been seen: a read of its value, an acknowledged compare-and-set (on its
/// revision, or refused because of it), or another such lost compare-and-set may come after it
/// and after `since`. Computed to a fixed point, as that last case chains.
fn observed(records: &[&OpRecord], since: u64) -> Vec<bool> {
    let lost_cas = |record: &OpRecord| {
        matches!(record.op, Op::Cas { .. })
            && matches!(record.outcome, Outcome::Indeterminate { .. })
    };
    let mut observed = vec![false; records.len()];
    loop {
        let mut changed = false;
        for (index, cas) in records.iter().enumerate() {
            if observed[index] || !lost_cas(cas) {
                continue;
            }
            let value = written_value(&cas.op);
            let from = cas.invoke_ns.max(since);
            let seen = records.iter().enumerate().any(|(other, record)| {
                other != index
                    && effective_completion(record) > from
                    && match (&record.op, &record.outcome) {
                        (Op::Get { .. }, Outcome::Ok(OpResult::Read { found: Some(read) })) => {
                            Some(read.value.as_str()) == value
                        }
                        (Op::Cas { .. }, Outcome::Ok(_)) => true,
                        (Op::Cas { .. }, Outcome::Indeterminate { .. }) => observed[other],
                        _ => false,
                    }
            });
            if seen {
                observed[index] = true;
                changed = true;
            }
        }
        if !changed {
            return observed;
        }
    }
}

fn written_value(op: &Op) -> Option<&str> {
    match op {
        Op::Put { value, .. } | Op::Cas { value, .. } => Some(value),
        Op::Get { .. } => None,
    }
}

/// When an operation completed, as the search sees it: never, for a lost one.
fn effective_completion(record: &OpRecord) -> u64 {
    match record.outcome {
        Outcome::Indeterminate { .. } => u64::MAX,
        _ => record.complete_ns,
    }
}
