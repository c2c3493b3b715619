//! The `testnet` command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Leader failover: kill -9 the leader of three under a steady write load and measure how
    /// long writes are unavailable.
    Failover(FailoverBenchArgs),
}

/// Which managers the benchmark clients talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchTarget {
    /// Only the leader: no forwarding.
    Leader,
    /// All managers round-robin: writes to followers are forwarded to the leader.
    All,
}

impl BenchTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            BenchTarget::Leader => "leader",
            BenchTarget::All => "all",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct KvBenchArgs {
    /// How many managers the cluster has; more than one are formed with a static bootstrap
    /// (`init --peers`).
    #[arg(long, default_value_t = 1)]
    pub managers: usize,

    /// Which managers the clients write through: `all` spreads them round-robin over every
    /// manager's control socket (followers forward to the leader), `leader` puts them all on
    /// the leader.
    #[arg(long, value_enum, default_value_t = BenchTarget::All)]
    pub target: BenchTarget,

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

#[derive(Debug, Clone, Args)]
pub struct FailoverBenchArgs {
    /// How many times the leader is killed (and restarted).
    #[arg(long, default_value_t = 5)]
    pub trials: usize,

    /// Concurrent writers, spread over the two followers; after a kill each retries through the
    /// surviving managers.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,

    /// Bytes per value.
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,

    /// Acknowledged writes of the load in each trial before the leader is killed.
    #[arg(long, default_value_t = 200)]
    pub writes_before_kill: u64,

    /// How long, in seconds, writes may stay unavailable after a kill before the benchmark
    /// gives up.
    #[arg(long, default_value_t = 30)]
    pub recovery_timeout_s: u64,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,

    /// Passed to the agents: take a snapshot every this many entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_interval: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_bench_commands() {
        let cli = Cli::try_parse_from(["testnet", "bench", "kv", "--managers", "3"]).unwrap();
        match cli.command {
            Command::Bench(BenchCommand::Kv(args)) => {
                assert_eq!(args.managers, 3);
                assert_eq!(args.target, BenchTarget::All);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["testnet", "bench", "kv", "--target", "leader"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Bench(BenchCommand::Kv(KvBenchArgs {
                target: BenchTarget::Leader,
                ..
            }))
        ));
        let cli = Cli::try_parse_from(["testnet", "bench", "failover", "--trials", "5"]).unwrap();
        match cli.command {
            Command::Bench(BenchCommand::Failover(args)) => {
                assert_eq!((args.trials, args.clients), (5, 8));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
