//! How long to wait before retrying a peer that could not be reached.
//!
//! A stopped or partitioned node must not be dialled in a hot loop, yet one that comes back
//! should be reached again within about a second. The delays double from [`FIRST_RETRY`] to
//! [`MAX_RETRY`] and stay there; a caller starts again from the first delay after a success.

use std::time::Duration;

/// The delay before the first retry.
pub const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest delay between retries.
pub const MAX_RETRY: Duration = Duration::from_secs(1);

/// The delays before successive retries of an unreachable peer.
pub fn retry_delays() -> impl Iterator<Item = Duration> + Send + 'static {
    std::iter::successors(Some(FIRST_RETRY), |delay| Some((*delay * 2).min(MAX_RETRY)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_then_stay_capped() {
        let delays: Vec<u128> = retry_delays().take(8).map(|d| d.as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000, 1000]);
    }
}
