//! The checker against histories whose verdict is known: hand-written good and bad ones, and
//! random ones generated from a real sequential execution (linearizable by construction) and
//! then broken on purpose.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Instant;

use super::*;
use crate::splitmix::SplitMix64;

const KEY: &str = "k";

/// Builds histories by hand. Ids are given in the order operations are added.
#[derive(Default)]
struct Builder {
    ops: Vec<OpRecord>,
}

impl Builder {
    fn add(&mut self, client: ClientId, op: Op, span: (u64, u64), outcome: Outcome) -> u64 {
        let id = self.ops.len() as u64;
        self.ops.push(OpRecord {
            id,
            client,
            op,
            invoke_ns: span.0,
            complete_ns: span.1,
            outcome,
        });
        id
    }

    fn put_on(&mut self, key: &str, value: &str, span: (u64, u64), revision: u64) -> u64 {
        let op = Op::Put {
            key: key.into(),
            value: value.into(),
        };
        self.add(0, op, span, Outcome::Ok(OpResult::Written { revision }))
    }

    fn put(&mut self, value: &str, span: (u64, u64), revision: u64) -> u64 {
        self.put_on(KEY, value, span, revision)
    }

    fn lost_put(&mut self, value: &str, span: (u64, u64)) -> u64 {
        let op = Op::Put {
            key: KEY.into(),
            value: value.into(),
        };
        let outcome = Outcome::Indeterminate {
            reason: "timed out".into(),
        };
        self.add(0, op, span, outcome)
    }

    fn failed_put(&mut self, value: &str, span: (u64, u64)) -> u64 {
        let op = Op::Put {
            key: KEY.into(),
            value: value.into(),
        };
        let outcome = Outcome::Failed {
            reason: "no leader".into(),
        };
        self.add(0, op, span, outcome)
    }

    fn get_on(&mut self, key: &str, span: (u64, u64), found: Option<(&str, u64)>) -> u64 {
        let found = found.map(|(value, mod_revision)| ReadValue {
            value: value.into(),
            mod_revision,
        });
        let op = Op::Get { key: key.into() };
        self.add(0, op, span, Outcome::Ok(OpResult::Read { found }))
    }

    fn get(&mut self, span: (u64, u64), found: Option<(&str, u64)>) -> u64 {
        self.get_on(KEY, span, found)
    }

    /// `written`: `Some(revision)` if applied, `None` if refused with a mismatch.
    fn cas(
        &mut self,
        if_revision: u64,
        value: &str,
        span: (u64, u64),
        written: Option<u64>,
    ) -> u64 {
        let op = Op::Cas {
            key: KEY.into(),
            if_revision,
            value: value.into(),
        };
        let result = match written {
            Some(revision) => OpResult::Written { revision },
            None => OpResult::Mismatch,
        };
        self.add(0, op, span, Outcome::Ok(result))
    }

    fn lost_cas(&mut self, if_revision: u64, value: &str, span: (u64, u64)) -> u64 {
        let op = Op::Cas {
            key: KEY.into(),
            if_revision,
            value: value.into(),
        };
        let outcome = Outcome::Indeterminate {
            reason: "connection lost".into(),
        };
        self.add(0, op, span, outcome)
    }

    fn history(&self) -> History {
        History {
            ops: self.ops.clone(),
        }
    }

    fn verdict(&self) -> Verdict {
        check(&self.history(), &CheckConfig::default()).unwrap()
    }
}

fn assert_linearizable(builder: &Builder) {
    let verdict = builder.verdict();
    assert!(verdict.is_linearizable(), "{verdict}");
}

/// Asserts a violation and returns the ids of the minimal failing part.
fn assert_violation(builder: &Builder) -> Vec<u64> {
    let verdict = builder.verdict();
    match &verdict.result {
        CheckResult::NotLinearizable { minimal, .. } => {
            let part = History {
                ops: minimal.clone(),
            };
            // The part is itself a failing history.
            assert!(
                check(&part, &CheckConfig::default())
                    .unwrap()
                    .is_violation()
            );
            minimal.iter().map(|record| record.id).collect()
        }
        _ => panic!("expected a violation, got:\n{verdict}"),
    }
}

// Known-good histories.

#[test]
fn empty_and_read_only_histories_are_linearizable() {
    assert_linearizable(&Builder::default());
    let mut b = Builder::default();
    b.get((0, 1), None);
    b.get((0, 3), None);
    assert_linearizable(&b);
}

#[test]
fn sequential_history() {
    let mut b = Builder::default();
    b.get((0, 1), None);
    b.put("a", (2, 3), 1);
    b.get((4, 5), Some(("a", 1)));
    b.put("b", (6, 7), 5);
    b.get((8, 9), Some(("b", 5)));
    assert_linearizable(&b);
}

#[test]
fn overlapping_writes_in_either_order() {
    // Both orders are possible; the revisions and the later read decide which happened.
    for (a_revision, b_revision, seen) in [(1, 2, ("b", 2)), (2, 1, ("a", 2))] {
        let mut b = Builder::default();
        b.put("a", (0, 10), a_revision);
        b.put("b", (1, 9), b_revision);
        b.get((11, 12), Some(seen));
        assert_linearizable(&b);
    }
}

#[test]
fn a_read_concurrent_with_a_write_sees_either_value() {
    for seen in [("a", 1), ("b", 2)] {
        let mut b = Builder::default();
        b.put("a", (0, 1), 1);
        b.put("b", (10, 20), 2);
        b.get((12, 18), Some(seen));
        b.get((21, 22), Some(("b", 2)));
        assert_linearizable(&b);
    }
}

#[test]
fn a_lost_write_may_or_may_not_have_taken_effect() {
    // It did.
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.lost_put("b", (2, 3));
    b.get((4, 5), Some(("b", 7)));
    assert_linearizable(&b);
    // It did not.
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.lost_put("b", (2, 3));
    b.get((4, 5), Some(("a", 1)));
    b.get((6, 7), Some(("a", 1)));
    assert_linearizable(&b);
    // It did, long after the client gave up.
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.lost_put("b", (2, 3));
    b.get((10, 11), Some(("a", 1)));
    b.get((20, 21), Some(("b", 4)));
    assert_linearizable(&b);
}

#[test]
fn compare_and_set_chains() {
    let mut b = Builder::default();
    b.cas(0, "a", (0, 1), Some(3));
    b.cas(3, "b", (2, 3), Some(4));
    b.cas(3, "x", (4, 5), None);
    b.cas(0, "y", (6, 7), None);
    b.cas(4, "c", (8, 9), Some(9));
    b.get((10, 11), Some(("c", 9)));
    assert_linearizable(&b);
    // Two concurrent compare-and-sets on the same revision: one wins.
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.cas(1, "b", (2, 10), Some(2));
    b.cas(1, "c", (3, 9), None);
    b.get((11, 12), Some(("b", 2)));
    assert_linearizable(&b);
}

#[test]
fn compare_and_set_on_the_revision_a_lost_write_got() {
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.lost_put("b", (2, 3));
    b.get((4, 5), Some(("b", 6)));
    b.cas(6, "c", (6, 7), Some(8));
    b.get((9, 10), Some(("c", 8)));
    assert_linearizable(&b);
}

#[test]
fn a_lost_write_can_explain_a_refused_compare_and_set() {
    // Only the lost write between the put and the compare-and-set explains the refusal.
    let mut b = Builder::default();
    b.put("a", (0, 1), 5);
    b.lost_put("b", (2, 3));
    b.cas(5, "c", (4, 5), None);
    b.put("d", (6, 7), 10);
    assert_linearizable(&b);
    // Without it, the refusal is a violation.
    let mut b = Builder::default();
    b.put("a", (0, 1), 5);
    b.cas(5, "c", (4, 5), None);
    assert_violation(&b);
}

#[test]
fn a_lost_compare_and_set_may_apply() {
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.lost_cas(1, "b", (2, 3));
    b.get((4, 5), Some(("b", 3)));
    assert_linearizable(&b);
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.lost_cas(1, "b", (2, 3));
    b.get((4, 5), Some(("a", 1)));
    assert_linearizable(&b);
    // But not on a revision the key never had at the time.
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.lost_cas(7, "b", (2, 3));
    b.get((4, 5), Some(("b", 9)));
    assert_violation(&b);
}

#[test]
fn failed_operations_never_happened() {
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.failed_put("b", (2, 3));
    b.get((4, 5), Some(("a", 1)));
    assert_linearizable(&b);
    // So reading what a failed put wrote is a violation.
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.failed_put("b", (2, 3));
    b.get((4, 5), Some(("b", 2)));
    assert_violation(&b);
}

#[test]
fn many_pending_lost_writes_stay_cheap() {
    // Forty lost writes that never took effect, all pending for the rest of the history,
    // while reads keep seeing older values: a naive search tries their 2^40 subsets.
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    for n in 0..40 {
        b.lost_put(&format!("lost{n}"), (2 + n, 3 + n));
    }
    let mut current = ("a".to_string(), 1);
    for n in 0..50 {
        let t = 100 + 10 * n;
        b.get((t, t + 1), Some((&current.0, current.1)));
        current = (format!("w{n}"), current.1 + 2);
        b.put(&current.0, (t + 2, t + 3), current.1);
        b.get((t + 4, t + 5), Some((&current.0, current.1)));
    }
    let config = CheckConfig {
        max_steps_per_key: 200_000,
        ..CheckConfig::default()
    };
    let verdict = check(&b.history(), &config).unwrap();
    assert!(verdict.is_linearizable(), "{verdict}");
}

// Known-bad histories.

#[test]
fn a_stale_read_after_a_completed_write() {
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.put("b", (2, 3), 2);
    b.get((4, 5), Some(("a", 1)));
    assert_violation(&b);
}

#[test]
fn a_lost_acknowledged_write() {
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.get((2, 3), None);
    assert_violation(&b);
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.put("b", (2, 3), 2);
    b.put("c", (4, 5), 3);
    b.get((6, 7), Some(("b", 2)));
    assert_violation(&b);
}

#[test]
fn a_read_of_a_value_never_written() {
    let mut b = Builder::default();
    b.put("a", (0, 10), 1);
    b.get((2, 3), Some(("z", 1)));
    assert_violation(&b);
}

#[test]
fn compare_and_set_succeeding_twice_on_one_revision() {
    for second in [(4, 5), (3, 9)] {
        let mut b = Builder::default();
        b.put("a", (0, 1), 1);
        b.cas(1, "b", (2, 3), Some(2));
        b.cas(1, "c", second, Some(3));
        assert_violation(&b);
    }
    // Concurrent, both from an absent key.
    let mut b = Builder::default();
    b.cas(0, "b", (0, 10), Some(2));
    b.cas(0, "c", (1, 9), Some(3));
    assert_violation(&b);
}

#[test]
fn a_refused_compare_and_set_that_should_have_matched() {
    let mut b = Builder::default();
    b.put("a", (0, 1), 4);
    b.cas(4, "b", (2, 3), None);
    assert_violation(&b);
}

#[test]
fn revisions_going_backwards() {
    let mut b = Builder::default();
    b.put("a", (0, 1), 5);
    b.put("b", (2, 3), 3);
    assert_violation(&b);
    // Or a read with the right value at the wrong revision.
    let mut b = Builder::default();
    b.put("a", (0, 1), 5);
    b.get((2, 3), Some(("a", 4)));
    assert_violation(&b);
    // Or a read returning a revision after a later one.
    let mut b = Builder::default();
    b.lost_put("a", (0, 1));
    b.get((2, 3), Some(("a", 7)));
    b.get((4, 5), Some(("a", 6)));
    assert_violation(&b);
}

// The verdict, the minimal failing part and the budget.

#[test]
fn the_minimal_part_is_cut_from_a_long_history() {
    let mut b = Builder::default();
    let mut revision = 0;
    let mut t = 0;
    // A long healthy stretch...
    for n in 0..100 {
        revision += 1;
        b.put(&format!("v{n}"), (t, t + 5), revision);
        b.get((t + 6, t + 7), Some((&format!("v{n}"), revision)));
        t += 10;
    }
    // ...then a stale read...
    let old = b.put("old", (t, t + 1), revision + 1);
    let new = b.put("new", (t + 2, t + 3), revision + 2);
    b.get((t + 4, t + 6), Some(("new", revision + 2)));
    let stale = b.get((t + 5, t + 7), Some(("old", revision + 1)));
    revision += 2;
    // ...and more afterwards.
    for n in 0..50 {
        t += 10;
        revision += 1;
        b.put(&format!("after{n}"), (t, t + 5), revision);
    }
    let mut ids = assert_violation(&b);
    ids.sort_unstable();
    assert_eq!(ids, vec![old, new, stale]);
}

#[test]
fn a_read_of_a_value_never_written_is_its_own_minimal_part() {
    let mut b = Builder::default();
    for n in 0..20 {
        b.put(&format!("v{n}"), (n * 10, n * 10 + 5), n + 1);
    }
    let bad = b.get((300, 301), Some(("ghost", 1000)));
    b.put("later", (310, 311), 30);
    assert_eq!(assert_violation(&b), vec![bad]);
}

#[test]
fn keys_are_judged_separately() {
    let mut b = Builder::default();
    b.put_on("good", "a", (0, 1), 1);
    b.get_on("good", (2, 3), Some(("a", 1)));
    b.put_on("bad", "a", (0, 1), 2);
    b.get_on("bad", (2, 3), None);
    b.failed_put("x", (4, 5));
    b.lost_put("y", (4, 5));
    let verdict = b.verdict();
    assert_eq!(
        (
            verdict.ops_total,
            verdict.ops_ok,
            verdict.ops_failed,
            verdict.ops_indeterminate
        ),
        (6, 4, 1, 1)
    );
    let results: Vec<(&str, &KeyResult)> = verdict
        .keys
        .iter()
        .map(|key| (key.key.as_str(), &key.result))
        .collect();
    assert_eq!(
        results,
        vec![
            ("bad", &KeyResult::NotLinearizable),
            ("good", &KeyResult::Linearizable),
            (KEY, &KeyResult::Linearizable),
        ]
    );
    assert_eq!(verdict.failed_keys().collect::<Vec<_>>(), vec!["bad"]);
    let text = verdict.to_string();
    assert!(
        text.contains("6 done, 4 ok, 1 failed, 1 indeterminate"),
        "{text}"
    );
    assert!(text.contains("NOT linearizable"), "{text}");
}

#[test]
fn a_malformed_history_is_an_error_not_a_verdict() {
    let mut b = Builder::default();
    b.add(
        0,
        Op::Get { key: KEY.into() },
        (0, 1),
        Outcome::Ok(OpResult::Mismatch),
    );
    assert!(check(&b.history(), &CheckConfig::default()).is_err());
}

#[test]
fn the_step_budget_gives_unknown() {
    // Twenty overlapping puts and a read of a value none wrote: proving it impossible means
    // trying every subset of the puts.
    let mut b = Builder::default();
    for n in 0..20 {
        b.put(&format!("v{n}"), (0, 100), n + 1);
    }
    b.get((0, 100), Some(("ghost", 1)));
    let config = CheckConfig {
        max_steps_per_key: 10_000,
        max_shrink_steps: 10_000,
    };
    let verdict = check(&b.history(), &config).unwrap();
    assert!(
        matches!(&verdict.result, CheckResult::Unknown { reason } if reason.contains("budget")),
        "{verdict}"
    );
    assert!(matches!(verdict.keys[0].result, KeyResult::Unknown { .. }));
    assert_eq!(verdict.keys[0].steps, 10_000);
}

#[test]
fn a_violation_report_round_trips() {
    let mut b = Builder::default();
    b.put("a", (0, 1), 1);
    b.get((2, 3), None);
    let history = b.history();
    let verdict = check(&history, &CheckConfig::default()).unwrap();
    let report = ViolationReport { verdict, history };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("violation.json");
    report.write_json(&path).unwrap();
    let read = ViolationReport::read_json(&path).unwrap();
    assert_eq!(read, report);
    assert!(
        check(&read.history, &CheckConfig::default())
            .unwrap()
            .is_violation()
    );
}

// Random histories from a real execution.

struct Workload {
    clients: u32,
    ops_per_client: u32,
    keys: u64,
    lost_percent: u64,
    failed_percent: u64,
}

/// A real sequential store, as Symphony's state machine: one global revision counter.
#[derive(Default)]
struct Store {
    revision: u64,
    kv: HashMap<String, (String, u64)>,
}

impl Store {
    fn apply(&mut self, op: &Op) -> OpResult {
        match op {
            Op::Get { key } => OpResult::Read {
                found: self.kv.get(key).map(|(value, mod_revision)| ReadValue {
                    value: value.clone(),
                    mod_revision: *mod_revision,
                }),
            },
            Op::Put { key, value } => self.write(key, value),
            Op::Cas {
                key,
                if_revision,
                value,
            } => {
                let current = self.kv.get(key).map_or(0, |(_, revision)| *revision);
                if current == *if_revision {
                    self.write(key, value)
                } else {
                    OpResult::Mismatch
                }
            }
        }
    }

    fn write(&mut self, key: &str, value: &str) -> OpResult {
        self.revision += 1;
        self.kv
            .insert(key.to_string(), (value.to_string(), self.revision));
        OpResult::Written {
            revision: self.revision,
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Fate {
    Ok,
    Lost,
    Failed,
}

enum Phase {
    Idle,
    Invoked(usize, Fate),
    Applied(usize, OpResult),
}

/// Simulates concurrent clients against one real store: every operation takes effect at one
/// instant between its invoke and its completion (a lost write: at any instant after its
/// invoke, or never), so the history is linearizable by construction.
fn generate(seed: u64, workload: &Workload) -> History {
    let mut rng = SplitMix64::new(seed);
    let mut store = Store::default();
    let mut ops: Vec<OpRecord> = Vec::new();
    let mut phases: Vec<Phase> = (0..workload.clients).map(|_| Phase::Idle).collect();
    let mut remaining: Vec<u32> = vec![workload.ops_per_client; workload.clients as usize];
    let mut seen: Vec<HashMap<String, u64>> = vec![HashMap::new(); workload.clients as usize];
    let mut limbo: Vec<usize> = Vec::new();
    let mut time = 0u64;
    let mut written = 0u64;
    loop {
        let busy: Vec<usize> = (0..phases.len())
            .filter(|&c| remaining[c] > 0 || !matches!(phases[c], Phase::Idle))
            .collect();
        if busy.is_empty() {
            break;
        }
        time += 1 + rng.below(5);
        if !limbo.is_empty() && rng.chance(3) {
            let index = limbo.swap_remove(rng.below(limbo.len() as u64) as usize);
            store.apply(&ops[index].op);
        }
        let client = busy[rng.below(busy.len() as u64) as usize];
        match std::mem::replace(&mut phases[client], Phase::Idle) {
            Phase::Idle => {
                remaining[client] -= 1;
                let key = format!("key{}", rng.below(workload.keys));
                written += 1;
                let value = format!("c{client}-{written}");
                let op = match rng.below(10) {
                    0..4 => Op::Put { key, value },
                    4..7 => Op::Get { key },
                    _ => {
                        let if_revision = match rng.below(5) {
                            0..3 => seen[client].get(&key).copied().unwrap_or(0),
                            3 => store.kv.get(&key).map_or(0, |(_, revision)| *revision),
                            _ => 0,
                        };
                        Op::Cas {
                            key,
                            if_revision,
                            value,
                        }
                    }
                };
                let fate = if rng.chance(workload.lost_percent) {
                    Fate::Lost
                } else if rng.chance(workload.failed_percent) {
                    Fate::Failed
                } else {
                    Fate::Ok
                };
                ops.push(OpRecord {
                    id: ops.len() as u64,
                    client: client as ClientId,
                    op,
                    invoke_ns: time,
                    complete_ns: time,
                    outcome: Outcome::Failed {
                        reason: "placeholder".into(),
                    },
                });
                phases[client] = Phase::Invoked(ops.len() - 1, fate);
            }
            Phase::Invoked(index, Fate::Ok) => {
                let result = store.apply(&ops[index].op);
                phases[client] = Phase::Applied(index, result);
            }
            Phase::Invoked(index, fate) => {
                if fate == Fate::Lost && ops[index].op.is_write() {
                    match rng.below(4) {
                        0 | 1 => {
                            store.apply(&ops[index].op);
                        }
                        2 => limbo.push(index),
                        _ => {}
                    }
                }
                ops[index].complete_ns = time;
                ops[index].outcome = match fate {
                    Fate::Failed => Outcome::Failed {
                        reason: "refused".into(),
                    },
                    _ => Outcome::Indeterminate {
                        reason: "timed out".into(),
                    },
                };
            }
            Phase::Applied(index, result) => {
                let key = ops[index].op.key().to_string();
                match &result {
                    OpResult::Written { revision } => {
                        seen[client].insert(key, *revision);
                    }
                    OpResult::Read { found: Some(read) } => {
                        seen[client].insert(key, read.mod_revision);
                    }
                    _ => {}
                }
                ops[index].complete_ns = time;
                ops[index].outcome = Outcome::Ok(result);
            }
        }
    }
    History { ops }
}

fn small_workload() -> Workload {
    Workload {
        clients: 5,
        ops_per_client: 60,
        keys: 3,
        lost_percent: 8,
        failed_percent: 5,
    }
}

#[test]
fn generated_histories_are_linearizable() {
    for seed in 0..100 {
        let history = generate(seed, &small_workload());
        let verdict = check(&history, &CheckConfig::default()).unwrap();
        assert!(verdict.is_linearizable(), "seed {seed}:\n{verdict}");
        assert_eq!(verdict.ops_total, 300);
    }
}

fn successful_reads(history: &History) -> Vec<usize> {
    (0..history.ops.len())
        .filter(|&i| {
            matches!(
                (&history.ops[i].op, &history.ops[i].outcome),
                (Op::Get { .. }, Outcome::Ok(OpResult::Read { .. }))
            )
        })
        .collect()
}

#[test]
fn a_read_of_a_value_never_written_is_found_in_generated_histories() {
    for seed in 0..50 {
        let mut history = generate(seed, &small_workload());
        let reads = successful_reads(&history);
        let mut rng = SplitMix64::new(seed ^ 0xabcdef);
        let index = reads[rng.below(reads.len() as u64) as usize];
        history.ops[index].outcome = Outcome::Ok(OpResult::Read {
            found: Some(ReadValue {
                value: "never written".into(),
                mod_revision: u64::MAX / 2,
            }),
        });
        let verdict = check(&history, &CheckConfig::default()).unwrap();
        match &verdict.result {
            CheckResult::NotLinearizable { key, minimal } => {
                assert_eq!(key, history.ops[index].op.key());
                let ids: Vec<u64> = minimal.iter().map(|record| record.id).collect();
                assert_eq!(ids, vec![index as u64], "seed {seed}");
            }
            _ => panic!("seed {seed}: expected a violation, got:\n{verdict}"),
        }
    }
}

#[test]
fn a_stale_read_is_found_in_generated_histories() {
    let mut mutated = 0;
    for seed in 0..100 {
        let mut history = generate(seed, &small_workload());
        // A read that started after an acknowledged write completed, made to return an
        // acknowledged write older than that one.
        let stale = successful_reads(&history).into_iter().find_map(|read| {
            let r = &history.ops[read];
            let acknowledged: Vec<(&OpRecord, u64)> = history
                .ops
                .iter()
                .filter(|w| w.op.key() == r.op.key() && w.op.is_write())
                .filter_map(|w| match w.outcome {
                    Outcome::Ok(OpResult::Written { revision }) => Some((w, revision)),
                    _ => None,
                })
                .collect();
            let newest_before = acknowledged
                .iter()
                .filter(|(w, _)| w.complete_ns < r.invoke_ns)
                .map(|(_, revision)| *revision)
                .max()?;
            let (old, revision) = acknowledged
                .iter()
                .find(|(_, revision)| *revision < newest_before)?;
            let value = match &old.op {
                Op::Put { value, .. } | Op::Cas { value, .. } => value.clone(),
                Op::Get { .. } => unreachable!(),
            };
            Some((read, value, *revision))
        });
        let Some((read, value, revision)) = stale else {
            continue;
        };
        history.ops[read].outcome = Outcome::Ok(OpResult::Read {
            found: Some(ReadValue {
                value,
                mod_revision: revision,
            }),
        });
        mutated += 1;
        let verdict = check(&history, &CheckConfig::default()).unwrap();
        match &verdict.result {
            CheckResult::NotLinearizable { minimal, .. } => {
                assert!(
                    minimal.iter().any(|record| record.id == read as u64),
                    "seed {seed}: {verdict}"
                );
            }
            _ => panic!("seed {seed}: expected a violation, got:\n{verdict}"),
        }
    }
    assert!(
        mutated > 50,
        "only {mutated} histories had a read to make stale"
    );
}

#[test]
fn a_large_history_checks_quickly() {
    let workload = Workload {
        clients: 10,
        ops_per_client: 2_000,
        keys: 20,
        lost_percent: 3,
        failed_percent: 2,
    };
    let history = generate(7, &workload);
    let started = Instant::now();
    let verdict = check(&history, &CheckConfig::default()).unwrap();
    let steps: u64 = verdict.keys.iter().map(|key| key.steps).sum();
    eprintln!(
        "checked {} ops in {:?} ({steps} steps)",
        history.ops.len(),
        started.elapsed()
    );
    assert!(verdict.is_linearizable(), "{verdict}");
}

// Cross-checking the search (event list, memo table, pruning of lost writes) against a brute
// force over every order of small random histories.

/// Every real-time-respecting order of the acknowledged operations, with any subset of the lost
/// writes anywhere after their invoke: no memo, no pruning.
fn brute_force(records: &[OpRecord]) -> bool {
    use super::model::{KeyOp, KeyState, Taken, WriteResult, step};

    let mut values: HashMap<String, u32> = HashMap::new();
    let mut intern = |value: &str| {
        let next = values.len() as u32;
        *values.entry(value.to_string()).or_insert(next)
    };
    let mut ops: Vec<(KeyOp, u64, u64)> = Vec::new();
    for record in records {
        let lost = matches!(record.outcome, Outcome::Indeterminate { .. });
        let result = match &record.outcome {
            Outcome::Failed { .. } => continue,
            Outcome::Indeterminate { .. } => WriteResult::Unknown,
            Outcome::Ok(OpResult::Written { revision }) => WriteResult::Written(*revision),
            Outcome::Ok(OpResult::Mismatch) => WriteResult::Mismatch,
            Outcome::Ok(OpResult::Read { found }) => {
                let found = found
                    .as_ref()
                    .map(|read| (intern(&read.value), read.mod_revision));
                ops.push((KeyOp::Get { found }, record.invoke_ns, record.complete_ns));
                continue;
            }
        };
        let (if_revision, value) = match &record.op {
            Op::Put { value, .. } => (None, value),
            Op::Cas {
                if_revision, value, ..
            } => (Some(*if_revision), value),
            Op::Get { .. } => continue,
        };
        let op = KeyOp::Write {
            if_revision,
            value: intern(value),
            result,
        };
        let complete = if lost { u64::MAX } else { record.complete_ns };
        ops.push((op, record.invoke_ns, complete));
    }

    fn go(ops: &[(KeyOp, u64, u64)], placed: &mut [bool], state: &KeyState) -> bool {
        let acknowledged_left = (0..ops.len()).any(|i| !placed[i] && ops[i].2 != u64::MAX);
        if !acknowledged_left {
            return true;
        }
        for i in 0..ops.len() {
            if placed[i] {
                continue;
            }
            let blocked = (0..ops.len()).any(|j| j != i && !placed[j] && ops[j].2 < ops[i].1);
            if blocked {
                continue;
            }
            if let Some(next) = step(state, &ops[i].0, &Taken::default()) {
                placed[i] = true;
                if go(ops, placed, &next) {
                    return true;
                }
                placed[i] = false;
            }
        }
        false
    }
    go(&ops, &mut vec![false; ops.len()], &KeyState::default())
}

/// A small single-key history with arbitrary results: mostly not linearizable.
fn random_small_history(rng: &mut SplitMix64) -> History {
    let n = 2 + rng.below(6);
    let mut ops = Vec::new();
    let mut values: Vec<String> = Vec::new();
    for id in 0..n {
        let invoke_ns = rng.below(20);
        let complete_ns = invoke_ns + rng.below(8);
        let value = format!("v{id}");
        let (op, outcome) = match rng.below(3) {
            0 => {
                let op = Op::Put {
                    key: KEY.into(),
                    value: value.clone(),
                };
                values.push(value);
                let outcome = match rng.below(10) {
                    0..2 => Outcome::Indeterminate { reason: "".into() },
                    2 => Outcome::Failed { reason: "".into() },
                    _ => Outcome::Ok(OpResult::Written {
                        revision: 1 + rng.below(6),
                    }),
                };
                (op, outcome)
            }
            1 => {
                let found = match rng.below(4) {
                    0 => None,
                    _ if values.is_empty() => None,
                    _ => Some(ReadValue {
                        value: values[rng.below(values.len() as u64) as usize].clone(),
                        mod_revision: 1 + rng.below(6),
                    }),
                };
                let outcome = Outcome::Ok(OpResult::Read { found });
                (Op::Get { key: KEY.into() }, outcome)
            }
            _ => {
                let op = Op::Cas {
                    key: KEY.into(),
                    if_revision: rng.below(5),
                    value: value.clone(),
                };
                values.push(value);
                let outcome = match rng.below(10) {
                    0..2 => Outcome::Indeterminate { reason: "".into() },
                    2..5 => Outcome::Ok(OpResult::Mismatch),
                    _ => Outcome::Ok(OpResult::Written {
                        revision: 1 + rng.below(7),
                    }),
                };
                (op, outcome)
            }
        };
        ops.push(OpRecord {
            id,
            client: id as ClientId,
            op,
            invoke_ns,
            complete_ns,
            outcome,
        });
    }
    ops.sort_by_key(|record| record.invoke_ns);
    History { ops }
}

#[test]
fn the_search_agrees_with_brute_force() {
    let mut rng = SplitMix64::new(42);
    let (mut good, mut bad) = (0, 0);
    for case in 0..6_000 {
        let history = if case % 3 == 0 {
            random_small_history(&mut rng)
        } else {
            // From a real execution, with one result maybe scrambled.
            let workload = Workload {
                clients: 2 + rng.below(3) as u32,
                ops_per_client: 2 + rng.below(2) as u32,
                keys: 1,
                lost_percent: 40,
                failed_percent: 5,
            };
            let mut history = generate(rng.next_u64(), &workload);
            scramble(&mut history, &mut rng);
            history
        };
        if history.ops.len() > 10 {
            continue;
        }
        let expected = brute_force(&history.ops);
        let verdict = check(&history, &CheckConfig::default()).unwrap();
        assert_eq!(
            verdict.is_linearizable(),
            expected,
            "case {case}: brute force says {expected}, the search:\n{verdict}\n{history:#?}"
        );
        if let CheckResult::NotLinearizable { minimal, .. } = &verdict.result {
            assert!(
                !brute_force(minimal),
                "case {case}: the minimal part passes"
            );
            bad += 1;
        } else {
            good += 1;
        }
    }
    assert!(good > 1_000 && bad > 1_000, "{good} good, {bad} bad");
}

/// Maybe changes one result: a read's revision, or a compare-and-set's outcome.
fn scramble(history: &mut History, rng: &mut SplitMix64) {
    let reads = successful_reads(history);
    if !reads.is_empty() && rng.chance(50) {
        let read = reads[rng.below(reads.len() as u64) as usize];
        if let Outcome::Ok(OpResult::Read { found: Some(found) }) = &mut history.ops[read].outcome {
            found.mod_revision = 1 + rng.below(found.mod_revision + 1);
        }
    } else if rng.chance(50) {
        let answered: Vec<usize> = (0..history.ops.len())
            .filter(|&i| {
                matches!(history.ops[i].op, Op::Cas { .. })
                    && matches!(history.ops[i].outcome, Outcome::Ok(_))
            })
            .collect();
        if !answered.is_empty() {
            let cas = answered[rng.below(answered.len() as u64) as usize];
            history.ops[cas].outcome = match history.ops[cas].outcome {
                Outcome::Ok(OpResult::Mismatch) => Outcome::Ok(OpResult::Written {
                    revision: 1 + rng.below(12),
                }),
                _ => Outcome::Ok(OpResult::Mismatch),
            };
        }
    }
}

#[test]
fn heavy_loss_on_one_key_stays_tractable() {
    // Ten clients on one key, a third of the writes lost: hundreds of lost writes pending at
    // once, and refused compare-and-sets that any of them could explain.
    let workload = Workload {
        clients: 10,
        ops_per_client: 100,
        keys: 1,
        lost_percent: 30,
        failed_percent: 2,
    };
    let config = CheckConfig {
        max_steps_per_key: 100_000,
        ..CheckConfig::default()
    };
    for seed in 0..20 {
        let history = generate(seed, &workload);
        let verdict = check(&history, &config).unwrap();
        assert!(verdict.is_linearizable(), "seed {seed}:\n{verdict}");
    }
}
