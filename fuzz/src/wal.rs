//! Target `wal`: what a Raft log segment holds after its header, as a manager replays it when
//! it starts: bytes a torn write or a damaged disk could leave.
//!
//! The input is read two ways: as the segment's raw bytes, and as payloads (each a length
//! byte and that many bytes) framed into records whose checksums hold, so that the record
//! decoder, not only the checksum, meets the garbage. Each is replayed as the last segment (a
//! bad record ends it: a torn end) and as an earlier one (a bad record is damage). What must
//! hold:
//! - nothing panics, and a refusal names an offset inside the segment;
//! - a segment that replays as an earlier one replays the same as the last one;
//! - the last segment's good records followed by zeros where its torn end was (what opening
//!   the log leaves on disk) replay the same, and as an earlier segment too (which it becomes
//!   when the next one begins);
//! - the good records encode again, from the ops they decoded to, to the bytes they were.

use symphony_consensus::store::wal::{check_segment, frame_record};

pub fn run(data: &[u8]) {
    check(data);
    let mut framed = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (payload, after) = tail.split_at(usize::from(len).min(tail.len()));
        framed.extend_from_slice(&frame_record(payload).expect("a payload of at most 255 bytes"));
        rest = after;
    }
    check(&framed);
}

fn check(body: &[u8]) {
    let last = check_segment(body, true);
    let earlier = check_segment(body, false);
    for (offset, _) in [&last, &earlier]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
    {
        // Offsets count the header (24 bytes) too.
        assert!(
            *offset <= body.len() + 24,
            "offset {offset} past the segment"
        );
    }
    if let Ok(earlier) = &earlier {
        assert_eq!(
            last.as_ref().ok(),
            Some(earlier),
            "an earlier segment replays otherwise as the last"
        );
    }
    let Ok(last) = last else { return };
    assert!(last.good_len <= body.len());
    assert_eq!(
        last.reencoded,
        body[..last.good_len],
        "the good records encode otherwise"
    );
    let mut kept = body[..last.good_len].to_vec();
    kept.resize(body.len(), 0);
    let again = check_segment(&kept, false).expect("the kept records replay as an earlier segment");
    assert_eq!(again, last, "the kept records replay otherwise");
}
