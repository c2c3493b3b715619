//! Benchmarks run as commands, not as timed tests: each starts its own cluster, measures, prints
//! a few human lines and then, as its last line, one JSON object for scripts.
//!
//! - [`kv`]: replicated KV writes from many concurrent clients, on one manager or several;
//! - [`failover`]: how long writes are unavailable when the leader of three is killed;
//! - [`latency`]: percentiles over the measured per-operation latencies.

pub mod failover;
pub mod kv;
pub mod latency;
