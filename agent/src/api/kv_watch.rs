//! `kv watch`: every put and delete under a prefix, in revision order, streamed from this
//! manager's replica.
//!
//! The changes come from the KV history in the replicated state
//! ([`symphony_consensus::KvHistory`]), so every manager has the same ones under the same
//! revisions, and a manager that restarts still has them: a watcher that loses its manager
//! resumes on any other from the last revision it saw plus one, with no gap and no repeat. A
//! revision the history no longer keeps is refused, naming the oldest one still kept.
//!
//! The stream pulls from the history as it goes and holds no queue of its own (a channel of a
//! few batches, each bounded in count and bytes), so a slow watcher costs no memory: one that
//! falls behind what the history keeps is cut off with an error that says where to resume.

use std::time::Duration;

use symphony_consensus::state::kv;
use symphony_consensus::state::kv_history::KvRead;
use symphony_consensus::{Consensus, KvChange, KvCompacted, KvRecord};
use symphony_ctl::proto::{CtlError, ErrorCode, KvEntry, KvEvent, Response};
use tokio::sync::mpsc;

use crate::context::Context;
use crate::errors::not_initialised;
use crate::node::NodeHandle;

type Items = mpsc::Receiver<Result<Response, CtlError>>;

/// Changes read at once, and about how many bytes of keys and values.
const BATCH: usize = 1_000;
const BATCH_BYTES: usize = 1024 * 1024;
/// Batches queued for a slow client before the stream stops reading.
const QUEUED: usize = 4;
/// How often a quiet stream checks that its Raft node was not started again meanwhile.
const RECHECK: Duration = Duration::from_secs(1);

pub fn stream(
    ctx: &Context,
    prefix: String,
    from_revision: Option<u64>,
) -> Result<Items, CtlError> {
    let consensus = ctx.node.consensus().ok_or_else(not_initialised)?;
    let mut after = consensus.read_stale(|state| {
        from_revision.map_or(state.kv.revision(), |from| from.saturating_sub(1))
    });
    // Refused at once, not after the first frame.
    consensus
        .read_stale(|state| state.kv.history().after(after, &prefix, 0, 0))
        .map_err(|error| compacted(&consensus, error))?;
    let (out, items) = mpsc::channel(QUEUED);
    let node = ctx.node.clone();
    let watching = ctx.metrics.kv_watchers.open();
    tokio::spawn(async move {
        let _watching = watching;
        let mut consensus = consensus;
        let mut changed = consensus.watch_tables(&[kv::TABLE]);
        loop {
            let read = consensus
                .read_stale(|state| state.kv.history().after(after, &prefix, BATCH, BATCH_BYTES));
            let KvRead { changes, last } = match read {
                Ok(read) => read,
                Err(error) => {
                    let _ = out.send(Err(compacted(&consensus, error))).await;
                    return;
                }
            };
            if let Some(last) = last {
                after = last;
            }
            if !changes.is_empty() {
                let events = changes.into_iter().map(event).collect();
                if out.send(Ok(Response::KvEvents(events))).await.is_err() {
                    return;
                }
            }
            if last.is_some() {
                continue;
            }
            tokio::select! {
                alive = changed.changed() => if !alive {
                    match current(&node, after) {
                        Ok(now) => {
                            consensus = now;
                            changed = consensus.watch_tables(&[kv::TABLE]);
                        }
                        Err(error) => {
                            let _ = out.send(Err(error)).await;
                            return;
                        }
                    }
                },
                () = out.closed() => return,
                () = tokio::time::sleep(RECHECK) => match current(&node, after) {
                    // The history is durable state: a Raft node started again has it all, so
                    // the stream goes on from the new one.
                    Ok(now) if !now.events().same(&consensus.events()) => {
                        consensus = now;
                        changed = consensus.watch_tables(&[kv::TABLE]);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        let _ = out.send(Err(error)).await;
                        return;
                    }
                },
            }
        }
    });
    Ok(items)
}

/// This node's Raft node now, or why the watch cannot go on here.
fn current(node: &NodeHandle, after: u64) -> Result<Consensus, CtlError> {
    node.consensus().ok_or_else(|| {
        CtlError::new(
            ErrorCode::Unavailable,
            format!(
                "this node no longer serves the cluster state; resume on another manager with --from-revision {}",
                after.saturating_add(1)
            ),
        )
    })
}

fn compacted(consensus: &Consensus, error: KvCompacted) -> CtlError {
    let keep = consensus.read_stale(|state| state.kv.history().keep());
    CtlError::kv_compacted(error.requested, error.oldest, keep)
}

fn event((revision, change): (u64, KvChange)) -> KvEvent {
    KvEvent {
        revision,
        entry: change
            .record
            .map(|record| entry(change.key.clone(), record)),
        key: change.key,
    }
}

pub(super) fn entry(key: String, record: KvRecord) -> KvEntry {
    KvEntry {
        key,
        value: record.value,
        create_revision: record.create_revision,
        mod_revision: record.mod_revision,
        version: record.version,
    }
}
