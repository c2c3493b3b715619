//! Small readers of control replies that tests keep needing.

use symphony_ctl::ClientError;
use symphony_ctl::proto::{ErrorCode, KvEntry};

/// The error code of a failed call, if the agent answered with one.
pub fn error_code(error: &ClientError) -> Option<ErrorCode> {
    error.remote().map(|error| error.code)
}

/// Finds a key's entry in a listing.
pub fn find_entry<'a>(entries: &'a [KvEntry], key: &str) -> Option<&'a KvEntry> {
    entries.iter().find(|entry| entry.key == key)
}
