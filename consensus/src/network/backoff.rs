//! How long openraft waits before retrying a peer it found unreachable: the delays of
//! [`symphony_wire::backoff`] in openraft's wrapper. openraft drops the iterator (starting again
//! from the first delay) after the next successful RPC.

use openraft::network::Backoff;

/// [`symphony_wire::backoff::retry_delays`] as openraft takes them.
pub fn peer_backoff() -> Backoff {
    Backoff::new(symphony_wire::backoff::retry_delays())
}
