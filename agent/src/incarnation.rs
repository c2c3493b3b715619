//! The gossip incarnation across restarts: which life of the node this is.
//!
//! foca tells two lives of a node at one address apart by the incarnation in its identity; the
//! higher wins. It used to come from the wall clock, so a node restarted with its clock an
//! hour behind started below its own previous life, lost every conflict with it, and rejoined
//! thousands of times a second until the pool forgot the old one, shown down all the while.
//! Now the last incarnation used is kept in the config dir and the next life starts strictly
//! above it ([`symphony_gossip::next_incarnation`]), whatever the clock says. The keeper saves
//! it again when gossip rejoins under a higher one during a run.

use std::path::{Path, PathBuf};

/// The file in the config dir: the last incarnation used, in decimal.
pub const INCARNATION_FILE: &str = "gossip-incarnation";

/// The incarnation file of the node in `config_dir`.
#[derive(Debug, Clone)]
pub struct IncarnationFile {
    path: PathBuf,
}

impl IncarnationFile {
    pub fn new(config_dir: &Path) -> IncarnationFile {
        IncarnationFile {
            path: config_dir.join(INCARNATION_FILE),
        }
    }

    /// The last incarnation saved; `None` if there is none or it cannot be read (then the
    /// clock decides, as before this file existed).
    pub fn last(&self) -> Option<u64> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => match text.trim().parse() {
                Ok(value) => Some(value),
                Err(_) => {
                    tracing::warn!(path = %self.path.display(), "the gossip incarnation file is unreadable; starting from the clock");
                    None
                }
            },
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "cannot read the gossip incarnation file; starting from the clock");
                None
            }
        }
    }

    /// The incarnation for a new life, saved before it is used: a crash right after must not
    /// let the following life reuse it.
    pub fn next(&self, now_ms: u64) -> u64 {
        let next = symphony_gossip::next_incarnation(self.last(), now_ms);
        self.save(next);
        next
    }

    /// Saves `incarnation` (a failure is logged: gossip goes on, and the clock is the fallback).
    pub fn save(&self, incarnation: u64) {
        if let Err(error) =
            crate::durable::write_atomically(&self.path, incarnation.to_string().as_bytes())
        {
            tracing::warn!(path = %self.path.display(), %error, "cannot save the gossip incarnation");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_life_starts_above_the_last_whatever_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let file = IncarnationFile::new(dir.path());
        let now = 1_800_000_000_000;
        let first = file.next(now);
        assert_eq!(first, now);
        // Rejoins during the run raised it; the keeper saved that.
        file.save(first + 3);
        // Restarted with the clock an hour behind.
        assert_eq!(file.next(now - 3_600_000), first + 4);
        assert_eq!(file.last(), Some(first + 4));
    }

    #[test]
    fn a_garbled_file_falls_back_to_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(INCARNATION_FILE), "not a number").unwrap();
        let file = IncarnationFile::new(dir.path());
        assert_eq!(file.next(42), 42);
    }
}
