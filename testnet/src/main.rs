//! `testnet`: local Symphony clusters, end-to-end checks and benchmarks.

use std::process::ExitCode;

use clap::Parser;
use symphony_testnet::cli::{BenchCommand, Cli, Command};
use symphony_testnet::{bench, chaos, lab};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Bench(BenchCommand::Kv(args)) => bench::kv::run(args).await,
        Command::Bench(BenchCommand::Failover(args)) => bench::failover::run(args).await,
        Command::Bench(BenchCommand::Gossip(args)) => bench::gossip::run(args).await,
        Command::Bench(BenchCommand::Fleet(args)) => bench::fleet::run(args).await,
        Command::Lab(command) => lab::command::run(command).await.map_err(Into::into),
        Command::Chaos(args) => chaos::command::run(args).await.map_err(Into::into),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One sentence with its causes, not a backtrace: this is an operator's tool.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
