//! One docker task's life, seen from the agent: the container is made and started, its output
//! copied from the engine's log stream into the task's log (the files the process driver's
//! shim writes, so `service logs` reads both alike), and when the engine says it ended, how it
//! ended is written to the task's `exit.json`, exactly as the shim does. The executor then
//! reads that file as it does for a process.
//!
//! Unlike a shim this runs inside the agent; the container does not need it. A restarted
//! agent finds the container by name and labels and calls [`follow`] again: the output copy
//! picks up after the last line the log holds, and the wait after the exit the engine keeps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::{LogsOptions, WaitContainerOptions};
use futures_util::StreamExt;
use symphony_consensus::Health;
use tokio::sync::mpsc;

use super::engine::{DockerError, Ended, Engine};
use crate::exec::shim::LogWriter;
use crate::exec::store::{CONTAINER_FILE, ContainerInfo, EXIT_FILE, ExitInfo, write_json};
use crate::remote::proto::Assignment;

/// How long the output copy may go on once the container has ended.
const DRAIN_WAIT: Duration = Duration::from_secs(2);
/// How often a broken wait is tried again before the engine counts as gone.
const WAIT_TRIES: u32 = 3;
const WAIT_RETRY: Duration = Duration::from_secs(1);
/// A wait that lasted this long before it broke off does not count against the engine.
const WAIT_HELD: Duration = Duration::from_secs(30);

/// Where one task's container reports.
#[derive(Debug, Clone)]
pub struct Watch {
    pub engine: Engine,
    pub task_id: u64,
    /// The container's name.
    pub name: String,
    /// The task's directory on the node.
    pub dir: PathBuf,
    pub max_log_bytes: u64,
    /// Told the task's id once its container runs, and once `exit.json` is written.
    pub exited: mpsc::UnboundedSender<u64>,
    /// Where the verdicts of the image's own `HEALTHCHECK` go; `None` when the spec has a
    /// health check of its own (that one is run by the executor, and the image's is ignored).
    pub image_health: Option<mpsc::UnboundedSender<Verdict>>,
}

/// A new verdict of the image's `HEALTHCHECK`, as the engine judged it.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub task_id: u64,
    pub health: Health,
    pub detail: String,
}

/// How often the engine is asked for the image health check's verdict.
const HEALTH_POLL: Duration = Duration::from_secs(1);

/// Makes and starts the container, then follows it to its end. A failure before it runs (the
/// image is missing, the engine refuses the configuration) is recorded as the task's start
/// error, which the executor reports as `rejected`.
pub async fn run(watch: Watch, assignment: Assignment, node_id: u64) {
    let image = assignment.spec.image.clone().unwrap_or_default();
    let started = async {
        watch.engine.ensure_image(&image).await?;
        watch.engine.create(&assignment, node_id, &image).await?;
        watch.engine.start(&watch.name).await
    }
    .await;
    let id = match started {
        Ok(()) => watch
            .engine
            .inspect(&watch.name)
            .await
            .ok()
            .and_then(|c| c.id),
        Err(error) => {
            fail_start(&watch, error).await;
            return;
        }
    };
    let info = ContainerInfo {
        id: id.unwrap_or_default(),
        name: watch.name.clone(),
    };
    if let Err(error) = write_json(&watch.dir.join(CONTAINER_FILE), &info) {
        // Without it the executor would not know the task runs: stop it rather than leave a
        // container nobody watches.
        let _ = watch.engine.remove(&watch.name).await;
        record(
            &watch,
            ExitInfo {
                code: None,
                signal: None,
                error: Some(format!("cannot record the task's container: {error}")),
                failure: None,
            },
        );
        return;
    }
    let _ = watch.exited.send(watch.task_id);
    tracing::info!(task = watch.task_id, container = %watch.name, "started a container");
    follow(watch).await;
}

/// The container could not be made or started: nothing of it stays behind (best effort: the
/// engine may be gone), and the error is the task's.
async fn fail_start(watch: &Watch, error: DockerError) {
    let _ = watch.engine.remove(&watch.name).await;
    record(watch, start_failure(&error));
}

/// How a failed start is recorded: what the engine refused (a missing image, a configuration
/// it does not take) rejects the task, which could never run here as it is; an engine that
/// stopped answering fails it, like any task whose node lost what runs it.
pub fn start_failure(error: &DockerError) -> ExitInfo {
    let text = error.to_string();
    let (error, failure) = if error.engine_lost() {
        (None, Some(text))
    } else {
        (Some(text), None)
    };
    ExitInfo {
        code: None,
        signal: None,
        error,
        failure,
    }
}

/// Copies the container's output and waits for its end; records it.
pub async fn follow(watch: Watch) {
    let since_ms = crate::exec::logs::last_line_ms(&watch.dir);
    let copy = tokio::spawn(copy_logs(
        watch.engine.clone(),
        watch.name.clone(),
        watch.dir.clone(),
        watch.max_log_bytes,
        since_ms,
    ));
    let health = watch
        .image_health
        .clone()
        .map(|verdicts| tokio::spawn(poll_health(watch.clone(), verdicts)));
    let ended = wait(&watch.engine, &watch.name).await;
    if let Some(health) = health {
        health.abort();
    }
    // The log stream ends with the container; what is left of it gets a moment.
    let _ = tokio::time::timeout(DRAIN_WAIT, copy).await;
    record(&watch, exit_info(ended));
}

/// Passes on each new verdict of the image's health check (a container without one has none).
async fn poll_health(watch: Watch, verdicts: mpsc::UnboundedSender<Verdict>) {
    // Most images have no health check: their containers are not asked again and again.
    loop {
        match super::has_image_health(&watch.engine, &watch.name).await {
            Some(true) => break,
            Some(false) => return,
            None => tokio::time::sleep(HEALTH_POLL).await,
        }
    }
    let mut last = None;
    loop {
        tokio::time::sleep(HEALTH_POLL).await;
        let Some((health, detail)) = super::image_health(&watch.engine, &watch.name).await else {
            continue;
        };
        if last != Some(health) {
            last = Some(health);
            let verdict = Verdict {
                task_id: watch.task_id,
                health,
                detail,
            };
            if verdicts.send(verdict).is_err() {
                return;
            }
        }
    }
}

/// How the container ended as the task's `exit.json` says it.
pub fn exit_info(ended: Result<Ended, DockerError>) -> ExitInfo {
    match ended {
        Ok(ended) => {
            let failure = if ended.oom_killed {
                Some("killed for using more than its memory reservation".to_string())
            } else {
                ended
                    .error
                    .map(|error| format!("the Docker engine says: {error}"))
            };
            ExitInfo {
                code: ended.exit_code.and_then(|code| i32::try_from(code).ok()),
                signal: None,
                error: None,
                failure,
            }
        }
        Err(DockerError::NoSuchContainer { name }) => ExitInfo {
            code: None,
            signal: None,
            error: None,
            failure: Some(format!("its container {name} was removed while it ran")),
        },
        Err(error) => ExitInfo {
            code: None,
            signal: None,
            error: None,
            failure: Some(error.to_string()),
        },
    }
}

/// Waits until the container is no longer running; how it ended. A wait the engine breaks
/// off is tried again a few times (the container may still run), then the engine counts as
/// gone.
async fn wait(engine: &Engine, name: &str) -> Result<Ended, DockerError> {
    let mut failures = 0;
    loop {
        let options = WaitContainerOptions {
            condition: "not-running".to_string(),
        };
        let mut waiting = engine.client().wait_container(name, Some(options));
        let since = tokio::time::Instant::now();
        // A non-zero exit comes as an error of the stream: either way the exit is read from
        // the container afterwards.
        let _ = waiting.next().await;
        // Only breaks in a row count: a wait that held for a while was not the engine failing.
        if since.elapsed() > WAIT_HELD {
            failures = 0;
        }
        match engine.ended(name).await {
            Ok(Some(ended)) => return Ok(ended),
            Ok(None) => failures += 1,
            Err(error @ DockerError::NoSuchContainer { .. }) => return Err(error),
            Err(error) if failures + 1 >= WAIT_TRIES => return Err(error),
            Err(_) => failures += 1,
        }
        if failures >= WAIT_TRIES {
            // Still running, but the engine will not let us wait for it.
            return Err(DockerError::Lost {
                action: "wait for a container",
                reason: "the wait kept breaking off while the container ran".into(),
            });
        }
        tokio::time::sleep(WAIT_RETRY).await;
    }
}

fn record(watch: &Watch, exit: ExitInfo) {
    if let Err(error) = write_json(&watch.dir.join(EXIT_FILE), &exit) {
        tracing::warn!(task = watch.task_id, %error, "cannot record how a container ended");
    }
    let _ = watch.exited.send(watch.task_id);
}

/// Copies the engine's log stream into the task's log until it ends. Each line keeps the
/// engine's timestamp, so a restarted agent asks for what came after its last line (lines of
/// the same millisecond as that one are taken as already copied).
async fn copy_logs(
    engine: Engine,
    name: String,
    dir: PathBuf,
    max_log_bytes: u64,
    since_ms: Option<u64>,
) {
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        since: since_ms
            .and_then(|ms| i32::try_from(ms / 1000).ok())
            .unwrap_or(0),
        until: 0,
        timestamps: true,
        tail: "all".to_string(),
    };
    let mut log = LogWriter::open(&dir, max_log_bytes);
    let mut lines = Lines::default();
    let mut stream = engine.client().logs(&name, Some(options));
    while let Some(item) = stream.next().await {
        let (stream_name, message) = match item {
            Ok(LogOutput::StdOut { message }) => ("stdout", message),
            Ok(LogOutput::StdErr { message }) => ("stderr", message),
            Ok(LogOutput::Console { message }) => ("stdout", message),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(error) => {
                tracing::debug!(container = %name, %error, "the container's log stream ended");
                break;
            }
        };
        for (at_ms, text) in lines.push(stream_name, &message) {
            if since_ms.is_some_and(|since| at_ms <= since) {
                continue;
            }
            log.write_line_at(at_ms, stream_name, &text);
        }
    }
    for (stream_name, at_ms, text) in lines.rest() {
        log.write_line_at(at_ms, stream_name, &text);
    }
    log.flush();
}

/// Cuts the engine's log messages (`<RFC 3339 time> <text>`, a long line split over several)
/// into lines, per stream.
#[derive(Debug, Default)]
struct Lines {
    partial: BTreeMap<&'static str, (u64, String)>,
}

impl Lines {
    /// The complete lines `message` finishes, each with the time of its first part.
    fn push(&mut self, stream: &'static str, message: &[u8]) -> Vec<(u64, String)> {
        let text = String::from_utf8_lossy(message);
        let (at_ms, body) = match text.split_once(' ') {
            Some((stamp, body)) => match rfc3339_ms(stamp) {
                Some(at_ms) => (at_ms, body),
                None => (crate::now_ms(), text.as_ref()),
            },
            None => (rfc3339_ms(&text).unwrap_or_else(crate::now_ms), ""),
        };
        let entry = self
            .partial
            .entry(stream)
            .or_insert_with(|| (at_ms, String::new()));
        if entry.1.is_empty() {
            entry.0 = at_ms;
        }
        entry.1.push_str(body);
        let mut lines = Vec::new();
        while let Some(newline) = entry.1.find('\n') {
            let line: String = entry.1.drain(..=newline).collect();
            lines.push((entry.0, line.trim_end_matches(['\n', '\r']).to_string()));
            entry.0 = at_ms;
        }
        lines
    }

    /// What is left without a newline, at the end of the stream.
    fn rest(self) -> Vec<(&'static str, u64, String)> {
        self.partial
            .into_iter()
            .filter(|(_, (_, text))| !text.is_empty())
            .map(|(stream, (at_ms, text))| (stream, at_ms, text))
            .collect()
    }
}

/// `2026-12-01T11:20:33.123456789Z` (the engine's timestamps, always UTC) in milliseconds
/// since the epoch.
pub fn rfc3339_ms(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: i64 = date_parts.next()?.parse().ok()?;
    let day: i64 = date_parts.next()?.parse().ok()?;
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut clock_parts = clock.splitn(3, ':');
    let hour: i64 = clock_parts.next()?.parse().ok()?;
    let minute: i64 = clock_parts.next()?.parse().ok()?;
    let second: i64 = clock_parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let millis: i64 = if fraction.is_empty() {
        0
    } else {
        if !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
        digits.parse().ok()?
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis;
    u64::try_from(ms).ok()
}

/// Whether `dir` holds a recorded exit.
pub fn has_exit(dir: &Path) -> bool {
    dir.join(EXIT_FILE).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_timestamps_read_as_milliseconds() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            rfc3339_ms("2026-12-01T11:20:33.123456789Z"),
            Some(1_796_124_033_123)
        );
        assert_eq!(rfc3339_ms("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(rfc3339_ms("2026-12-01 11:20:33Z"), None);
        assert_eq!(rfc3339_ms("2026-13-01T11:20:33Z"), None);
        assert_eq!(rfc3339_ms("2026-12-01T11:20:33.1x3Z"), None);
    }

    #[test]
    fn messages_become_lines_with_their_time_and_split_lines_join() {
        let mut lines = Lines::default();
        let got = lines.push("stdout", b"1970-01-01T00:00:01Z hello\n");
        assert_eq!(got, [(1000, "hello".to_string())]);
        // A long line comes in parts, each with its own time: it keeps the first's.
        assert!(
            lines
                .push("stdout", b"1970-01-01T00:00:02Z long ")
                .is_empty()
        );
        assert!(lines.push("stderr", b"1970-01-01T00:00:02Z err\n").len() == 1);
        let got = lines.push("stdout", b"1970-01-01T00:00:03Z line\n");
        assert_eq!(got, [(2000, "long line".to_string())]);
        assert!(
            lines
                .push("stdout", b"1970-01-01T00:00:04Z no end")
                .is_empty()
        );
        assert_eq!(lines.rest(), [("stdout", 4000, "no end".to_string())]);
    }

    #[test]
    fn a_refused_start_rejects_an_engine_gone_fails() {
        let missing = start_failure(&DockerError::ImageMissing {
            image: "symphony/probe:1".into(),
        });
        assert!(missing.error.is_some() && missing.failure.is_none());
        let lost = start_failure(&DockerError::Lost {
            action: "create a container",
            reason: "broken pipe".into(),
        });
        assert!(lost.error.is_none() && lost.failure.is_some());
    }

    #[test]
    fn exits_read_as_the_shim_writes_them() {
        let exited = exit_info(Ok(Ended {
            exit_code: Some(3),
            oom_killed: false,
            error: None,
        }));
        assert_eq!(
            (exited.code, exited.error, exited.failure),
            (Some(3), None, None)
        );
        let oom = exit_info(Ok(Ended {
            exit_code: Some(137),
            oom_killed: true,
            error: None,
        }));
        assert!(
            oom.failure
                .is_some_and(|failure| failure.contains("memory"))
        );
        let lost = exit_info(Err(DockerError::Lost {
            action: "wait for a container",
            reason: "connection reset".into(),
        }));
        assert_eq!(lost.code, None);
        assert!(
            lost.failure
                .is_some_and(|failure| failure.contains("stopped answering"))
        );
    }
}
