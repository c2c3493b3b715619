//! `testnet`: local Symphony clusters, end-to-end checks and benchmarks.

use clap::Parser;
use symphony_testnet::bench;
use symphony_testnet::cli::{BenchCommand, Cli, Command};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(BenchCommand::Kv(args)) => bench::kv::run(args).await,
    }
}
