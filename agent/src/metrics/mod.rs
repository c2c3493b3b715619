//! The agent's Prometheus metrics, served on `--metrics-addr` at `GET /metrics` in the
//! Prometheus text format.
//!
//! Two kinds of numbers, kept apart because they have different owners:
//! - **instruments** this module owns: counters and histograms that the code doing the work
//!   bumps as it goes (requests served, their latency, open connections, Raft leader changes;
//!   and the store's commit times, which the consensus crate's own atomics hold, since it must
//!   not know this module).
//!   They are `prometheus-client` handles — atomics behind an `Arc` — so bumping one takes no
//!   lock and no channel, and each part is handed only the handle it bumps ([`Requests`] to the
//!   servers, [`RaftCounters`] to the Raft watcher), never the whole set;
//! - **readings** of state that another task owns (the Raft node's metrics watch, the gossip
//!   driver's counters and member view, the replica's tables). Nothing copies them on every
//!   change: [`scrape`] reads the owners' published snapshots when Prometheus asks, into a
//!   registry built for that one scrape.
//!
//! Files:
//! - [`requests`]: requests by API, kind and outcome, their latency, open connections;
//! - [`liveness`]: node status changes, counted from the replica;
//! - [`placements`]: tasks placed on nodes, counted from the replica's events;
//! - [`raft`]: the watcher that counts leader changes and snapshots, and the Raft gauges;
//! - [`scrape`]: one scrape: the instruments and the readings, encoded as text;
//! - [`server`]: the minimal HTTP/1 server (hyper) that answers `GET /metrics`.
//!
//! Names follow Prometheus conventions: a `symphony_` prefix, units in names (`_seconds`),
//! counters ending in `_total`, and label values from fixed lists only (request kinds, error
//! codes, states), never ids, keys or addresses.

pub mod liveness;
pub mod placements;
pub mod raft;
pub mod requests;
pub mod scrape;
pub mod server;

pub use raft::RaftCounters;
pub use requests::{Api, Requests};
pub use server::MetricsError;

/// Every instrument of the agent; cheap to clone (each part is an `Arc`). Made once at
/// start-up; each part goes only to the code that bumps it.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub requests: Requests,
    pub raft: RaftCounters,
    pub status_changes: liveness::StatusChanges,
    /// Handed to the consensus config, so every Raft node this agent runs records into it.
    pub commits: symphony_consensus::store::CommitTimings,
    /// `kv watch` streams open on this manager.
    pub kv_watchers: OpenStreams,
    /// Worker sessions this manager serves now: the assignment streams open to it.
    pub sessions: OpenStreams,
    /// Tasks placed on nodes, counted from the replica's events.
    pub placements: placements::Placements,
}

/// Streams of one kind open now; each stream holds an [`Open`] guard while it runs.
#[derive(Clone, Debug, Default)]
pub struct OpenStreams(prometheus_client::metrics::gauge::Gauge);

impl OpenStreams {
    /// Counts one stream open until the guard is dropped, however the stream ends.
    pub fn open(&self) -> Open {
        self.0.inc();
        Open(self.0.clone())
    }

    pub fn register(
        &self,
        registry: &mut prometheus_client::registry::Registry,
        name: &str,
        help: &str,
    ) {
        registry.register(name, help, self.0.clone());
    }
}

/// One open stream.
#[derive(Debug)]
pub struct Open(prometheus_client::metrics::gauge::Gauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}
