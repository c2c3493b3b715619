//! openraft's storage test suite against our store, plus crash-and-reopen checks of our own.

use openraft::StorageError;
use openraft::error::ErrorSource;
use openraft::testing::log::{StoreBuilder, Suite};

use super::{LogStore, StateMachineStore, StoreOptions};
use crate::types::TypeConfig;

struct TempStoreBuilder;

fn storage_error(error: &(dyn std::error::Error + 'static)) -> StorageError<TypeConfig> {
    StorageError::write(ErrorSource::from_string(error.to_string()))
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for TempStoreBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().map_err(|e| storage_error(&e))?;
        let (log, sm) = super::open(&StoreOptions {
            dir: dir.path().to_path_buf(),
        })
        .map_err(|e| storage_error(&e))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() -> Result<(), StorageError<TypeConfig>> {
    Suite::test_all(TempStoreBuilder).await?;
    Ok(())
}

mod reopen {
    use std::time::Duration;

    use openraft::entry::RaftEntry;
    use openraft::impls::leader_id_adv::LeaderId;
    use openraft::storage::{IOFlushed, RaftLogStorage, RaftStateMachine};
    use openraft::type_config::TypeConfigExt;
    use openraft::{RaftLogReader, Vote};

    use super::super::{StoreOptions, open};
    use crate::state::{Command, KvCommand};
    use crate::types::{Entry, LogId};

    fn put(index: u64, key: &str, value: &str) -> Entry {
        Entry::new_normal(
            LogId::new(
                LeaderId {
                    term: 1,
                    node_id: 7,
                },
                index,
            ),
            Command::Kv(KvCommand::Put {
                key: key.into(),
                value: value.as_bytes().to_vec(),
                if_revision: None,
            }),
        )
    }

    /// What is appended, voted and applied survives closing and reopening the store, and the
    /// reopened state machine is at an applied position that matches its rows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn log_vote_and_state_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            dir: dir.path().to_path_buf(),
        };
        {
            let (mut log, mut sm) = open(&options).unwrap();
            log.save_vote(&Vote::new_committed(1, 7)).await.unwrap();
            let entries: Vec<Entry> = (1..=50)
                .map(|i| put(i, &format!("k{}", i % 10), &i.to_string()))
                .collect();
            let (tx, rx) = crate::types::TypeConfig::oneshot();
            log.append(entries.clone(), IOFlushed::signal(tx))
                .await
                .unwrap();
            rx.await.unwrap().unwrap();
            let stream = futures_util::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
            sm.apply(stream).await.unwrap();
            // A waited-for write (the vote) flushes the coalesced state rows queued before it
            // only when due; wait past the flush interval so the rows are on disk.
            tokio::time::sleep(
                super::super::writer::STATE_FLUSH_INTERVAL + Duration::from_millis(50),
            )
            .await;
            log.save_vote(&Vote::new_committed(1, 7)).await.unwrap();
        }
        let (mut log, mut sm) = open(&options).unwrap();
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(Vote::new_committed(1, 7))
        );
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|id| id.index()), Some(50));
        assert_eq!(log.try_get_log_entries(10..20).await.unwrap().len(), 10);
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|id| id.index()), Some(50));
        let shared = sm.shared_state();
        let state = shared.read();
        assert_eq!(state.kv.revision(), 50);
        assert_eq!(state.kv.len(), 10);
        assert_eq!(state.kv.get("k0").unwrap().value, b"50");
        assert_eq!(state.kv.get("k3").unwrap().version, 5);
    }

    /// Writes a store as one of an earlier version left it: the log and the vote in the
    /// database's log tables, no log file.
    fn store_of_an_earlier_version(dir: &std::path::Path, indexes: &[u64]) {
        use super::super::{DB_FILE, LOG, LOG_META, create_tables, encode};
        let db = redb::Database::create(dir.join(DB_FILE)).unwrap();
        create_tables(&db).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut log = txn.open_table(LOG).unwrap();
            for &index in indexes {
                let entry = encode(&put(index, "k", &index.to_string())).unwrap();
                log.insert(index, entry.as_slice()).unwrap();
            }
            let mut meta = txn.open_table(LOG_META).unwrap();
            let vote: crate::types::Vote = Vote::new_committed(1, 7);
            let vote = encode(&vote).unwrap();
            meta.insert(super::super::log::VOTE_KEY, vote.as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }

    /// A store whose log is still in the database (an earlier version's) opens with the log
    /// and the vote moved into the log file: the database's copy is gone, and the moved log
    /// survives the next reopen and takes appends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_in_the_database_moves_into_the_log_file() {
        use redb::{ReadableDatabase, ReadableTableMetadata};
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            dir: dir.path().to_path_buf(),
        };
        store_of_an_earlier_version(dir.path(), &[1, 2, 3, 4, 5]);
        {
            let (mut log, _sm) = open(&options).unwrap();
            assert_eq!(log.try_get_log_entries(1..).await.unwrap().len(), 5);
            let (tx, rx) = crate::types::TypeConfig::oneshot();
            log.append(vec![put(6, "k", "6")], IOFlushed::signal(tx))
                .await
                .unwrap();
            rx.await.unwrap().unwrap();
        }
        {
            let db = redb::Database::open(dir.path().join(super::super::DB_FILE)).unwrap();
            let txn = db.begin_read().unwrap();
            assert_eq!(txn.open_table(super::super::LOG).unwrap().len().unwrap(), 0);
            assert_eq!(
                txn.open_table(super::super::LOG_META)
                    .unwrap()
                    .len()
                    .unwrap(),
                0
            );
        }
        let (mut log, _sm) = open(&options).unwrap();
        assert_eq!(
            log.read_vote().await.unwrap(),
            Some(Vote::new_committed(1, 7))
        );
        let entries = log.try_get_log_entries(1..).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|entry| entry.index()).collect();
        assert_eq!(indexes, vec![1, 2, 3, 4, 5, 6]);
    }

    /// A store whose database names a log file that is not there refuses to open: starting
    /// with an empty log and no vote would forget what this replica promised the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_log_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            dir: dir.path().to_path_buf(),
        };
        {
            let (mut log, _sm) = open(&options).unwrap();
            log.save_vote(&Vote::new_committed(1, 7)).await.unwrap();
        }
        std::fs::remove_dir_all(dir.path().join(super::super::wal::WAL_DIR)).unwrap();
        let Err(error) = open(&options) else {
            panic!("a store without its log file was opened");
        };
        assert!(error.to_string().contains("is missing"), "{error}");
    }

    /// A log with an entry missing below others is refused with a clear error, rather than
    /// loaded and applied around the gap (the replica would part from the others for ever).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_with_a_hole_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            dir: dir.path().to_path_buf(),
        };
        store_of_an_earlier_version(dir.path(), &[1, 2, 4, 5]);
        let Err(error) = open(&options) else {
            panic!("a log with a hole was opened");
        };
        assert!(
            error.to_string().contains("entry 4 follows entry 2"),
            "{error}"
        );
    }
}
