//! Snapshot encoding: the whole cluster state at one log id, as sent to a follower that must
//! catch up, or written to a file by `snapshot save`.
//!
//! Files are written atomically (temp file, fsync, rename), so a crash leaves either the old or
//! the new file, never half of one.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{decode, encode, write_file_atomically};
use crate::state::ClusterState;
use crate::types::{Snapshot, SnapshotData, SnapshotMeta};

/// The current snapshot encoding; bumped when the payload changes incompatibly (2: the state
/// by table).
const PAYLOAD_FORMAT: u32 = 2;

/// What a snapshot's data holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotPayload {
    pub format: u32,
    pub state: ClusterState,
}

impl SnapshotPayload {
    pub fn encode(state: &ClusterState) -> io::Result<SnapshotData> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            format: u32,
            state: &'a ClusterState,
        }
        encode(&Borrowed {
            format: PAYLOAD_FORMAT,
            state,
        })
    }

    pub fn decode(data: &[u8]) -> io::Result<ClusterState> {
        let payload: SnapshotPayload = decode(data)?;
        if payload.format != PAYLOAD_FORMAT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot format {} is not the supported format {PAYLOAD_FORMAT}",
                    payload.format
                ),
            ));
        }
        Ok(payload.state)
    }
}

/// The snapshot file's layout: the openraft meta, then the payload bytes.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// Writes `snapshot` to the file at `path`.
pub fn save(path: &Path, snapshot: &Snapshot) -> io::Result<()> {
    #[derive(Serialize)]
    struct Borrowed<'a> {
        meta: &'a SnapshotMeta,
        #[serde(with = "serde_bytes")]
        data: &'a [u8],
    }
    let bytes = encode(&Borrowed {
        meta: &snapshot.meta,
        data: &snapshot.snapshot,
    })?;
    write_file_atomically(path, &bytes)
}

/// Reads the snapshot file at `path`, if there is one.
pub fn load(path: &Path) -> io::Result<Option<Snapshot>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let file: SnapshotFile = decode(&bytes).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snapshot file {} is corrupt: {error}", path.display()),
        )
    })?;
    Ok(Some(Snapshot {
        meta: file.meta,
        snapshot: file.data,
    }))
}
