//! Repeated log lines, limited: at most [`BURST`] lines from one call site in each
//! [`WINDOW`]; the rest are counted, and the first line let through afterwards says how many
//! like it were left out ("[1234 similar lines suppressed]").
//!
//! A node in a tight loop (a gossip rejoin fight, a peer retrying as fast as it can, a disk
//! that fails every write) once logged 15,000 lines a second: most of a core and gigabytes of
//! log, burying the one line that said what was wrong. Limiting per call site keeps every kind
//! of line visible, however loud another is. The decision is [`Windows::admit`], pure and
//! tested on its own; [`RateLimit`] is the tracing layer that applies it before a line is
//! formatted, and leaves the count for the formatter in a thread-local (the formatter runs on
//! the same thread, right after).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Lines one call site may log in a window before the rest are counted instead.
pub const BURST: u32 = 50;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Whether a line goes out, and if so how many like it were left out before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Pass { suppressed_before: u64 },
    Suppress,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    passed: u32,
    suppressed: u64,
}

/// The windows of every call site seen so far (call sites are static: the map stays small).
#[derive(Debug)]
pub struct Windows<K> {
    burst: u32,
    length: Duration,
    windows: HashMap<K, Window>,
}

impl<K: std::hash::Hash + Eq> Windows<K> {
    pub fn new(burst: u32, length: Duration) -> Windows<K> {
        Windows {
            burst,
            length,
            windows: HashMap::new(),
        }
    }

    /// Counts one line from `site` at `now`.
    pub fn admit(&mut self, site: K, now: Instant) -> Admit {
        let window = self.windows.entry(site).or_insert(Window {
            started: now,
            passed: 0,
            suppressed: 0,
        });
        let mut carried = 0;
        if now.saturating_duration_since(window.started) >= self.length {
            carried = window.suppressed;
            *window = Window {
                started: now,
                passed: 0,
                suppressed: 0,
            };
        }
        if window.passed < self.burst {
            window.passed += 1;
            // Suppressions earlier in this same window are reported by the next window.
            Admit::Pass {
                suppressed_before: carried,
            }
        } else {
            window.suppressed += 1;
            Admit::Suppress
        }
    }
}

thread_local! {
    /// How many lines like the one being formatted were left out before it.
    static SUPPRESSED_BEFORE: Cell<u64> = const { Cell::new(0) };
}

/// Takes the count the layer left for the line being formatted now.
pub fn take_suppressed_before() -> u64 {
    SUPPRESSED_BEFORE.with(Cell::take)
}

/// The tracing layer.
#[derive(Debug)]
pub struct RateLimit {
    windows: Mutex<Windows<Identifier>>,
}

impl RateLimit {
    pub fn new() -> RateLimit {
        RateLimit {
            windows: Mutex::new(Windows::new(BURST, WINDOW)),
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new()
    }
}

impl<S: Subscriber> Layer<S> for RateLimit {
    fn event_enabled(&self, event: &Event<'_>, _context: Context<'_, S>) -> bool {
        let site = event.metadata().callsite();
        // A poisoned lock only means another thread panicked while counting: keep logging.
        let admit = match self.windows.lock() {
            Ok(mut windows) => windows.admit(site, Instant::now()),
            Err(poisoned) => poisoned.into_inner().admit(site, Instant::now()),
        };
        match admit {
            Admit::Pass { suppressed_before } => {
                SUPPRESSED_BEFORE.with(|cell| cell.set(suppressed_before));
                true
            }
            Admit::Suppress => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_the_rest_is_counted_and_reported_once() {
        let start = Instant::now();
        let mut windows = Windows::new(3, Duration::from_secs(10));
        for _ in 0..3 {
            assert_eq!(
                windows.admit("loud", start),
                Admit::Pass {
                    suppressed_before: 0
                }
            );
        }
        for _ in 0..1000 {
            assert_eq!(windows.admit("loud", start), Admit::Suppress);
        }
        // Another call site is not affected by the loud one.
        assert_eq!(
            windows.admit("quiet", start),
            Admit::Pass {
                suppressed_before: 0
            }
        );
        let later = start + Duration::from_secs(10);
        assert_eq!(
            windows.admit("loud", later),
            Admit::Pass {
                suppressed_before: 1000
            }
        );
        assert_eq!(
            windows.admit("loud", later),
            Admit::Pass {
                suppressed_before: 0
            }
        );
    }
}
