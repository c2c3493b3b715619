//! What the chaos clients did and saw: one [`OpRecord`] per operation, with its invoke and
//! completion times on one monotonic clock.
//!
//! The times are what make a history checkable: an operation that completed before another was
//! invoked must come first in any linearization, and operations that overlap may come in either
//! order. For that to be sound the recorded interval must *contain* the real one, so a client calls
//! [`HistoryRecorder::invoke`] before it sends the request and [`HistoryRecorder::complete`] after
//! the reply arrived (or after it gave up). Wider intervals only make the checker more lenient.
//!
//! Outcomes are three-valued because faults make them so:
//! - [`Outcome::Ok`]: the reply arrived;
//! - [`Outcome::Failed`]: the operation certainly did not take effect (for example, refused before
//!   it was proposed); the checker treats it as never having happened. Only the client knows when
//!   this is certain, so it decides: when in doubt, record [`Outcome::Indeterminate`];
//! - [`Outcome::Indeterminate`]: a timeout or a lost connection; a write may have taken effect at
//!   any time after its invoke (even after the client gave up), so the checker gives it an
//!   unbounded completion time; a read is simply dropped.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Which chaos client did an operation. Operations of one client never overlap.
pub type ClientId = u32;

/// A KV operation as the client issued it. Values are opaque to the checker; the chaos clients
/// write a unique value per write so that a read says which write it saw.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// An unconditional `KvPut`.
    Put { key: String, value: String },
    /// A linearizable `KvGet`.
    Get { key: String },
    /// A `KvPut` with `if_revision`: applied only if the key's `mod_revision` equals
    /// `if_revision` (0: only if the key does not exist).
    Cas {
        key: String,
        if_revision: u64,
        value: String,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Get { key } | Op::Cas { key, .. } => key,
        }
    }

    /// Whether the operation can change the store (so an indeterminate one still matters).
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }
}

/// What a get returned for a present key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReadValue {
    pub value: String,
    pub mod_revision: u64,
}

/// The reply to an operation that completed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpResult {
    /// A put, or a compare-and-set that was applied: the cluster revision of the write.
    Written { revision: u64 },
    /// A get: the value and its `mod_revision`, or `None` when the key was absent.
    Read { found: Option<ReadValue> },
    /// A compare-and-set refused with `compare_failed`: the key's revision was not `if_revision`.
    Mismatch,
}

/// How an operation ended (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(OpResult),
    Failed { reason: String },
    Indeterminate { reason: String },
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// Position in invoke order, unique within the history.
    pub id: u64,
    pub client: ClientId,
    pub op: Op,
    /// Nanoseconds since the recorder was created, taken before the request was sent.
    pub invoke_ns: u64,
    /// Nanoseconds since the recorder was created, taken after the reply arrived or the client
    /// gave up. For an indeterminate operation the checker ignores it.
    pub complete_ns: u64,
    pub outcome: Outcome,
}

impl std::fmt::Display for OpRecord {
    /// One line for people, e.g. `#12 client 3 [1200..1900 ns] cas k if_revision 4 = v -> written at 7`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "#{} client {} [{}..{} ns] ",
            self.id, self.client, self.invoke_ns, self.complete_ns
        )?;
        match &self.op {
            Op::Put { key, value } => write!(f, "put {key} = {value}")?,
            Op::Get { key } => write!(f, "get {key}")?,
            Op::Cas {
                key,
                if_revision,
                value,
            } => write!(f, "cas {key} if_revision {if_revision} = {value}")?,
        }
        match &self.outcome {
            Outcome::Ok(OpResult::Written { revision }) => write!(f, " -> written at {revision}"),
            Outcome::Ok(OpResult::Read { found: None }) => write!(f, " -> absent"),
            Outcome::Ok(OpResult::Read { found: Some(read) }) => {
                write!(f, " -> {} (mod_revision {})", read.value, read.mod_revision)
            }
            Outcome::Ok(OpResult::Mismatch) => write!(f, " -> compare failed"),
            Outcome::Failed { reason } => write!(f, " -> failed ({reason})"),
            Outcome::Indeterminate { reason } => write!(f, " -> indeterminate ({reason})"),
        }
    }
}

/// A whole run's operations, in invoke order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    pub ops: Vec<OpRecord>,
}

/// A history the checker cannot judge because it is malformed (a recorder or client bug, or an
/// edited file), as opposed to one that is not linearizable.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("operation {id} is a {op} but its result is {result:?}")]
    ResultDoesNotFit {
        id: u64,
        op: &'static str,
        result: OpResult,
    },
    #[error("operation {id} completed ({complete_ns} ns) before it was invoked ({invoke_ns} ns)")]
    CompletedBeforeInvoked {
        id: u64,
        invoke_ns: u64,
        complete_ns: u64,
    },
    #[error("two operations have the id {id}")]
    DuplicateId { id: u64 },
    #[error("{context}: {source}")]
    Json {
        context: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl History {
    /// Operations that completed with a reply.
    pub fn count_ok(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Ok(_)))
    }

    /// Operations that certainly did not take effect.
    pub fn count_failed(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Failed { .. }))
    }

    /// Operations that may or may not have taken effect.
    pub fn count_indeterminate(&self) -> usize {
        self.count(|outcome| matches!(outcome, Outcome::Indeterminate { .. }))
    }

    fn count(&self, which: impl Fn(&Outcome) -> bool) -> usize {
        self.ops
            .iter()
            .filter(|record| which(&record.outcome))
            .count()
    }

    /// Checks that the history is well formed: results fit their operations, times are ordered
    /// and ids are unique. The checker does this first, so that a recording bug is reported as
    /// such and not as a consistency violation. (It does not require a client's operations to
    /// be sequential: the checker needs only the intervals.)
    pub fn validate(&self) -> Result<(), HistoryError> {
        let mut ids = std::collections::HashSet::new();
        for record in &self.ops {
            if !ids.insert(record.id) {
                return Err(HistoryError::DuplicateId { id: record.id });
            }
            if record.complete_ns < record.invoke_ns {
                return Err(HistoryError::CompletedBeforeInvoked {
                    id: record.id,
                    invoke_ns: record.invoke_ns,
                    complete_ns: record.complete_ns,
                });
            }
            if let Outcome::Ok(result) = &record.outcome {
                let fits = matches!(
                    (&record.op, result),
                    (Op::Put { .. }, OpResult::Written { .. })
                        | (Op::Get { .. }, OpResult::Read { .. })
                        | (
                            Op::Cas { .. },
                            OpResult::Written { .. } | OpResult::Mismatch
                        )
                );
                if !fits {
                    return Err(HistoryError::ResultDoesNotFit {
                        id: record.id,
                        op: op_name(&record.op),
                        result: result.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    pub fn to_json_pretty(&self) -> Result<String, HistoryError> {
        serde_json::to_string_pretty(self).map_err(|source| HistoryError::Json {
            context: "could not serialise the history".to_string(),
            source,
        })
    }

    pub fn from_json(text: &str) -> Result<History, HistoryError> {
        serde_json::from_str(text).map_err(|source| HistoryError::Json {
            context: "could not parse the history".to_string(),
            source,
        })
    }

    /// Reads a history written by [`History::write_json`].
    pub fn read_json(path: &Path) -> Result<History, HistoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Io {
            context: format!("could not read {}", path.display()),
            source,
        })?;
        Self::from_json(&text)
    }

    pub fn write_json(&self, path: &Path) -> Result<(), HistoryError> {
        let text = self.to_json_pretty()?;
        std::fs::write(path, text).map_err(|source| HistoryError::Io {
            context: format!("could not write {}", path.display()),
            source,
        })
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Put { .. } => "put",
        Op::Get { .. } => "get",
        Op::Cas { .. } => "cas",
    }
}

/// Records operations from many concurrent clients (threads or tasks). Cloning is cheap and
/// shares the record. Locking is brief (a push or an update), never across an await.
#[derive(Debug, Clone)]
pub struct HistoryRecorder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    ops: Mutex<Vec<Pending>>,
}

#[derive(Debug)]
struct Pending {
    client: ClientId,
    op: Op,
    invoke_ns: u64,
    completed: Option<(u64, Outcome)>,
}

/// An invoked operation waiting for its outcome. Deliberately neither `Clone` nor `Copy`, so an
/// operation is completed at most once; one that is never completed (its client task was
/// cancelled) shows up as indeterminate in [`HistoryRecorder::history`].
#[must_use = "complete the operation with HistoryRecorder::complete"]
#[derive(Debug)]
pub struct OpHandle {
    index: usize,
}

impl OpHandle {
    /// The id the operation will have in the history.
    pub fn id(&self) -> u64 {
        self.index as u64
    }
}

impl Default for HistoryRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl HistoryRecorder {
    /// Starts the run's clock.
    pub fn new() -> Self {
        HistoryRecorder {
            inner: Arc::new(Inner {
                start: Instant::now(),
                ops: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Nanoseconds since the recorder was created.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.inner.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Records that `client` is about to send `op`. Call it before sending.
    pub fn invoke(&self, client: ClientId, op: Op) -> OpHandle {
        let mut ops = self.lock();
        // Taking the time under the lock keeps ids in invoke-time order.
        let invoke_ns = self.now_ns();
        ops.push(Pending {
            client,
            op,
            invoke_ns,
            completed: None,
        });
        OpHandle {
            index: ops.len() - 1,
        }
    }

    /// Records how the operation ended. Call it after the reply arrived or the client gave up.
    /// A handle from another recorder is ignored.
    pub fn complete(&self, handle: OpHandle, outcome: Outcome) {
        let complete_ns = self.now_ns();
        let mut ops = self.lock();
        if let Some(pending) = ops.get_mut(handle.index)
            && pending.completed.is_none()
        {
            pending.completed = Some((complete_ns.max(pending.invoke_ns), outcome));
        }
    }

    /// How many operations were invoked so far.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The history so far. Operations still in flight are recorded as indeterminate, completed
    /// now: call this after the clients stopped (and the cluster healed) to get the final one.
    pub fn history(&self) -> History {
        let now = self.now_ns();
        let ops = self.lock();
        let ops = ops
            .iter()
            .enumerate()
            .map(|(index, pending)| {
                let (complete_ns, outcome) = match &pending.completed {
                    Some((complete_ns, outcome)) => (*complete_ns, outcome.clone()),
                    None => (
                        now.max(pending.invoke_ns),
                        Outcome::Indeterminate {
                            reason: "still in flight when the history was taken".to_string(),
                        },
                    ),
                };
                OpRecord {
                    id: index as u64,
                    client: pending.client,
                    op: pending.op.clone(),
                    invoke_ns: pending.invoke_ns,
                    complete_ns,
                    outcome,
                }
            })
            .collect();
        History { ops }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Pending>> {
        // A client that panicked while holding the lock left the vector consistent (every
        // critical section is a single push or assignment), so a poisoned lock is still usable.
        self.inner
            .ops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.to_string(),
            value: value.to_string(),
        }
    }

    #[test]
    fn records_invoke_and_completion_in_order() {
        let recorder = HistoryRecorder::new();
        let first = recorder.invoke(1, put("a", "x"));
        let second = recorder.invoke(2, Op::Get { key: "a".into() });
        assert_eq!((first.id(), second.id()), (0, 1));
        recorder.complete(second, Outcome::Ok(OpResult::Read { found: None }));
        recorder.complete(first, Outcome::Ok(OpResult::Written { revision: 1 }));
        let history = recorder.history();
        assert_eq!(history.ops.len(), 2);
        assert!(history.ops[0].invoke_ns <= history.ops[1].invoke_ns);
        assert!(history.ops[0].complete_ns >= history.ops[1].complete_ns);
        for record in &history.ops {
            assert!(record.invoke_ns <= record.complete_ns);
        }
        assert_eq!(history.count_ok(), 2);
        history.validate().unwrap();
    }

    #[test]
    fn an_operation_never_completed_is_indeterminate() {
        let recorder = HistoryRecorder::new();
        let handle = recorder.invoke(1, put("a", "x"));
        drop(handle);
        let history = recorder.history();
        assert!(matches!(
            history.ops[0].outcome,
            Outcome::Indeterminate { .. }
        ));
        assert_eq!(history.count_indeterminate(), 1);
    }

    #[test]
    fn many_threads_record_every_operation() {
        let recorder = HistoryRecorder::new();
        std::thread::scope(|scope| {
            for client in 0..4 {
                let recorder = recorder.clone();
                scope.spawn(move || {
                    for n in 0..100 {
                        let handle = recorder.invoke(client, put("k", &format!("{client}-{n}")));
                        recorder.complete(
                            handle,
                            Outcome::Failed {
                                reason: "test".into(),
                            },
                        );
                    }
                });
            }
        });
        let history = recorder.history();
        assert_eq!(history.ops.len(), 400);
        assert_eq!(history.count_failed(), 400);
        history.validate().unwrap();
    }

    #[test]
    fn json_round_trips() {
        let history = History {
            ops: vec![
                OpRecord {
                    id: 0,
                    client: 3,
                    op: Op::Cas {
                        key: "k".into(),
                        if_revision: 0,
                        value: "v".into(),
                    },
                    invoke_ns: 5,
                    complete_ns: 9,
                    outcome: Outcome::Ok(OpResult::Written { revision: 4 }),
                },
                OpRecord {
                    id: 1,
                    client: 4,
                    op: Op::Get { key: "k".into() },
                    invoke_ns: 6,
                    complete_ns: 10,
                    outcome: Outcome::Ok(OpResult::Read {
                        found: Some(ReadValue {
                            value: "v".into(),
                            mod_revision: 4,
                        }),
                    }),
                },
                OpRecord {
                    id: 2,
                    client: 5,
                    op: put("k", "w"),
                    invoke_ns: 7,
                    complete_ns: 11,
                    outcome: Outcome::Indeterminate {
                        reason: "timed out".into(),
                    },
                },
            ],
        };
        let text = history.to_json_pretty().unwrap();
        assert_eq!(History::from_json(&text).unwrap(), history);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.json");
        history.write_json(&path).unwrap();
        assert_eq!(History::read_json(&path).unwrap(), history);
    }

    #[test]
    fn validate_rejects_malformed_histories() {
        let record = |id, client, op, invoke_ns, complete_ns, outcome| OpRecord {
            id,
            client,
            op,
            invoke_ns,
            complete_ns,
            outcome,
        };
        let written = Outcome::Ok(OpResult::Written { revision: 1 });
        let misfit = History {
            ops: vec![record(
                0,
                1,
                Op::Get { key: "k".into() },
                0,
                1,
                written.clone(),
            )],
        };
        assert!(matches!(
            misfit.validate(),
            Err(HistoryError::ResultDoesNotFit { id: 0, .. })
        ));
        let backwards = History {
            ops: vec![record(0, 1, put("k", "v"), 5, 4, written.clone())],
        };
        assert!(matches!(
            backwards.validate(),
            Err(HistoryError::CompletedBeforeInvoked { .. })
        ));
        let duplicate = History {
            ops: vec![
                record(0, 1, put("k", "v"), 0, 1, written.clone()),
                record(0, 2, put("k", "w"), 2, 3, written),
            ],
        };
        assert!(matches!(
            duplicate.validate(),
            Err(HistoryError::DuplicateId { id: 0 })
        ));
    }
}
