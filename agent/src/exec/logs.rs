//! Reading a task's output: its last lines, then (when followed) new ones as the shim writes
//! them, across a rotation of the log.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use symphony_ctl::proto::{CtlError, ErrorCode};
use tokio::sync::mpsc;

use super::shim::{LOG_FILE, OLD_LOG_FILE};
use super::store::{EXIT_FILE, Store};
use crate::context::Context;
use crate::errors::not_initialised;
use crate::remote::proto::{LogLine, RemoteReply};
use crate::tokens::is_own_secret;

/// How often a followed log is looked at.
const POLL: Duration = Duration::from_millis(200);
/// Lines per message.
const BATCH: usize = 500;

type Items = mpsc::Receiver<Result<RemoteReply, CtlError>>;

/// Streams task `task_id`'s output to a caller that proves it is a manager (or this node).
pub fn serve(
    ctx: &Context,
    task_id: u64,
    secret: &str,
    tail: Option<u64>,
    follow: bool,
) -> Result<Items, CtlError> {
    let state = ctx.node.state();
    if state.worker.is_none() && state.cluster().is_none() {
        return Err(not_initialised());
    }
    if !is_own_secret(&state, secret) {
        return Err(CtlError::new(
            ErrorCode::InvalidToken,
            "only the cluster's managers may read this node's task logs",
        ));
    }
    let dir = Store::new(&ctx.node.config().settings.config_dir).task_dir(task_id);
    if !dir.exists() {
        return Err(CtlError::new(
            ErrorCode::NotFound,
            format!(
                "task {task_id} has no logs on this node (it never ran here, or they were pruned)"
            ),
        ));
    }
    let (items, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        let _ = stream(dir, tail, follow, items).await;
    });
    Ok(receiver)
}

async fn stream(
    dir: PathBuf,
    tail: Option<u64>,
    follow: bool,
    items: mpsc::Sender<Result<RemoteReply, CtlError>>,
) -> Result<(), ()> {
    let current = dir.join(LOG_FILE);
    let (lines, mut offset) = read_tail(&dir, tail);
    for chunk in lines.chunks(BATCH) {
        send(&items, chunk.to_vec()).await?;
    }
    if !follow {
        return Ok(());
    }
    let mut partial = String::new();
    loop {
        let ended = dir.join(EXIT_FILE).exists();
        let size = std::fs::metadata(&current).map_or(0, |m| m.len());
        if size < offset {
            // Rotated: the rest of the old file first, then the new one from its start.
            let (rest, _) = read_from(&dir.join(OLD_LOG_FILE), offset, &mut partial);
            send(&items, rest).await?;
            offset = 0;
            partial.clear();
        }
        let (fresh, read_to) = read_from(&current, offset, &mut partial);
        offset = read_to;
        if !fresh.is_empty() {
            for chunk in fresh.chunks(BATCH) {
                send(&items, chunk.to_vec()).await?;
            }
        } else if ended {
            // The task is over and everything it wrote has gone out.
            return Ok(());
        }
        tokio::select! {
            () = items.closed() => return Err(()),
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn send(
    items: &mpsc::Sender<Result<RemoteReply, CtlError>>,
    lines: Vec<LogLine>,
) -> Result<(), ()> {
    if lines.is_empty() {
        return Ok(());
    }
    items
        .send(Ok(RemoteReply::LogLines(lines)))
        .await
        .map_err(drop)
}

/// The last `tail` lines (all without a tail) of both log files, and where the current file
/// ends.
fn read_tail(dir: &Path, tail: Option<u64>) -> (Vec<LogLine>, u64) {
    let mut text = std::fs::read_to_string(dir.join(OLD_LOG_FILE)).unwrap_or_default();
    let current = std::fs::read(dir.join(LOG_FILE)).unwrap_or_default();
    let end = current.len() as u64;
    text.push_str(&String::from_utf8_lossy(&current));
    let mut lines: Vec<LogLine> = text.lines().filter_map(parse).collect();
    if let Some(tail) = tail.and_then(|tail| usize::try_from(tail).ok()) {
        let skip = lines.len().saturating_sub(tail);
        lines.drain(..skip);
    }
    (lines, end)
}

/// When the task's last logged line was output (the docker driver resumes its copy of the
/// engine's log after it).
pub fn last_line_ms(dir: &Path) -> Option<u64> {
    let (lines, _) = read_tail(dir, Some(1));
    lines.last().map(|line| line.at_ms)
}

/// The complete lines of `path` from `offset`, and the offset after them; a line still being
/// written waits in `partial`.
fn read_from(path: &Path, offset: u64, partial: &mut String) -> (Vec<LogLine>, u64) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return (Vec::new(), offset);
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut bytes = Vec::new();
    let read = file.read_to_end(&mut bytes).unwrap_or(0) as u64;
    partial.push_str(&String::from_utf8_lossy(&bytes));
    let mut lines = Vec::new();
    while let Some(newline) = partial.find('\n') {
        let line: String = partial.drain(..=newline).collect();
        if let Some(parsed) = parse(line.trim_end_matches('\n')) {
            lines.push(parsed);
        }
    }
    (lines, offset + read)
}

/// One line of the shim's log: `<ms> <stream> <text>`.
fn parse(line: &str) -> Option<LogLine> {
    let (at, rest) = line.split_once(' ')?;
    let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(LogLine {
        at_ms: at.parse().ok()?,
        stream: stream.to_string(),
        text: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_span_the_rotated_file_and_follow_reads_what_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(OLD_LOG_FILE),
            "1 stdout one\n2 stderr two\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(LOG_FILE), "3 stdout three\n").unwrap();
        let (all, end) = read_tail(dir.path(), None);
        let texts: Vec<&str> = all.iter().map(|line| line.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "three"]);
        assert_eq!(all[1].stream, "stderr");
        let (last, _) = read_tail(dir.path(), Some(2));
        assert_eq!(last.len(), 2);
        assert_eq!(last[0].text, "two");

        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        file.write_all(b"4 stdout four\n5 stdout fi").unwrap();
        let mut partial = String::new();
        let (fresh, offset) = read_from(&dir.path().join(LOG_FILE), end, &mut partial);
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].text, "four");
        file.write_all(b"ve\n").unwrap();
        let (fresh, _) = read_from(&dir.path().join(LOG_FILE), offset, &mut partial);
        assert_eq!(fresh[0].text, "five");
    }
}
