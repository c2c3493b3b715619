//! How long openraft waits before retrying a peer it found unreachable.
//!
//! A stopped or partitioned manager must not be dialled in a hot loop, yet a peer that comes
//! back should be caught up within about a second. The delays double from
//! [`FIRST_RETRY`] to [`MAX_RETRY`] and stay there; openraft drops the iterator (starting
//! again from the first delay) after the next successful RPC.

use std::time::Duration;

use openraft::network::Backoff;

/// The delay before the first retry.
pub const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest delay between retries.
pub const MAX_RETRY: Duration = Duration::from_secs(1);

/// The delays before successive retries of an unreachable peer.
pub fn retry_delays() -> impl Iterator<Item = Duration> + Send + 'static {
    std::iter::successors(Some(FIRST_RETRY), |delay| Some((*delay * 2).min(MAX_RETRY)))
}

/// [`retry_delays`] in openraft's wrapper.
pub fn peer_backoff() -> Backoff {
    Backoff::new(retry_delays())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_then_stay_capped() {
        let delays: Vec<u64> = retry_delays()
            .take(8)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
    }
}
