//! The chaos clients: each sends KV puts, linearizable gets and compare-and-sets, one at a time,
//! to a manager picked at random for every operation, and records every operation in the
//! history with its invoke and completion times.
//!
//! Every write carries a value no other write uses (`c<client>-<n>`), so a read says exactly
//! which write it saw. A compare-and-set names the revision the client last saw for the key
//! (from its own reads and writes), or 0 ("only if absent") now and then, so that both outcomes
//! happen often. Each client keeps one connection per manager and drops it after anything but a
//! clean answer: a late reply to an abandoned request must not be read as the next one's.
//! How errors become outcomes is [`super::classify`]'s business.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use symphony_ctl::proto::{KvEntry, ReadConsistency};
use symphony_ctl::{Client, ClientError};
use tokio::sync::watch;

use super::board::Board;
use super::classify;
use super::history::{ClientId, HistoryRecorder, Op, OpResult, Outcome, ReadValue};
use super::tasks::pause;

/// Out of 10 operations, how many are gets and puts; the rest are compare-and-sets.
const GETS_IN_10: u32 = 4;
const PUTS_IN_10: u32 = 3;
/// How often a compare-and-set asks for "absent" although the client knows a revision.
const CAS_ABSENT_PROBABILITY: f64 = 0.1;
/// How long a client waits when no manager is serving, or after an operation went wrong (so a
/// client does not spin on a refusing socket).
const BACKOFF: Duration = Duration::from_millis(20);

/// What every client of a run shares.
#[derive(Debug, Clone)]
pub struct Workload {
    pub seed: u64,
    pub keys: Vec<String>,
    pub op_timeout: Duration,
    pub think_max: Duration,
}

/// The keys of a run: fresh names, so every key starts absent as the checker assumes.
pub fn keys(seed: u64, count: usize) -> Vec<String> {
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default();
    (0..count.max(1))
        .map(|index| format!("chaos/{seed}-{run}/k{index}"))
        .collect()
}

/// One client: operations until `stop`.
pub async fn client(
    id: ClientId,
    workload: Arc<Workload>,
    board: Arc<Board>,
    recorder: HistoryRecorder,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(
        workload
            .seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(u64::from(id) + 1),
    );
    let mut connections = Connections::new(workload.op_timeout);
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut written: u64 = 0;
    while !*stop.borrow() {
        let managers = board.serving_managers();
        if managers.is_empty() {
            if pause(&mut stop, BACKOFF).await {
                return;
            }
            continue;
        }
        let (index, socket) = &managers[rng.random_range(0..managers.len())];
        let key = workload.keys[rng.random_range(0..workload.keys.len())].clone();
        let roll = rng.random_range(0..10);
        let op = if roll < GETS_IN_10 {
            Op::Get { key }
        } else {
            written += 1;
            let value = format!("c{id}-{written}");
            if roll < GETS_IN_10 + PUTS_IN_10 {
                Op::Put { key, value }
            } else {
                let if_revision = match seen.get(&key) {
                    Some(revision) if !rng.random_bool(CAS_ABSENT_PROBABILITY) => *revision,
                    _ => 0,
                };
                Op::Cas {
                    key,
                    if_revision,
                    value,
                }
            }
        };
        let handle = recorder.invoke(id, op.clone());
        let outcome = connections.execute(*index, socket, &op).await;
        match &outcome {
            Outcome::Ok(OpResult::Written { revision }) => {
                seen.insert(op.key().to_string(), *revision);
            }
            Outcome::Ok(OpResult::Read { found }) => match found {
                Some(read) => {
                    seen.insert(op.key().to_string(), read.mod_revision);
                }
                None => {
                    seen.remove(op.key());
                }
            },
            Outcome::Ok(OpResult::Mismatch) => {
                seen.remove(op.key());
            }
            Outcome::Failed { .. } | Outcome::Indeterminate { .. } => {}
        }
        let ok = matches!(outcome, Outcome::Ok(_));
        recorder.complete(handle, outcome);
        let think = if ok {
            Duration::from_micros(rng.random_range(0..=workload.think_max.as_micros() as u64))
        } else {
            BACKOFF
        };
        if pause(&mut stop, think).await {
            return;
        }
    }
}

/// Reads every key linearizably through the managers in `sockets`, recording each attempt as
/// an operation of `client`, until each read succeeded or `timeout` passed; returns how many
/// keys were read.
pub async fn read_every_key(
    client: ClientId,
    keys: &[String],
    sockets: &[(usize, PathBuf)],
    recorder: &HistoryRecorder,
    op_timeout: Duration,
    timeout: Duration,
) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut connections = Connections::new(op_timeout);
    let mut read = 0;
    for key in keys {
        let mut attempt = 0usize;
        while tokio::time::Instant::now() < deadline && !sockets.is_empty() {
            let (index, socket) = &sockets[attempt % sockets.len()];
            attempt += 1;
            let op = Op::Get { key: key.clone() };
            let handle = recorder.invoke(client, op.clone());
            let outcome = connections.execute(*index, socket, &op).await;
            let ok = matches!(outcome, Outcome::Ok(_));
            recorder.complete(handle, outcome);
            if ok {
                read += 1;
                break;
            }
            tokio::time::sleep(BACKOFF).await;
        }
    }
    read
}

/// A client's connections, one per manager, and how one operation is sent.
struct Connections {
    op_timeout: Duration,
    open: HashMap<usize, Client>,
}

impl Connections {
    fn new(op_timeout: Duration) -> Connections {
        Connections {
            op_timeout,
            open: HashMap::new(),
        }
    }

    /// Sends `op` to manager `index` and says how it ended.
    async fn execute(&mut self, index: usize, socket: &Path, op: &Op) -> Outcome {
        let client = match self.open.entry(index) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                match tokio::time::timeout(self.op_timeout, Client::connect(socket)).await {
                    Ok(Ok(client)) => entry.insert(client),
                    // Nothing was sent: the request never left this process.
                    Ok(Err(error)) => return classify::connect_error(&error),
                    Err(_) => return classify::connect_timed_out(self.op_timeout),
                }
            }
        };
        let outcome = match tokio::time::timeout(self.op_timeout, send(client, op)).await {
            Ok(Ok(result)) => return Outcome::Ok(result),
            Ok(Err(error)) => {
                let outcome = match op {
                    Op::Get { .. } => classify::read_error(&error),
                    Op::Cas { .. } => classify::write_error(&error),
                    // Only a compare-and-set can be refused by its compare.
                    Op::Put { .. } => match classify::write_error(&error) {
                        Outcome::Ok(_) => Outcome::Indeterminate {
                            reason: format!("a put was answered with: {error}"),
                        },
                        other => other,
                    },
                };
                if matches!(error, ClientError::Remote(_)) {
                    return outcome;
                }
                outcome
            }
            Err(_) => classify::timed_out(self.op_timeout),
        };
        // Anything but a clean answer leaves the connection in doubt.
        self.open.remove(&index);
        outcome
    }
}

/// One request for `op` on `client`.
async fn send(client: &mut Client, op: &Op) -> Result<OpResult, ClientError> {
    match op {
        Op::Get { key } => {
            let entry = client
                .kv_get(key.clone(), ReadConsistency::Linearizable)
                .await?;
            Ok(OpResult::Read {
                found: entry.map(read_value),
            })
        }
        Op::Put { key, value } => {
            let result = client
                .kv_put(key.clone(), value.as_bytes().to_vec(), None)
                .await?;
            Ok(OpResult::Written {
                revision: result.revision,
            })
        }
        Op::Cas {
            key,
            if_revision,
            value,
        } => match client
            .kv_put(key.clone(), value.as_bytes().to_vec(), Some(*if_revision))
            .await
        {
            Ok(result) => Ok(OpResult::Written {
                revision: result.revision,
            }),
            Err(ClientError::Remote(error))
                if error.code == symphony_ctl::proto::ErrorCode::CompareFailed =>
            {
                Ok(OpResult::Mismatch)
            }
            Err(error) => Err(error),
        },
    }
}

fn read_value(entry: KvEntry) -> ReadValue {
    ReadValue {
        value: String::from_utf8_lossy(&entry.value).into_owned(),
        mod_revision: entry.mod_revision,
    }
}
