//! Gossip timings for tests of worker liveness.

/// Agent flags for gossip fast enough that a killed worker is marked down within a few seconds:
/// a probe every 200 ms with 100 ms for its answer, and a suspect declared down after 2 s (long
/// enough that an agent starved of CPU for a moment, debug builds on two cores, is not).
pub const FAST_GOSSIP_ARGS: [&str; 6] = [
    "--gossip-probe-period-ms",
    "200",
    "--gossip-probe-rtt-ms",
    "100",
    "--gossip-suspect-ms",
    "2000",
];

/// [`FAST_GOSSIP_ARGS`] as owned strings, for [`super::AgentOptions::extra_args`].
pub fn fast_gossip_args() -> Vec<String> {
    FAST_GOSSIP_ARGS
        .iter()
        .map(|arg| (*arg).to_string())
        .collect()
}
