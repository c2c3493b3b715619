//! Reading an agent's log file (its stdout and stderr, appended across restarts), for error
//! messages and for tests that look at what an agent said.

use std::fs::File;
use std::path::Path;

/// Opens an agent's log for appending, creating it: every run of the agent adds to the same
/// file, and whoever reads it knows where a run began (see [`len`]).
pub fn append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// How long `path` is now (0 if it does not exist): where the next run's output starts.
pub fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |meta| meta.len())
}

/// The log from byte `from` on; a log that cannot be read says so instead.
pub fn read_from(path: &Path, from: u64) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
            String::from_utf8_lossy(&bytes[from..]).into_owned()
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_from_an_offset_and_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.log");
        assert_eq!(len(&path), 0);
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        assert_eq!(read_from(&path, 4), "two\nthree\n");
        assert_eq!(read_from(&path, 99), "");
        assert_eq!(tail("one\ntwo\nthree\n", 2), "two\nthree");
        assert!(read_from(&dir.path().join("none"), 0).starts_with("(cannot read"));
    }
}
