//! The Raft log's own file: an append-only write-ahead log in segments beside the database.
//!
//! Why not a redb table: a redb commit rewrites every page its B-trees touch (the log table's
//! leaf and branches, the metadata table, redb's allocator state), about 28 page writes for one
//! batch of appends, and that was a third of a manager's CPU under load. Here a batch is one
//! record written at the end of a file and one `fdatasync`; redb keeps only the state rows,
//! which the writer commits every few milliseconds instead of with every batch.
//!
//! A segment, `wal/<seq>.wal`, is a header (magic, the store's id, its sequence number) and
//! then records: `len: u32 LE, crc32: u32 LE, payload`, and zeros to its end: it is made
//! [`SEGMENT_BYTES`] long, zero-filled, so that a record's sync writes its data and no file
//! metadata (an append that grows the file costs ext4 a journal commit per sync as well: ~200
//! µs instead of ~135 µs on this machine). A zero length ends a segment's records. A record is one writer batch, a list of
//! [`Op`]s applied in order, so a batch is on disk whole or not at all. Replaying every segment
//! in order rebuilds the log: entries, vote, committed id and purge point ([`Replayed`]).
//!
//! - A crash tears at most the end of the last segment (a record written but not synced): a
//!   record there that is short or fails its checksum, and everything after it, is zeroed
//!   when the log is opened. Nothing acknowledged is in it, since acknowledgement follows the
//!   sync. A bad record anywhere else is damage, and opening fails.
//! - A segment is made whole under a temporary name and renamed into place, so a segment
//!   file always has its header; its first record is a checkpoint (vote, committed, purge
//!   point), so the segments after a deleted one replay alone.
//! - The next segment's file is made ahead, on a thread of its own, while the writer fills
//!   the current one: zero-filling and syncing 8 MiB takes 10–20 ms here, a stall every
//!   segment for every write queued behind it. Beginning a segment then costs the writer its
//!   header and checkpoint, one sync, the rename and the directory's sync. The space is taken
//!   with `fallocate` first, at once or not at all, so making a segment never fills the disk
//!   for the store's other writes; when no spare is ready (it failed, or is not done), the
//!   writer makes the segment itself, as before.
//! - Once a purge is durable, the segments whose every entry it covers are deleted.
//! - The header names the store (an id kept in the database): segments of another store, left
//!   by a `recover` or `snapshot restore` that seeded a new database over this one, are
//!   removed instead of replayed.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};

/// The directory of the segments inside the store's directory.
pub const WAL_DIR: &str = "wal";

/// A segment is closed, and the next begun, once it is this long. Small enough that a purge
/// (every snapshot) frees space soon; large enough that segments are few.
pub(crate) const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

const MAGIC: &[u8; 8] = b"SYMWAL01";
const HEADER_LEN: usize = 8 + 8 + 8;
const RECORD_HEAD: usize = 8;
/// A record longer than this is not one we wrote (the writer's batches are far smaller).
const MAX_RECORD: usize = 1 << 30;

/// One change to the log, as the writer queued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    /// The encoded entry at `index`.
    Append { index: u64, entry: &'a [u8] },
    /// Every entry with index >= `from` is gone.
    Truncate { from: u64 },
    /// Every entry with index <= `upto` is gone; `last_purged` is the encoded purge point.
    Purge { upto: u64, last_purged: &'a [u8] },
    /// A row of the log's metadata (vote, committed).
    Meta { key: &'a str, value: &'a [u8] },
}

const APPEND: u8 = 1;
const TRUNCATE: u8 = 2;
const PURGE: u8 = 3;
const META: u8 = 4;

/// What the segments hold, replayed: the log as openraft last saw it durable.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// Encoded entries by index, above the purge point.
    pub entries: BTreeMap<u64, Vec<u8>>,
    /// Metadata rows by key (vote, committed).
    pub meta: BTreeMap<String, Vec<u8>>,
    /// The purge point: index and encoded log id.
    pub last_purged: Option<(u64, Vec<u8>)>,
}

impl Replayed {
    fn apply(&mut self, op: Op<'_>) {
        match op {
            Op::Append { index, entry } => {
                self.entries.insert(index, entry.to_vec());
            }
            Op::Truncate { from } => {
                let _gone = self.entries.split_off(&from);
            }
            Op::Purge { upto, last_purged } => {
                self.entries = self.entries.split_off(&upto.saturating_add(1));
                self.last_purged = Some((upto, last_purged.to_vec()));
            }
            Op::Meta { key, value } => {
                self.meta.insert(key.to_string(), value.to_vec());
            }
        }
    }

    /// The record a new segment starts with: enough to replay without the segments before it.
    fn checkpoint(&self) -> Vec<Op<'_>> {
        let mut ops: Vec<Op<'_>> = self
            .meta
            .iter()
            .map(|(key, value)| Op::Meta { key, value })
            .collect();
        if let Some((upto, last_purged)) = &self.last_purged {
            ops.push(Op::Purge {
                upto: *upto,
                last_purged,
            });
        }
        ops
    }
}

/// A closed segment: its number and the highest entry index appended in it.
#[derive(Debug, Clone, Copy)]
struct Closed {
    seq: u64,
    max_index: Option<u64>,
}

/// The open log: owned by the store's writer thread, which alone writes it.
pub(crate) struct Wal {
    dir: PathBuf,
    store_id: u64,
    segment_bytes: u64,
    closed: VecDeque<Closed>,
    current: File,
    current_seq: u64,
    current_len: u64,
    current_max: Option<u64>,
    /// The metadata and purge point as of the last write: the next segment's checkpoint.
    /// (Entries are not kept here: the log store has them in memory already.)
    tail: Replayed,
    /// The record being encoded, kept for its allocation.
    buffer: Vec<u8>,
    /// After a new segment could not be made: the length the current one may grow to before
    /// one is tried again (0: none failed).
    rotate_after: u64,
    /// The next segment's file being made ahead (none while spares are off or none is due).
    spare: Option<Spare>,
    /// Whether to make spares (off in a test of the writer's own way).
    spares: bool,
    /// Segments the writer had to make itself since the log was opened (no spare was ready).
    pub(crate) made_by_writer: u64,
}

/// The file of segment `seq`, being zero-filled under its temporary name by its own thread.
struct Spare {
    seq: u64,
    making: std::thread::JoinHandle<io::Result<File>>,
}

impl Drop for Wal {
    /// Waits for a spare being made, so that no thread of a closed log writes in its
    /// directory when the store is opened again.
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            let _ = spare.making.join();
        }
    }
}

impl Wal {
    /// Opens the log of store `store_id` in `dir`, cutting off a torn end, or creates it with
    /// `initial` when it has no segment of that store (a new store, a seeded one, or one whose
    /// log was still in the database). Returns the log and what it holds.
    pub(crate) fn open(
        dir: &Path,
        store_id: u64,
        initial: impl FnOnce() -> io::Result<Replayed>,
    ) -> io::Result<(Wal, Replayed)> {
        let (mut wal, replayed) = Wal::open_sized(dir, store_id, SEGMENT_BYTES, initial)?;
        wal.make_spare();
        Ok((wal, replayed))
    }

    /// [`Wal::open`] with segments of `segment_bytes` (small ones in tests), and no spare
    /// begun yet.
    fn open_sized(
        dir: &Path,
        store_id: u64,
        segment_bytes: u64,
        initial: impl FnOnce() -> io::Result<Replayed>,
    ) -> io::Result<(Wal, Replayed)> {
        std::fs::create_dir_all(dir)?;
        let mut mine = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let path = item?.path();
            let Some(seq) = segment_seq(&path) else {
                // A segment being made when the power went: never renamed, so never used.
                if path.extension().is_some_and(|ext| ext == "tmp") {
                    std::fs::remove_file(&path)?;
                }
                continue;
            };
            match read_header(&path)? {
                Some((id, named)) if id == store_id && named == seq => mine.push(seq),
                Some((id, _)) if id != store_id => std::fs::remove_file(&path)?,
                // Ours by name but not by its header: damage, not something to remove.
                _ => return Err(damaged(&path, 0, "its header is not a segment's header")),
            }
        }
        mine.sort_unstable();
        let Some(&last) = mine.last() else {
            let replayed = initial()?;
            let wal = Wal::create(dir, store_id, segment_bytes, 1, &replayed)?;
            return Ok((wal, replayed));
        };
        if let Some(pair) = mine.windows(2).find(|pair| pair[1] != pair[0] + 1) {
            return Err(damaged(
                &segment_path(dir, pair[1]),
                0,
                format!("segment {} is followed by segment {}", pair[0], pair[1]),
            ));
        }
        let mut replayed = Replayed::default();
        let mut closed = VecDeque::new();
        for &seq in &mine[..mine.len() - 1] {
            let path = segment_path(dir, seq);
            let bytes = std::fs::read(&path)?;
            let found = replay(&bytes, &mut replayed, false)
                .map_err(|(offset, why)| damaged(&path, offset, why))?;
            closed.push_back(Closed {
                seq,
                max_index: found.max_index,
            });
        }
        {
            let seq = last;
            let path = segment_path(dir, seq);
            let bytes = std::fs::read(&path)?;
            let found = replay(&bytes, &mut replayed, true)
                .map_err(|(offset, why)| damaged(&path, offset, why))?;
            let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
            if let Some(torn) = bytes[found.good_len..].iter().rposition(|&byte| byte != 0) {
                // Zeroed rather than cut off, so the segment keeps its length (see above).
                tracing::warn!(
                    segment = %path.display(),
                    kept = found.good_len,
                    zeroed = torn + 1,
                    "the Raft log ended in a torn record (a crash mid-write): zeroed"
                );
                use std::os::unix::fs::FileExt;
                file.write_all_at(&vec![0; torn + 1], found.good_len as u64)?;
                file.sync_data()?;
            }
            use std::io::Seek;
            file.seek(io::SeekFrom::Start(found.good_len as u64))?;
            let tail = Replayed {
                entries: BTreeMap::new(),
                meta: replayed.meta.clone(),
                last_purged: replayed.last_purged.clone(),
            };
            let wal = Wal {
                dir: dir.to_path_buf(),
                store_id,
                segment_bytes,
                closed,
                current: file,
                current_seq: seq,
                current_len: found.good_len as u64,
                current_max: found.max_index,
                tail,
                buffer: Vec::new(),
                rotate_after: 0,
                spare: None,
                spares: true,
                made_by_writer: 0,
            };
            Ok((wal, replayed))
        }
    }

    /// Makes segment `seq` holding `start` (as its checkpoint and entries), whole, under its
    /// name: written and synced under a temporary name, then renamed, then the directory
    /// synced.
    fn create(
        dir: &Path,
        store_id: u64,
        segment_bytes: u64,
        seq: u64,
        start: &Replayed,
    ) -> io::Result<Wal> {
        let bytes = start_bytes(store_id, seq, start)?;
        let path = segment_path(dir, seq);
        let tmp = path.with_extension("tmp");
        let mut current = zero_filled(&tmp, &bytes, segment_bytes)?;
        install(dir, &tmp, &path)?;
        let used = bytes.len() as u64;
        use std::io::Seek;
        current.seek(io::SeekFrom::Start(used))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            store_id,
            segment_bytes,
            closed: VecDeque::new(),
            current,
            current_seq: seq,
            current_len: used,
            current_max: start.entries.keys().next_back().copied(),
            tail: Replayed {
                entries: BTreeMap::new(),
                meta: start.meta.clone(),
                last_purged: start.last_purged.clone(),
            },
            buffer: Vec::new(),
            rotate_after: 0,
            spare: None,
            spares: true,
            made_by_writer: 0,
        })
    }

    /// Begins making the next segment's file on a thread of its own, unless one is being made
    /// (or spares are off). A thread that cannot be started leaves the writer to make it.
    fn make_spare(&mut self) {
        if !self.spares || self.spare.is_some() {
            return;
        }
        let seq = self.current_seq + 1;
        let tmp = segment_path(&self.dir, seq).with_extension("tmp");
        let segment_bytes = self.segment_bytes;
        let making = std::thread::Builder::new()
            .name("symphony-wal-spare".into())
            .spawn(move || zero_filled(&tmp, &[], segment_bytes));
        match making {
            Ok(making) => self.spare = Some(Spare { seq, making }),
            Err(error) => {
                tracing::debug!(%error, "cannot start the thread making the next Raft log segment")
            }
        }
    }

    /// Writes `ops` as one record and syncs it: durable when this returns `Ok`. Then frees the
    /// segments a purge among them made useless, and begins a new segment when this one is
    /// full. An error leaves the file with at most a torn record at its end, which the next
    /// [`Wal::open`] cuts off; the writer writes nothing more until then.
    pub(crate) fn write(&mut self, ops: &[Op<'_>]) -> io::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        if let Err(error) = encode_record(ops, &mut buffer) {
            self.buffer = buffer;
            return Err(error);
        }
        // A record that does not fit goes to the next segment (one larger than a whole segment
        // grows the file it begins in).
        if self.current_len + buffer.len() as u64 > self.segment_bytes.max(self.rotate_after)
            && self.current_len > HEADER_LEN as u64
            && let Err(error) = self.rotate()
        {
            // No room for a new segment (a disk nearly full): the record goes at the end of
            // this one, which grows; a new segment is tried again an eighth of one later. A
            // log that cannot begin a segment must not stop the store while it can still
            // append.
            self.rotate_after = self.current_len + self.segment_bytes / 8;
            tracing::warn!(%error, segment = self.current_seq, "cannot begin a new Raft log segment; the current one grows");
        }
        let written = self
            .current
            .write_all(&buffer)
            .and_then(|()| self.current.sync_data());
        self.current_len += buffer.len() as u64;
        self.buffer = buffer;
        written?;
        let mut purged = None;
        for op in ops {
            if let Op::Append { index, .. } = op {
                self.current_max = Some(self.current_max.map_or(*index, |max| max.max(*index)));
            }
            if let Op::Purge { upto, .. } = op {
                purged = Some(*upto);
            }
            if !matches!(op, Op::Append { .. }) {
                self.tail.apply(op.clone());
            }
        }
        if let Some(upto) = purged {
            self.delete_purged(upto)?;
        }
        Ok(())
    }

    /// Deletes, oldest first, the closed segments whose every entry is at or below `upto`
    /// (the purge that says so is durable in a later segment).
    fn delete_purged(&mut self, upto: u64) -> io::Result<()> {
        let mut deleted = false;
        while let Some(oldest) = self.closed.front()
            && oldest.max_index.is_none_or(|max| max <= upto)
        {
            std::fs::remove_file(segment_path(&self.dir, oldest.seq))?;
            self.closed.pop_front();
            deleted = true;
        }
        if deleted {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Closes the current segment and begins the next with a checkpoint: in the spare made
    /// ahead when there is one (waiting for it if it is nearly done: it is further along than
    /// a new one would be), else in a file made here.
    fn rotate(&mut self) -> io::Result<()> {
        let seq = self.current_seq + 1;
        let start = start_bytes(self.store_id, seq, &self.tail)?;
        let path = segment_path(&self.dir, seq);
        let tmp = path.with_extension("tmp");
        let spare = match self.spare.take() {
            Some(spare) if spare.seq == seq => spare
                .making
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the thread making it panicked"))),
            Some(stale) => {
                let _ = stale.making.join();
                Err(io::Error::other("the spare was for another segment"))
            }
            None => Err(io::Error::other("none was being made")),
        };
        let spare = spare.and_then(|file| {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&start, 0)?;
            file.sync_data()?;
            Ok(file)
        });
        let made = match spare {
            Ok(file) => Ok(file),
            Err(error) => {
                tracing::debug!(%error, segment = seq, "no spare Raft log segment; the writer makes it");
                self.made_by_writer += 1;
                zero_filled(&tmp, &start, self.segment_bytes)
            }
        };
        let mut file = match made.and_then(|file| install(&self.dir, &tmp, &path).map(|()| file)) {
            Ok(file) => file,
            Err(error) => {
                // Made again for the next try (room may be made by then).
                self.make_spare();
                return Err(error);
            }
        };
        use std::io::Seek;
        file.seek(io::SeekFrom::Start(start.len() as u64))?;
        self.closed.push_back(Closed {
            seq: self.current_seq,
            max_index: self.current_max,
        });
        self.current = file;
        self.current_seq = seq;
        self.current_len = start.len() as u64;
        self.current_max = None;
        self.rotate_after = 0;
        self.make_spare();
        Ok(())
    }

    /// The segment files now in use, oldest first (for tests and diagnostics).
    #[cfg(test)]
    fn segments(&self) -> Vec<u64> {
        self.closed
            .iter()
            .map(|closed| closed.seq)
            .chain([self.current_seq])
            .collect()
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.wal"))
}

fn segment_seq(path: &Path) -> Option<u64> {
    if path.extension()? != "wal" {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

/// What segment `seq` begins with: its header, and one record of `start`'s checkpoint and
/// entries (none when it holds nothing).
fn start_bytes(store_id: u64, seq: u64, start: &Replayed) -> io::Result<Vec<u8>> {
    let mut ops = start.checkpoint();
    ops.extend(
        start
            .entries
            .iter()
            .map(|(&index, entry)| Op::Append { index, entry }),
    );
    let mut bytes = header(store_id, seq).to_vec();
    if !ops.is_empty() {
        encode_record(&ops, &mut bytes)?;
    }
    Ok(bytes)
}

/// Makes `tmp`: `prefix`, then zeros up to `segment_bytes`, synced. The space is allocated
/// first, at once or not at all (a full disk fails here, taking nothing); a file system
/// without `fallocate` gets the zeros alone. Whatever fails, no half-made file keeps space.
fn zero_filled(tmp: &Path, prefix: &[u8], segment_bytes: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let made = (|| {
        let len = segment_bytes.max(prefix.len() as u64);
        match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => {}
            // A file system without it: the zeros below allocate as they go.
            Err(errno) if errno == rustix::io::Errno::OPNOTSUPP => {}
            Err(errno) if errno == rustix::io::Errno::NOSPC => {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            Err(errno) => return Err(errno.into()),
        }
        use std::os::unix::fs::FileExt;
        file.write_all_at(prefix, 0)?;
        // The zeros in pieces: a segment-sized buffer would stay with the allocator.
        let zeros = [0u8; 64 * 1024];
        let mut at = prefix.len() as u64;
        while at < segment_bytes {
            let piece = (segment_bytes - at).min(zeros.len() as u64) as usize;
            file.write_all_at(&zeros[..piece], at)?;
            at += piece as u64;
        }
        file.sync_all()
    })();
    if let Err(error) = made {
        let _ = std::fs::remove_file(tmp);
        return Err(error);
    }
    Ok(file)
}

/// Puts the made segment `tmp` in place as `path`, durably.
fn install(dir: &Path, tmp: &Path, path: &Path) -> io::Result<()> {
    std::fs::rename(tmp, path)?;
    File::open(dir)?.sync_all()
}

fn header(store_id: u64, seq: u64) -> [u8; HEADER_LEN] {
    let mut bytes = [0; HEADER_LEN];
    bytes[..8].copy_from_slice(MAGIC);
    bytes[8..16].copy_from_slice(&store_id.to_le_bytes());
    bytes[16..].copy_from_slice(&seq.to_le_bytes());
    bytes
}

/// The store id and sequence number a segment's header names; `None` for a file that is not
/// a segment of ours (too short, another magic).
fn read_header(path: &Path) -> io::Result<Option<(u64, u64)>> {
    let mut bytes = [0; HEADER_LEN];
    let mut file = File::open(path)?;
    match file.read_exact(&mut bytes) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    if &bytes[..8] != MAGIC {
        return Ok(None);
    }
    let word = |at: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    Ok(Some((word(8), word(16))))
}

fn damaged(path: &Path, offset: usize, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "the Raft log segment {} is damaged at byte {offset}: {why}",
            path.display()
        ),
    )
}

/// What replaying one segment found.
struct Found {
    /// The length of its good records (with the header): where a torn end begins.
    good_len: usize,
    max_index: Option<u64>,
}

/// Applies every record of `bytes` (a whole segment, header checked) to `replayed`. A short
/// or mismatching record ends the replay when `last` (a torn end) and is damage otherwise;
/// a record whose checksum holds but whose ops do not parse is damage anywhere.
fn replay(bytes: &[u8], replayed: &mut Replayed, last: bool) -> Result<Found, (usize, String)> {
    let mut at = HEADER_LEN;
    let mut max_index: Option<u64> = None;
    while at < bytes.len() {
        if bytes.get(at..at + 4).is_none_or(|len| len == [0; 4]) {
            // The zeros after the last record (or a segment's last bytes, too few for a record).
            break;
        }
        let Some(payload) = record_at(bytes, at) else {
            if last {
                break;
            }
            return Err((at, "a record is cut short or fails its checksum".into()));
        };
        let ops = decode_record(payload).map_err(|why| (at, why))?;
        for op in ops {
            if let Op::Append { index, .. } = op {
                max_index = Some(max_index.map_or(index, |max| max.max(index)));
            }
            replayed.apply(op);
        }
        at += RECORD_HEAD + payload.len();
    }
    Ok(Found {
        good_len: at.min(bytes.len()),
        max_index,
    })
}

/// What [`check_segment`] found, for the `wal` fuzz target.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCheck {
    /// The length of `body`'s good records, as opening the log keeps them.
    pub good_len: usize,
    pub max_index: Option<u64>,
    pub entries: BTreeMap<u64, Vec<u8>>,
    pub meta: BTreeMap<String, Vec<u8>>,
    pub last_purged: Option<(u64, Vec<u8>)>,
    /// The good records encoded again from the ops they decoded to.
    pub reencoded: Vec<u8>,
}

/// Replays `body` as what follows a segment's header, as opening the log does with its last
/// segment (`last`: a bad record ends it) or an earlier one (a bad record is damage: the error
/// names its offset and why). For the `wal` fuzz target, which feeds it what a damaged disk
/// could hold.
#[doc(hidden)]
pub fn check_segment(body: &[u8], last: bool) -> Result<SegmentCheck, (usize, String)> {
    let mut bytes = header(1, 1).to_vec();
    bytes.extend_from_slice(body);
    let mut replayed = Replayed::default();
    let found = replay(&bytes, &mut replayed, last)?;
    let mut reencoded = Vec::new();
    let mut at = HEADER_LEN;
    while at < found.good_len {
        let Some(payload) = record_at(&bytes, at) else {
            return Err((at, "a good record does not read again".into()));
        };
        let ops = decode_record(payload).map_err(|why| (at, why))?;
        encode_record(&ops, &mut reencoded).map_err(|error| (at, error.to_string()))?;
        at += RECORD_HEAD + payload.len();
    }
    Ok(SegmentCheck {
        good_len: found.good_len - HEADER_LEN,
        max_index: found.max_index,
        entries: replayed.entries,
        meta: replayed.meta,
        last_purged: replayed.last_purged,
        reencoded,
    })
}

/// Records as the writer writes them (metadata, appends, a truncation, a purge), for the
/// `wal` fuzz target's seeds.
#[doc(hidden)]
pub fn sample_records(entries: &[&[u8]]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_record(
        &[Op::Meta {
            key: "vote",
            value: b"\x93\x01\x02\xc3",
        }],
        &mut out,
    )?;
    for (index, entry) in (1..).zip(entries) {
        encode_record(&[Op::Append { index, entry }], &mut out)?;
    }
    let end = entries.len() as u64;
    encode_record(&[Op::Truncate { from: end }], &mut out)?;
    encode_record(
        &[
            Op::Purge {
                upto: 1,
                last_purged: b"\x92\x01\x01",
            },
            Op::Meta {
                key: "committed",
                value: b"\x92\x01\x02",
            },
        ],
        &mut out,
    )?;
    Ok(out)
}

/// `payload` framed as a record (length and checksum), for the `wal` fuzz target to make
/// records whose checksums hold; an error for one longer than a record may be.
#[doc(hidden)]
pub fn frame_record(payload: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = vec![0; RECORD_HEAD];
    out.extend_from_slice(payload);
    seal(&mut out)?;
    Ok(out)
}

/// The payload of the record at `at`, if it is whole and its checksum holds.
fn record_at(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let head = bytes.get(at..at + RECORD_HEAD)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(at + RECORD_HEAD..at + RECORD_HEAD + len)?;
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// Appends the record of `ops` to `out`.
fn encode_record(ops: &[Op<'_>], out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEAD]);
    for op in ops {
        match op {
            Op::Append { index, entry } => {
                out.push(APPEND);
                out.extend_from_slice(&index.to_le_bytes());
                put_bytes(out, entry)?;
            }
            Op::Truncate { from } => {
                out.push(TRUNCATE);
                out.extend_from_slice(&from.to_le_bytes());
            }
            Op::Purge { upto, last_purged } => {
                out.push(PURGE);
                out.extend_from_slice(&upto.to_le_bytes());
                put_bytes(out, last_purged)?;
            }
            Op::Meta { key, value } => {
                out.push(META);
                put_bytes(out, key.as_bytes())?;
                put_bytes(out, value)?;
            }
        }
    }
    seal(&mut out[start..])
}

/// Fills in the head of `record` (a head's room, then the payload): its length and checksum.
fn seal(record: &mut [u8]) -> io::Result<()> {
    let (head, payload) = record.split_at_mut(RECORD_HEAD);
    if payload.len() > MAX_RECORD {
        return Err(too_long(payload.len()));
    }
    let len = u32::try_from(payload.len()).map_err(|_| too_long(payload.len()))?;
    head[..4].copy_from_slice(&len.to_le_bytes());
    head[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    Ok(())
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| too_long(bytes.len()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// A batch or an entry larger than a record may be (the writer's are far smaller: a frame is
/// at most 16 MiB).
fn too_long(len: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{len} bytes are too many for one Raft log record"),
    )
}

/// The ops of a record's payload.
fn decode_record(mut payload: &[u8]) -> Result<Vec<Op<'_>>, String> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if input.len() < n {
            return Err(format!(
                "an op wants {n} more bytes, {} are left",
                input.len()
            ));
        }
        let (taken, rest) = input.split_at(n);
        *input = rest;
        Ok(taken)
    }
    fn word(input: &mut &[u8]) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            take(input, 8)?
                .try_into()
                .map_err(|_| "a short word".to_string())?,
        ))
    }
    fn bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let len = u32::from_le_bytes(
            take(input, 4)?
                .try_into()
                .map_err(|_| "a short length".to_string())?,
        );
        take(input, len as usize)
    }
    let mut ops = Vec::new();
    while let Some((&tag, rest)) = payload.split_first() {
        payload = rest;
        let op = match tag {
            APPEND => Op::Append {
                index: word(&mut payload)?,
                entry: bytes(&mut payload)?,
            },
            TRUNCATE => Op::Truncate {
                from: word(&mut payload)?,
            },
            PURGE => Op::Purge {
                upto: word(&mut payload)?,
                last_purged: bytes(&mut payload)?,
            },
            META => Op::Meta {
                key: std::str::from_utf8(bytes(&mut payload)?)
                    .map_err(|_| "a metadata key is not UTF-8".to_string())?,
                value: bytes(&mut payload)?,
            },
            other => return Err(format!("unknown op {other}")),
        };
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: u64 = 0x5eed;
    /// Small segments, so a test passes through several.
    const SMALL: u64 = 4096;

    fn entry(index: u64) -> Vec<u8> {
        format!("entry {index} {}", "x".repeat(100)).into_bytes()
    }

    /// Opens as a store does, a spare begun.
    fn open(dir: &Path) -> (Wal, Replayed) {
        let (mut wal, replayed) =
            Wal::open_sized(dir, ID, SMALL, || Ok(Replayed::default())).unwrap();
        wal.make_spare();
        (wal, replayed)
    }

    /// Waits until the spare being made, if any, is done.
    fn spare_done(wal: &Wal) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while wal
            .spare
            .as_ref()
            .is_some_and(|spare| !spare.making.is_finished())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the spare is not made"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn append(wal: &mut Wal, indexes: std::ops::RangeInclusive<u64>) {
        for index in indexes {
            let bytes = entry(index);
            wal.write(&[Op::Append {
                index,
                entry: &bytes,
            }])
            .unwrap();
        }
    }

    fn indexes(replayed: &Replayed) -> Vec<u64> {
        replayed.entries.keys().copied().collect()
    }

    /// Appends, a truncation, metadata and a purge, over several segments, replay as they
    /// were written; the purge deletes the segments it covers, and what is left still replays
    /// alone (from its checkpoint).
    #[test]
    fn what_is_written_replays_and_a_purge_frees_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, replayed) = open(dir.path());
        assert_eq!(replayed, Replayed::default());
        wal.write(&[Op::Meta {
            key: "vote",
            value: b"v1",
        }])
        .unwrap();
        append(&mut wal, 1..=100);
        wal.write(&[Op::Truncate { from: 91 }]).unwrap();
        append(&mut wal, 91..=120);
        assert!(wal.segments().len() > 3, "{:?}", wal.segments());
        drop(wal);

        let (mut wal, replayed) = open(dir.path());
        assert_eq!(indexes(&replayed), (1..=120).collect::<Vec<_>>());
        assert_eq!(replayed.entries[&95], entry(95));
        assert_eq!(replayed.meta["vote"], b"v1");
        let before = wal.segments();
        wal.write(&[Op::Purge {
            upto: 100,
            last_purged: b"p100",
        }])
        .unwrap();
        let after = wal.segments();
        assert!(after.len() < before.len(), "{before:?} -> {after:?}");
        assert_eq!(after.last(), before.last());
        append(&mut wal, 121..=125);
        drop(wal);

        let (_wal, replayed) = open(dir.path());
        assert_eq!(indexes(&replayed), (101..=125).collect::<Vec<_>>());
        assert_eq!(replayed.last_purged, Some((100, b"p100".to_vec())));
        assert_eq!(replayed.meta["vote"], b"v1");
    }

    /// A crash mid-write leaves the last record torn anywhere in its bytes (cut short, or
    /// garbage where its bytes should be): the log opens with every earlier record, the torn
    /// one gone, and takes writes again that survive the next reopen.
    #[test]
    fn a_torn_last_record_is_dropped_and_the_log_goes_on() {
        let scratch = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(scratch.path());
        append(&mut wal, 1..=3);
        let path = segment_path(scratch.path(), wal.current_seq);
        let before_last = wal.current_len as usize;
        append(&mut wal, 4..=4);
        let end = wal.current_len as usize;
        drop(wal);
        let whole = std::fs::read(&path).unwrap();
        for cut in before_last..end {
            for garbage in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let wal_dir = dir.path();
                let mut torn = whole.clone();
                for (offset, byte) in torn[cut..end].iter_mut().enumerate() {
                    *byte = if garbage { (offset as u8) ^ 0xa5 } else { 0 };
                }
                std::fs::write(segment_path(wal_dir, 1), &torn).unwrap();
                let (mut wal, replayed) = open(wal_dir);
                assert_eq!(indexes(&replayed), vec![1, 2, 3], "cut at {cut}, {garbage}");
                append(&mut wal, 4..=5);
                drop(wal);
                let (_, replayed) = open(wal_dir);
                assert_eq!(indexes(&replayed), vec![1, 2, 3, 4, 5], "cut at {cut}");
            }
        }
    }

    /// A bad record in a segment before the last is damage, not a torn end: opening fails
    /// with the segment and the offset named, rather than dropping entries after it.
    #[test]
    fn a_bad_record_before_the_last_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path());
        append(&mut wal, 1..=100);
        let first = wal.segments()[0];
        drop(wal);
        let path = segment_path(dir.path(), first);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN + RECORD_HEAD + 3] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let Err(error) = Wal::open_sized(dir.path(), ID, SMALL, || Ok(Replayed::default())) else {
            panic!("a damaged segment was replayed");
        };
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("is damaged at byte"), "{error}");
    }

    /// Segments of another store (one a seeded database replaced) and a segment left half
    /// made are removed; the log starts from `initial`.
    #[test]
    fn another_stores_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut old, _) =
                Wal::open_sized(dir.path(), 1, SMALL, || Ok(Replayed::default())).unwrap();
            append(&mut old, 1..=50);
        }
        std::fs::write(dir.path().join("0000000000000099.tmp"), b"half").unwrap();
        let initial = Replayed {
            last_purged: Some((7, b"p7".to_vec())),
            ..Replayed::default()
        };
        let (wal, replayed) =
            Wal::open_sized(dir.path(), 2, SMALL, || Ok(initial.clone())).unwrap();
        assert_eq!(replayed, initial);
        assert_eq!(wal.segments(), vec![1]);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|item| item.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        drop(wal);
        let (_, replayed) = Wal::open_sized(dir.path(), 2, SMALL, || {
            panic!("the log exists: no initial content is asked for")
        })
        .unwrap();
        assert_eq!(replayed, initial);
    }

    /// A new segment that cannot be made (here: its temporary name is taken by a directory;
    /// in life, a nearly full disk) does not fail the write: the current segment grows, and a
    /// segment is begun once it can be; everything replays.
    #[test]
    fn a_segment_that_cannot_be_made_lets_the_current_one_grow() {
        let dir = tempfile::tempdir().unwrap();
        // No spare: the writer's own way of making a segment is what fails.
        let (mut wal, _) =
            Wal::open_sized(dir.path(), ID, SMALL, || Ok(Replayed::default())).unwrap();
        wal.spares = false;
        let blocker = segment_path(dir.path(), 2).with_extension("tmp");
        std::fs::create_dir(&blocker).unwrap();
        append(&mut wal, 1..=100);
        assert_eq!(wal.segments(), vec![1]);
        assert!(wal.current_len > SMALL, "{}", wal.current_len);
        std::fs::remove_dir(&blocker).unwrap();
        append(&mut wal, 101..=150);
        assert!(wal.segments().len() > 1, "{:?}", wal.segments());
        drop(wal);
        let (_, replayed) = open(dir.path());
        assert_eq!(indexes(&replayed), (1..=150).collect::<Vec<_>>());
    }

    /// The next segment is made ahead while the current one fills, and the writer begins it
    /// with a header and a checkpoint instead of making it; what it holds replays, and a
    /// spare left by a crash is removed at the next open.
    #[test]
    fn the_next_segment_is_made_ahead_and_begun_from_its_spare() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = open(dir.path());
        wal.write(&[Op::Meta {
            key: "vote",
            value: b"v1",
        }])
        .unwrap();
        let spare = |seq: u64| segment_path(dir.path(), seq).with_extension("tmp");
        for rotations in 1..=3 {
            spare_done(&wal);
            let seq = wal.current_seq + 1;
            assert_eq!(std::fs::metadata(spare(seq)).unwrap().len(), SMALL);
            let mut index = wal.current_max.unwrap_or(0);
            while wal.current_seq < seq {
                index += 1;
                append(&mut wal, index..=index);
            }
            assert!(!spare(seq).exists());
            assert_eq!(wal.segments().len(), rotations + 1);
        }
        assert_eq!(wal.made_by_writer, 0);
        let last = wal.current_max.unwrap();
        spare_done(&wal);
        let left = spare(wal.current_seq + 1);
        assert!(left.exists());
        // A closed log (or a crash) leaves its spare: a temporary file, removed at the open.
        drop(wal);
        let (_wal, replayed) = Wal::open_sized(dir.path(), ID, SMALL, || unreachable!()).unwrap();
        assert!(!left.exists());
        assert_eq!(indexes(&replayed), (1..=last).collect::<Vec<_>>());
        assert_eq!(replayed.meta["vote"], b"v1");
    }

    /// Making a segment on a disk without room for it fails at once and leaves no file.
    #[test]
    fn a_segment_without_room_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("0000000000000002.tmp");
        let probe = File::create(dir.path().join("probe")).unwrap();
        if rustix::fs::fallocate(&probe, rustix::fs::FallocateFlags::empty(), 0, 4096)
            == Err(rustix::io::Errno::OPNOTSUPP)
        {
            // Without it the zeros would be written until the disk is full.
            eprintln!("skipped: this file system has no fallocate");
            return;
        }
        let stat = rustix::fs::statvfs(dir.path()).unwrap();
        let free = stat.f_bavail * stat.f_frsize;
        let error = zero_filled(&tmp, b"head", free + (1 << 30)).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::StorageFull, "{error}");
        assert!(!tmp.exists());
        let file = zero_filled(&tmp, b"head", 100).unwrap();
        assert_eq!(file.metadata().unwrap().len(), 100);
        assert_eq!(&std::fs::read(&tmp).unwrap()[..5], b"head\0");
    }

    /// Records decode to the ops they were made of; a payload cut anywhere is refused.
    #[test]
    fn records_round_trip_and_cut_payloads_are_refused() {
        let ops = [
            Op::Append {
                index: 3,
                entry: b"three",
            },
            Op::Truncate { from: 3 },
            Op::Purge {
                upto: 2,
                last_purged: b"two",
            },
            Op::Meta {
                key: "vote",
                value: b"v",
            },
        ];
        let mut bytes = Vec::new();
        encode_record(&ops, &mut bytes).unwrap();
        let payload = record_at(&bytes, 0).unwrap();
        assert_eq!(decode_record(payload).unwrap(), ops);
        for cut in 1..payload.len() {
            if let Ok(decoded) = decode_record(&payload[..cut]) {
                // A cut can only fall between ops and leave a prefix of them.
                assert!(decoded.len() < ops.len() && ops.starts_with(&decoded));
            }
        }
        assert!(record_at(&bytes[..bytes.len() - 1], 0).is_none());
    }
}
