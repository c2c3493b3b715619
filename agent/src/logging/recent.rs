//! The agent's recent log lines, kept in memory for `symphony-ctl debug bundle`.
//!
//! The log goes to stderr as ever; every line written there is also kept in a ring of the last
//! [`KEPT`] lines (colours stripped), so that a support bundle can hold what the agent said
//! lately without knowing where the operator sent its stderr. The ring is global because the
//! subscriber that fills it is: there is one per process.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

/// Lines kept.
pub const KEPT: usize = 2_000;

static RECENT: OnceLock<Mutex<VecDeque<String>>> = OnceLock::new();

fn ring() -> &'static Mutex<VecDeque<String>> {
    RECENT.get_or_init(|| Mutex::new(VecDeque::with_capacity(KEPT)))
}

/// The last lines logged, oldest first.
pub fn lines() -> Vec<String> {
    ring()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .cloned()
        .collect()
}

fn keep(text: &str) {
    let mut ring = ring()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for line in text.lines().filter(|line| !line.is_empty()) {
        if ring.len() == KEPT {
            ring.pop_front();
        }
        ring.push_back(strip_ansi(line));
    }
}

/// Removes terminal colour sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes to stderr and keeps a copy.
#[derive(Clone, Copy, Default)]
pub struct Tee;

/// One event's writer: the formatter writes a whole line through it.
pub struct TeeWriter {
    buffer: Vec<u8>,
}

impl Write for TeeWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for TeeWriter {
    fn drop(&mut self) {
        // Logging must never fail the agent: a full or closed stderr loses the line there only.
        let _ = std::io::stderr().write_all(&self.buffer);
        keep(&String::from_utf8_lossy(&self.buffer));
    }
}

impl<'a> MakeWriter<'a> for Tee {
    type Writer = TeeWriter;

    fn make_writer(&'a self) -> Self::Writer {
        TeeWriter { buffer: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_without_colours_and_bounded() {
        {
            let mut writer = Tee.make_writer();
            writer
                .write_all(b"\x1b[32m INFO\x1b[0m node=7 started\n")
                .unwrap();
        }
        assert!(lines().iter().any(|line| line == " INFO node=7 started"));
        for i in 0..KEPT + 10 {
            keep(&format!("line {i}\n"));
        }
        let kept = lines();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept.last().unwrap(), &format!("line {}", KEPT + 9));
    }
}
