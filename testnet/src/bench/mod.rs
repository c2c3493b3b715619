//! Benchmarks run as commands, not as timed tests: each starts its own cluster, measures, prints
//! a few human lines and then, as its last line, one JSON object for scripts.
//!
//! - [`kv`]: replicated KV writes from many concurrent clients, on one manager or several;
//! - [`failover`]: how long writes are unavailable when the leader of three is killed;
//! - [`fleet`]: a real fleet of agent processes on loopback: forming, join and failure
//!   detection times, idle CPU and memory;
//! - [`start`]: new services' tasks on real agents: create to running, p50/p99;
//! - [`schedule`]: many tasks placed by three real managers on simulated workers in this
//!   process: placements per second, time to all running, the leader's CPU and memory;
//! - [`update`]: a rolling update of many tasks: its duration and the dips below the count;
//! - [`watch`]: `kv watch` at many watchers: put to delivery, p50/p99, and the managers' memory;
//! - [`gossip`]: gossip at scale, in the in-process simulator of `symphony_gossip::sim`;
//! - [`latency`]: the one summary of measured times (nearest-rank percentiles) they all report
//!   with, and [`figures`]: milliseconds and rounding.

pub mod failover;
pub mod figures;
pub mod fleet;
pub mod gossip;
pub mod kv;
pub mod latency;
pub mod schedule;
pub mod start;
pub mod update;
pub mod watch;
