//! Encoding an AppendEntries request into frames that fit the frame limit.
//!
//! openraft batches entries by count (`max_payload_entries`), not by size, so a batch of large
//! commands can encode to more than one frame may hold. Such a request is split into
//! consecutive requests over sub-ranges of its entries, each chained to the previous one by
//! `prev_log_id`; the follower sees ordinary AppendEntries it can check and apply one by one.

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::raft::AppendEntriesRequest;
use symphony_wire::frame::{self, MAX_FRAME_LEN};

use super::error::CallError;
use super::rpc::RaftRequestRef;
use crate::types::{Entry, LogId, TypeConfig};

/// One encoded AppendEntries frame and the log range it covers: `(prev, last]`.
pub(crate) struct AppendFrame {
    pub body: Bytes,
    pub prev: Option<LogId>,
    pub last: Option<LogId>,
}

/// Encodes `request` as one frame, or as several when one would exceed `max_len`.
pub(crate) fn encode_append(
    request: &AppendEntriesRequest<TypeConfig>,
) -> Result<Vec<AppendFrame>, CallError> {
    encode_with_limit(request, MAX_FRAME_LEN)
}

fn encode_with_limit(
    request: &AppendEntriesRequest<TypeConfig>,
    max_len: usize,
) -> Result<Vec<AppendFrame>, CallError> {
    let mut frames = Vec::new();
    encode_range(
        request,
        &request.entries,
        request.prev_log_id,
        max_len,
        &mut frames,
    )?;
    Ok(frames)
}

/// Encodes the request for `entries` (which follow `prev`), halving the range until each part
/// fits. Only the oversized path clones entries.
fn encode_range(
    template: &AppendEntriesRequest<TypeConfig>,
    entries: &[Entry],
    prev: Option<LogId>,
    max_len: usize,
    frames: &mut Vec<AppendFrame>,
) -> Result<(), CallError> {
    let last = entries.last().map(|entry| entry.log_id()).or(prev);
    let body = if entries.len() == template.entries.len() {
        frame::encode(&RaftRequestRef::Append(template))?
    } else {
        let part = AppendEntriesRequest {
            vote: template.vote,
            prev_log_id: prev,
            entries: entries.to_vec(),
            leader_commit: template.leader_commit,
        };
        frame::encode(&RaftRequestRef::Append(&part))?
    };
    if body.len() <= max_len {
        frames.push(AppendFrame { body, prev, last });
        return Ok(());
    }
    if entries.len() <= 1 {
        return Err(CallError::EntryTooLarge {
            index: last.map(|id| id.index).unwrap_or_default(),
            len: body.len(),
        });
    }
    let (head, tail) = entries.split_at(entries.len() / 2);
    encode_range(template, head, prev, max_len, frames)?;
    let head_last = head.last().map(|entry| entry.log_id()).or(prev);
    encode_range(template, tail, head_last, max_len, frames)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use openraft::Vote;
    use openraft::impls::leader_id_adv::LeaderId;
    use symphony_wire::frame;

    use super::*;
    use crate::network::rpc::RaftRequest;
    use crate::state::{Command, KvCommand};

    fn entry(index: u64, value_len: usize) -> Entry {
        Entry::new_normal(
            LogId::new(
                LeaderId {
                    term: 1,
                    node_id: 1,
                },
                index,
            ),
            Command::Kv(KvCommand::Put {
                key: format!("k{index}"),
                value: vec![7u8; value_len],
                if_revision: None,
            }),
        )
    }

    fn request(entries: Vec<Entry>) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: None,
            entries,
            leader_commit: None,
        }
    }

    #[test]
    fn a_small_request_is_one_frame() {
        let frames =
            encode_with_limit(&request(vec![entry(1, 10), entry(2, 10)]), 1 << 20).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].prev, None);
        assert_eq!(frames[0].last.map(|id| id.index), Some(2));
    }

    #[test]
    fn a_large_request_is_split_into_chained_frames() {
        let entries: Vec<Entry> = (1..=10).map(|i| entry(i, 1000)).collect();
        let frames = encode_with_limit(&request(entries), 3000).unwrap();
        assert!(frames.len() >= 4, "{} frames", frames.len());
        let mut expected_prev = None;
        for part in &frames {
            assert!(part.body.len() <= 3000);
            assert_eq!(part.prev, expected_prev);
            match frame::decode::<RaftRequest>(&part.body).unwrap() {
                RaftRequest::Append(decoded) => {
                    assert_eq!(decoded.prev_log_id, part.prev);
                    assert_eq!(decoded.entries.last().map(|e| e.log_id), part.last);
                }
                other => panic!("decoded {other:?}"),
            }
            expected_prev = part.last;
        }
        assert_eq!(expected_prev.map(|id| id.index), Some(10));
    }

    #[test]
    fn one_entry_over_the_limit_is_an_error() {
        let error = encode_with_limit(&request(vec![entry(1, 5000)]), 3000)
            .err()
            .unwrap();
        assert!(
            matches!(error, CallError::EntryTooLarge { index: 1, .. }),
            "{error}"
        );
    }
}
