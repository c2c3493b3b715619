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

    /// A log with an entry missing below others is refused with a clear error, rather than
    /// loaded and applied around the gap (the replica would part from the others for ever).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_with_a_hole_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            dir: dir.path().to_path_buf(),
        };
        {
            let (mut log, _sm) = open(&options).unwrap();
            let entries: Vec<Entry> = (1..=5).map(|i| put(i, "k", &i.to_string())).collect();
            let (tx, rx) = crate::types::TypeConfig::oneshot();
            log.append(entries, IOFlushed::signal(tx)).await.unwrap();
            rx.await.unwrap().unwrap();
        }
        {
            let db = redb::Database::open(dir.path().join(super::super::DB_FILE)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(super::super::LOG)
                .unwrap()
                .remove(3)
                .unwrap();
            txn.commit().unwrap();
        }
        let Err(error) = open(&options) else {
            panic!("a log with a hole was opened");
        };
        assert!(
            error.to_string().contains("entry 4 follows entry 2"),
            "{error}"
        );
    }
}
