//! The `testnet` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Local Symphony clusters, end-to-end checks and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "testnet", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmarks: each prints human lines and, as its last line, one JSON object.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Replicated KV writes: concurrent clients issue puts until OPS writes were attempted.
    Kv(KvBenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KvBenchArgs {
    /// How many managers the cluster has (only 1 for now).
    #[arg(long, default_value_t = 1)]
    pub managers: usize,

    /// Concurrent clients, each with its own control connection.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,

    /// Measured writes, in total over all clients.
    #[arg(long, default_value_t = 10_000)]
    pub ops: u64,

    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,

    /// Unmeasured writes before the measurement, to warm up the agent and its store.
    #[arg(long, default_value_t = 200)]
    pub warmup: u64,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,

    /// Passed to the agent: take a snapshot every this many entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_interval: u64,
}
