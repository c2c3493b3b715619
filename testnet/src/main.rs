//! `testnet`: local Symphony clusters, end-to-end checks and benchmarks.

use std::process::ExitCode;

use clap::Parser;
use symphony_testnet::cli::{BenchCommand, Cli, Command};
use symphony_testnet::{bench, chaos, lab};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    let outcome = run(Cli::parse().command).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One sentence with its causes, not a backtrace: this is an operator's tool.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Converts what the command line parsed into the library's options, and runs the command.
async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Bench(BenchCommand::Kv(args)) => bench::kv::run(args.into()).await,
        Command::Bench(BenchCommand::Failover(args)) => bench::failover::run(args.into()).await,
        Command::Bench(BenchCommand::Gossip(args)) => bench::gossip::run(args.into()).await,
        Command::Bench(BenchCommand::Fleet(args)) => bench::fleet::run(args.into()).await,
        Command::Bench(BenchCommand::Update(args)) => bench::update::run(args.into()).await,
        Command::Bench(BenchCommand::Start(args)) => bench::start::run(args.into()).await,
        Command::Bench(BenchCommand::Schedule(args)) => bench::schedule::run(args.into()).await,
        Command::Bench(BenchCommand::Watch(args)) => bench::watch::run(args.into()).await,
        Command::Lab(command) => Ok(lab::command::run(command.try_into()?).await?),
        Command::Chaos(args) => Ok(chaos::command::run(args.try_into()?).await?),
    }
}
