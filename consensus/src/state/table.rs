//! What every table of the cluster state is to the store: a set of rows keyed by bytes, which
//! apply marks as changed and the store writes, loads and replaces.
//!
//! A table keeps its own row encoding (which key is which row, how a row is encoded) in its own
//! file, beside its commands and its apply; the store only sees bytes, and names the rows'
//! on-disk table after [`Table::name`]. Adding a table is its file plus a line in
//! [`super::ClusterState::tables`] and [`super::ClusterState::tables_mut`].

use std::collections::{BTreeMap, BTreeSet};
use std::io;

/// One table, as the store sees it.
pub trait Table: Send + Sync {
    /// The name of the table's rows on disk; never changes once released.
    fn name(&self) -> &'static str;
    /// The keys of every row the table holds now.
    fn row_keys(&self) -> Vec<Vec<u8>>;
    /// The row under `key` as it is now, or `None` when there is none (it was deleted).
    fn encode_row(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>>;
    /// Loads one row the store kept.
    fn load_row(&mut self, key: &[u8], value: &[u8]) -> io::Result<()>;
}

/// The rows one or more applies touched, by table; the store persists exactly these.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    rows: BTreeMap<&'static str, BTreeSet<Vec<u8>>>,
}

impl Changes {
    /// Marks the row `key` of `table` as changed (created, updated or deleted).
    pub fn touch(&mut self, table: &'static str, key: Vec<u8>) {
        self.rows.entry(table).or_default().insert(key);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.values().all(BTreeSet::is_empty)
    }

    /// Adds the rows `other` touched.
    pub fn absorb(&mut self, other: Changes) {
        for (table, keys) in other.rows {
            self.rows.entry(table).or_default().extend(keys);
        }
    }

    /// The changed rows of `table`.
    pub fn of(&self, table: &str) -> impl Iterator<Item = &Vec<u8>> {
        self.rows.get(table).into_iter().flatten()
    }

    /// Whether the row `key` of `table` changed.
    pub fn contains(&self, table: &str, key: &[u8]) -> bool {
        self.rows.get(table).is_some_and(|keys| keys.contains(key))
    }
}

/// Row keys for tables keyed by a number: big-endian, so rows sort by the number.
pub fn u64_key(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// The number a [`u64_key`] holds.
pub fn key_u64(key: &[u8]) -> io::Result<u64> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a row key is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}
