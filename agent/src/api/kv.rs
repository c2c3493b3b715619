//! The key-value store: put, get (now or as of a kept revision), list and delete, with
//! compare-and-set on revisions, and the history kept (`kv history`).

use symphony_consensus::state::kv_history::{MAX_BYTES, MIN_KEEP};
use symphony_consensus::{Command, CommandResult, Consensus, KvCommand};
use symphony_ctl::proto::{
    CtlError, KvDeleteResult, KvHistoryInfo, KvListing, KvWriteResult, ReadConsistency, Response,
};

use super::kv_watch::entry;

use crate::errors::{bad_request, unexpected_result};
use crate::manager::propose::{propose, propose_client, read};

/// The largest KV value: every value is a Raft log entry, replicated and kept in memory, and an
/// entry must fit a Raft frame with room to spare (etcd's default limit is 1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// The largest KV key.
pub const MAX_KEY_BYTES: usize = 4096;

pub async fn put(
    consensus: &Consensus,
    key: String,
    value: Vec<u8>,
    if_revision: Option<u64>,
) -> Result<Response, CtlError> {
    check_sizes(&key, &value)?;
    let command = Command::Kv(KvCommand::Put {
        key,
        value,
        if_revision,
    });
    match propose_client(consensus, command).await? {
        CommandResult::KvPut { revision } => Ok(Response::KvPut(KvWriteResult { revision })),
        other => Err(unexpected_result(other)),
    }
}

pub async fn get(
    consensus: &Consensus,
    key: String,
    consistency: ReadConsistency,
    revision: Option<u64>,
) -> Result<Response, CtlError> {
    let Some(revision) = revision else {
        let record = read(consensus, consistency, |state| state.kv.get(&key).cloned()).await?;
        return Ok(Response::KvGet(record.map(|record| entry(key, record))));
    };
    let (record, keep) = read(consensus, consistency, |state| {
        (state.kv.get_at(&key, revision), state.kv.history().keep())
    })
    .await?;
    match record {
        Ok(Ok(record)) => Ok(Response::KvGet(record.map(|record| entry(key, record)))),
        Ok(Err(now)) => Err(bad_request(format!(
            "revision {revision} is in the future: the KV store is at revision {now}"
        ))),
        Err(compacted) => Err(CtlError::kv_compacted(
            compacted.requested,
            compacted.oldest,
            keep,
        )),
    }
}

/// How much history is kept; with `keep`, keep that many revisions from now on.
pub async fn history(consensus: &Consensus, keep: Option<u64>) -> Result<Response, CtlError> {
    if let Some(revisions) = keep {
        if revisions < MIN_KEEP {
            return Err(bad_request(format!(
                "keep at least {MIN_KEEP} revisions (watchers that lose their manager resume from the history)"
            )));
        }
        propose(consensus, Command::Kv(KvCommand::KeepHistory { revisions })).await?;
    }
    let info = read(consensus, ReadConsistency::Stale, |state| {
        let history = state.kv.history();
        KvHistoryInfo {
            keep: history.keep(),
            max_bytes: MAX_BYTES,
            oldest: history.oldest(),
            revision: state.kv.revision(),
            kept: u64::try_from(history.len()).unwrap_or(u64::MAX),
        }
    })
    .await?;
    Ok(Response::KvHistory(info))
}

pub async fn list(
    consensus: &Consensus,
    prefix: String,
    consistency: ReadConsistency,
) -> Result<Response, CtlError> {
    let listing = read(consensus, consistency, |state| KvListing {
        entries: state
            .kv
            .list(&prefix)
            .map(|(key, record)| entry(key.clone(), record.clone()))
            .collect(),
        revision: state.kv.revision(),
    })
    .await?;
    Ok(Response::KvList(listing))
}

/// Deletes go through even when the disk is low: they are how an operator makes room.
pub async fn delete(
    consensus: &Consensus,
    key: String,
    if_revision: Option<u64>,
) -> Result<Response, CtlError> {
    match propose(
        consensus,
        Command::Kv(KvCommand::Delete { key, if_revision }),
    )
    .await?
    {
        CommandResult::KvDelete { deleted, revision } => {
            Ok(Response::KvDelete(KvDeleteResult { deleted, revision }))
        }
        other => Err(unexpected_result(other)),
    }
}

/// Refuses keys and values too large to replicate comfortably.
fn check_sizes(key: &str, value: &[u8]) -> Result<(), CtlError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(bad_request(format!(
            "a key must have 1 to {MAX_KEY_BYTES} bytes; this one has {}",
            key.len()
        )));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(bad_request(format!(
            "a value may have at most {MAX_VALUE_BYTES} bytes; this one has {} (store large data elsewhere and put a reference here)",
            value.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use symphony_ctl::proto::ErrorCode;

    use super::*;

    #[test]
    fn sizes_are_checked_before_anything_is_proposed() {
        assert!(check_sizes("k", &[0; MAX_VALUE_BYTES]).is_ok());
        let error = check_sizes("", b"v").unwrap_err();
        assert_eq!(error.code, ErrorCode::BadRequest);
        assert!(check_sizes(&"k".repeat(MAX_KEY_BYTES + 1), b"v").is_err());
        assert!(check_sizes("k", &vec![0; MAX_VALUE_BYTES + 1]).is_err());
    }
}
