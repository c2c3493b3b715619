//! Whether the store can still write: the first write that failed, and why.
//!
//! A write that cannot be made durable is never acknowledged, and openraft stops the Raft node
//! when told of it. This records why, in a form code can act on (a full disk or another I/O
//! error), so the node can say so and its owner can start the Raft node again from what is on
//! disk once the cause is gone — reopening the file rather than trusting pages a failed fsync
//! may have left behind.

use std::sync::{Arc, Mutex};

/// Why the store stopped writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFault {
    /// The disk (or its quota) is full.
    pub no_space: bool,
    pub message: String,
}

/// Shared by the writer, which records the fault, and the handle, which reports it.
#[derive(Debug, Clone, Default)]
pub struct StoreHealth {
    fault: Arc<Mutex<Option<StoreFault>>>,
}

impl StoreHealth {
    /// Records the first failed write; later ones (redb answers every write after an I/O error
    /// with "previous I/O error") keep the first cause.
    pub(crate) fn failed(&self, error: &std::io::Error) {
        let mut fault = self.lock();
        if fault.is_none() {
            *fault = Some(StoreFault {
                no_space: is_no_space(error),
                message: error.to_string(),
            });
        }
    }

    pub fn fault(&self) -> Option<StoreFault> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<StoreFault>> {
        self.fault
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether `error` says the disk is full (ENOSPC, or EDQUOT for a quota).
pub fn is_no_space(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::StorageFull
        || error.kind() == std::io::ErrorKind::QuotaExceeded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_fault_is_kept() {
        let health = StoreHealth::default();
        assert_eq!(health.fault(), None);
        health.failed(&std::io::Error::from(std::io::ErrorKind::StorageFull));
        health.failed(&std::io::Error::other("Previous I/O error occurred"));
        let fault = health.fault().unwrap();
        assert!(fault.no_space);
        let other = StoreHealth::default();
        other.failed(&std::io::Error::from_raw_os_error(5));
        assert!(!other.fault().unwrap().no_space);
    }
}
