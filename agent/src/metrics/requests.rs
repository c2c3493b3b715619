//! Requests served by the control socket and the node-to-node API: how many, by kind and
//! outcome; how long they took; how many connections are open.
//!
//! The kind is the request's name from its declared route (`Request::spec`,
//! `RemoteRequest::spec`), so the label takes values from a fixed list; the outcome is `ok` or
//! the typed error's code, another fixed list.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use symphony_ctl::proto::ErrorCode;

/// Which API served a request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Api {
    /// The control socket (`symphony-ctl`).
    Control,
    /// The node-to-node API (joins, forwarded writes, sessions, assignments).
    Remote,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Control => "control",
            Api::Remote => "remote",
        }
    }
}

// By hand rather than derived: the derive writes the variant's name as it is (`Control`), and
// label values are lower case like every other one here.
impl EncodeLabelValue for Api {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: Api,
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    api: Api,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabels {
    api: Api,
}

/// The latency buckets: 0.5 ms doubling to about 16 s, which spans a stale read on a replica
/// to a write that waits out an election.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

/// The request instruments, shared by both servers; cheap to clone.
#[derive(Clone, Debug)]
pub struct Requests {
    total: Family<RequestLabels, Counter>,
    duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    connections: Family<ApiLabels, Gauge>,
}

impl Default for Requests {
    fn default() -> Requests {
        Requests {
            total: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            connections: Family::default(),
        }
    }
}

impl Requests {
    /// Records one answered request (for a stream: its opening).
    pub fn observe(
        &self,
        api: Api,
        kind: &'static str,
        error: Option<ErrorCode>,
        elapsed: Duration,
    ) {
        let outcome = error.map_or("ok", ErrorCode::as_str);
        self.total
            .get_or_create(&RequestLabels { api, kind, outcome })
            .inc();
        self.duration
            .get_or_create(&KindLabels { api, kind })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a connection as open until the returned guard is dropped, however its serving
    /// ends (closed by the peer, an error, a shutdown).
    pub fn connection(&self, api: Api) -> OpenConnection {
        let gauge = self.connections.get_or_create(&ApiLabels { api }).clone();
        gauge.inc();
        OpenConnection { gauge }
    }

    /// How many requests of this kind ended with this outcome (`ok` or an error code); for
    /// tests.
    pub fn count(&self, api: Api, kind: &'static str, outcome: &'static str) -> u64 {
        self.total
            .get_or_create(&RequestLabels { api, kind, outcome })
            .get()
    }

    /// Adds the instruments to one scrape's registry (the handles are shared, not copied).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "Requests answered, by API (control, remote), request kind and outcome (ok or the error code)",
            self.total.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its answer (for a stream: to its opening), by API and request kind",
            self.duration.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open now, past their hello, by API",
            self.connections.clone(),
        );
    }
}

/// One open connection, counted while this lives.
#[derive(Debug)]
pub struct OpenConnection {
    gauge: Gauge,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_apart_and_connections_close() {
        let requests = Requests::default();
        requests.observe(Api::Control, "kv put", None, Duration::from_millis(3));
        requests.observe(Api::Control, "kv put", None, Duration::from_millis(4));
        requests.observe(
            Api::Control,
            "kv put",
            Some(ErrorCode::NoLeader),
            Duration::from_millis(5),
        );
        assert_eq!(requests.count(Api::Control, "kv put", "ok"), 2);
        assert_eq!(requests.count(Api::Control, "kv put", "no_leader"), 1);
        assert_eq!(requests.count(Api::Remote, "kv put", "ok"), 0);

        let open = requests.connection(Api::Remote);
        let gauge = || {
            requests
                .connections
                .get_or_create(&ApiLabels { api: Api::Remote })
                .get()
        };
        assert_eq!(gauge(), 1);
        drop(open);
        assert_eq!(gauge(), 0);
    }
}
