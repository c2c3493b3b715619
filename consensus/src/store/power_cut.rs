//! Power cuts under the store: everything not yet synced is lost, and nothing acknowledged may
//! be.
//!
//! [`PowerCutDisk`] is a redb storage backend over memory that behaves like a disk with a
//! volatile cache: writes land in the cache (what reads see), `sync_data` makes the cache
//! durable, and at the chosen cut point — the n-th write, resize or sync — the power goes: the
//! durable image is kept as it was at the last sync (or, in the torn mode, with a random subset
//! of the writes since applied over it, as a disk that reorders its cache may leave it), and
//! every later call fails. etcd uses LazyFS for the same purpose; a backend is enough here,
//! since redb does all its I/O through it.
//!
//! The backend holds the database; the log's file (`wal`) is written beside it on the real
//! disk, so a cut here leaves the log whole and cuts the state rows behind it: the test checks
//! that the state of the reopened store is that of an applied position and loses nothing the
//! log acknowledged. What a cut does to the log's file itself is `wal`'s tests (a torn last
//! record, at every byte).
//!
//! The test runs a workload of appends (each acknowledged by its flush callback), applies,
//! votes, a truncation and a purge through the openraft storage API, cuts the power at every
//! point the workload passes, reopens the store on what survived and checks that it opens, and
//! that every acknowledged entry and vote is there (in the log, or applied in the state).

use std::sync::{Arc, Mutex};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// What a cut keeps of the writes since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutMode {
    /// Nothing: the disk kept exactly what was synced.
    DropUnsynced,
    /// A random subset, in any order (seeded).
    Torn(u64),
    /// No power cut: the call fails as on a full disk, and the disk works again after it (room
    /// was made), holding everything written before and after.
    NoSpace,
}

#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Disk {
    /// What survives a cut.
    durable: Vec<u8>,
    /// What reads see: `durable` with every write since the last sync.
    cache: Vec<u8>,
    unsynced: Vec<Op>,
    /// Writes, resizes and syncs so far.
    calls: u64,
    cut_at: Option<u64>,
    mode: Option<CutMode>,
    /// Set at the cut: the image a reopened store finds.
    after_cut: Option<Vec<u8>>,
    /// Set when the call at `cut_at` was refused for lack of space (`CutMode::NoSpace`).
    refused: bool,
}

fn power_is_off() -> std::io::Error {
    std::io::Error::other("the power is off")
}

fn apply(image: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write(offset, data) => {
            let start = usize::try_from(*offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(data.len());
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
        Op::SetLen(len) => image.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
    }
}

impl Disk {
    /// Counts a call; `Err` once the power is off.
    fn step(&mut self) -> std::io::Result<()> {
        if self.after_cut.is_some() {
            return Err(power_is_off());
        }
        self.calls += 1;
        if self.cut_at == Some(self.calls) && self.mode == Some(CutMode::NoSpace) {
            self.refused = true;
            return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
        }
        if self.cut_at == Some(self.calls) {
            let mut image = self.durable.clone();
            if let Some(CutMode::Torn(seed)) = self.mode {
                let mut rng = SmallRng::seed_from_u64(seed ^ self.calls);
                for op in &self.unsynced {
                    if rng.random_bool(0.5) {
                        apply(&mut image, op);
                    }
                }
            }
            self.after_cut = Some(image);
            return Err(power_is_off());
        }
        Ok(())
    }
}

/// A disk shared by the backend redb holds and the test that cuts its power.
#[derive(Debug, Clone, Default)]
pub struct PowerCutDisk {
    disk: Arc<Mutex<Disk>>,
}

impl PowerCutDisk {
    /// A disk holding `image`, durable, whose power goes at call `cut_at` (never if `None`).
    pub fn new(image: Vec<u8>, cut_at: Option<u64>, mode: CutMode) -> PowerCutDisk {
        PowerCutDisk {
            disk: Arc::new(Mutex::new(Disk {
                durable: image.clone(),
                cache: image,
                cut_at,
                mode: Some(mode),
                ..Disk::default()
            })),
        }
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.disk().calls
    }

    /// What the disk holds after the cut, or (with no cut yet) what it holds durably now; after
    /// a refusal for lack of space, everything written (the power stayed on).
    pub fn surviving_image(&self) -> Vec<u8> {
        let disk = self.disk();
        if disk.mode == Some(CutMode::NoSpace) {
            return disk.cache.clone();
        }
        disk.after_cut
            .clone()
            .unwrap_or_else(|| disk.durable.clone())
    }

    pub fn is_cut(&self) -> bool {
        let disk = self.disk();
        disk.after_cut.is_some() || disk.refused
    }
}

impl redb::StorageBackend for PowerCutDisk {
    fn len(&self) -> std::io::Result<u64> {
        let disk = self.disk();
        if disk.after_cut.is_some() {
            return Err(power_is_off());
        }
        Ok(disk.cache.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        let disk = self.disk();
        if disk.after_cut.is_some() {
            return Err(power_is_off());
        }
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        let end = start.saturating_add(out.len());
        let data = disk.cache.get(start..end).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "past the end")
        })?;
        out.copy_from_slice(data);
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let mut disk = self.disk();
        disk.step()?;
        let op = Op::SetLen(len);
        apply(&mut disk.cache, &op);
        disk.unsynced.push(op);
        Ok(())
    }

    fn sync_data(&self) -> std::io::Result<()> {
        let mut disk = self.disk();
        disk.step()?;
        disk.durable = disk.cache.clone();
        disk.unsynced.clear();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut disk = self.disk();
        disk.step()?;
        let op = Op::Write(offset, data.to_vec());
        apply(&mut disk.cache, &op);
        disk.unsynced.push(op);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::entry::RaftEntry;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::storage::{IOFlushed, RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
    use openraft::type_config::TypeConfigExt;
    use openraft::{EntryPayload, RaftLogReader, Vote};

    use super::*;
    use crate::state::{Command, KvCommand};
    use crate::store::health::StoreHealth;
    use crate::store::{LogStore, StateMachineStore, StoreOptions, open_on_backend};
    use crate::types::{Entry, LogId, TypeConfig};

    const ENTRIES: u64 = 30;

    fn entry(term: u64, index: u64) -> Entry {
        Entry::new_normal(
            LogId::new(LeaderId { term, node_id: 7 }, index),
            Command::Kv(KvCommand::Put {
                key: format!("k{index}"),
                value: format!("t{term}").into_bytes(),
                if_revision: None,
            }),
        )
    }

    /// What the workload saw acknowledged before the power went.
    #[derive(Debug, Default)]
    struct Acknowledged {
        /// Log entries whose append was flushed, as (index, term); later terms replace earlier.
        entries: std::collections::BTreeMap<u64, u64>,
        vote_term: Option<u64>,
    }

    async fn append(log: &mut LogStore, entry: Entry) -> std::io::Result<()> {
        let (tx, rx) = TypeConfig::oneshot();
        log.append(vec![entry], IOFlushed::signal(tx)).await?;
        rx.await
            .map_err(|_| std::io::Error::other("the flush callback was dropped"))?
    }

    /// Appends, applies, votes, truncates and purges until the first failure (the cut).
    async fn workload(
        log: &mut LogStore,
        sm: &mut StateMachineStore,
        acked: &mut Acknowledged,
    ) -> std::io::Result<()> {
        let mut term = 1;
        log.save_vote(&Vote::new_committed(term, 7)).await?;
        acked.vote_term = Some(term);
        for index in 1..=ENTRIES {
            if index == 12 {
                // A leader of a new term overwrites what an old one left uncommitted.
                append(log, entry(term, 12)).await?;
                acked.entries.insert(12, term);
                append(log, entry(term, 13)).await?;
                acked.entries.insert(13, term);
                term += 1;
                log.save_vote(&Vote::new_committed(term, 7)).await?;
                acked.vote_term = Some(term);
                // Asked for, the truncation may have happened even if it reports a failure (a
                // commit can be durable before the error of a later step): from here entries
                // 12 and 13 of the old term may go either way.
                acked.entries.retain(|at, _| *at <= 11);
                log.truncate_after(Some(entry(term - 1, 11).log_id)).await?;
            }
            let next = entry(term, index);
            append(log, next.clone()).await?;
            acked.entries.insert(index, term);
            let stream = futures_util::stream::iter([Ok((next, None))]);
            sm.apply(stream).await?;
            if index == 20 {
                // As openraft does: a snapshot first, then the log it covers goes.
                sm.get_snapshot_builder().await.build_snapshot().await?;
                log.purge(entry(term, 10).log_id).await?;
            }
        }
        Ok(())
    }

    fn open(
        dir: &std::path::Path,
        disk: PowerCutDisk,
    ) -> Result<(LogStore, StateMachineStore), crate::store::OpenError> {
        let options = StoreOptions {
            dir: dir.to_path_buf(),
        };
        open_on_backend(&options, StoreHealth::default(), disk)
    }

    /// Runs the workload with the power cut at call `cut_at`; returns the calls made and
    /// whether the cut happened.
    async fn cut_and_check(cut_at: Option<u64>, mode: CutMode) -> (u64, bool) {
        let dir = tempfile::tempdir().unwrap();
        // The store is created whole before a node uses it (`store::open` makes it under
        // another name and renames it): the cuts fall on what comes after.
        let created = PowerCutDisk::new(Vec::new(), None, CutMode::DropUnsynced);
        drop(open(dir.path(), created.clone()).unwrap());
        let disk = PowerCutDisk::new(created.surviving_image(), cut_at, mode);
        let mut acked = Acknowledged::default();
        if let Ok((mut log, mut sm)) = open(dir.path(), disk.clone()) {
            let _ = workload(&mut log, &mut sm, &mut acked).await;
        }
        let calls = disk.calls();
        let cut = disk.is_cut();
        let image = disk.surviving_image();
        let context = format!("cut at {cut_at:?} ({mode:?}), acknowledged {acked:?}");
        let reopened = PowerCutDisk::new(image, None, CutMode::DropUnsynced);
        let (mut log, mut sm) = open(dir.path(), reopened).unwrap_or_else(|error| {
            panic!("the store does not open after the cut ({error}): {context}")
        });
        let vote = log.read_vote().await.unwrap();
        if let Some(term) = acked.vote_term {
            let vote = vote.unwrap_or_else(|| panic!("the vote is gone: {context}"));
            assert!(
                vote >= Vote::new_committed(term, 7),
                "vote {vote:?}: {context}"
            );
        }
        let state = log.get_log_state().await.unwrap();
        let last = state.last_log_id.map_or(0, |id| id.index());
        let first = state.last_purged_log_id.map_or(0, |id| id.index()) + 1;
        let entries = log.try_get_log_entries(first..last + 1).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|entry| entry.log_id.index()).collect();
        assert_eq!(
            indexes,
            (first..=last).collect::<Vec<_>>(),
            "the log has a gap: {context}"
        );
        let (applied, _) = sm.applied_state().await.unwrap();
        let applied = applied.map_or(0, |id| id.index());
        let shared = sm.shared_state();
        let replica = shared.read();
        let in_log: BTreeSet<(u64, u64)> = entries
            .iter()
            .filter_map(|entry| match &entry.payload {
                EntryPayload::Normal(Command::Kv(KvCommand::Put { key, value, .. })) => {
                    let index = key.strip_prefix('k')?.parse().ok()?;
                    let term = std::str::from_utf8(value)
                        .ok()?
                        .strip_prefix('t')?
                        .parse()
                        .ok()?;
                    Some((index, term))
                }
                _ => None,
            })
            .collect();
        // The state is exactly what applying entries 1..=applied made (each puts a key of its
        // own): no entry's effect is missing, none is there twice, none from past `applied`.
        assert_eq!(
            replica.kv.revision(),
            applied,
            "the state is not that of its applied position: {context}"
        );
        assert_eq!(replica.kv.len() as u64, applied, "{context}");
        for (&index, &term) in &acked.entries {
            let logged = in_log.contains(&(index, term));
            let in_state = index <= applied
                && replica
                    .kv
                    .get(&format!("k{index}"))
                    .is_some_and(|entry| entry.value == format!("t{term}").into_bytes());
            // Superseded by a later term's entry at the same index: only the latest counts.
            assert!(
                logged || in_state,
                "acknowledged entry {index} (term {term}) is lost; log {indexes:?}, applied {applied}: {context}"
            );
        }
        (calls, cut)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_acknowledged_is_lost_at_any_cut_point() {
        let (total, cut) = cut_and_check(None, CutMode::DropUnsynced).await;
        assert!(!cut);
        // The log's own file is outside the backend (its torn ends are `wal`'s tests): the
        // calls are the state rows' commits, the snapshot's and the store's creation.
        assert!(total > 20, "the workload made only {total} calls");
        // Every call of the workload is a cut point once.
        for cut_at in 1..=total {
            cut_and_check(Some(cut_at), CutMode::DropUnsynced).await;
        }
    }

    /// A full disk at any point, then room again: the store opens on what was written, with
    /// nothing acknowledged lost and its state that of its applied position.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_disk_at_any_point_loses_nothing_and_keeps_the_state_whole() {
        let (total, _) = cut_and_check(None, CutMode::DropUnsynced).await;
        for cut_at in 1..=total {
            let (_, refused) = cut_and_check(Some(cut_at), CutMode::NoSpace).await;
            assert!(refused, "call {cut_at} was never made");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_acknowledged_is_lost_when_unsynced_writes_survive_in_part() {
        let (total, _) = cut_and_check(None, CutMode::DropUnsynced).await;
        for cut_at in 1..=total {
            for seed in 0..3 {
                cut_and_check(Some(cut_at), CutMode::Torn(seed)).await;
            }
        }
    }
}
