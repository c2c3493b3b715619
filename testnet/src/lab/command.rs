//! The `testnet up|status|kill|pause|resume|restart|partition|heal|down` commands: parse
//! nothing (clap did), call the [`Lab`], print. Progress goes to stderr, results to stdout.

use std::time::Duration;

use super::partition::describe;
use super::table;
use super::up::UpOptions;
use super::{Addressing, Lab, LabError, LabStatus, Lifetime};
use crate::cli::{LabCommand, UpArgs};

/// Runs one lab command.
pub async fn run(command: LabCommand) -> Result<(), LabError> {
    match command {
        LabCommand::Up(args) => up(args).await,
        LabCommand::Status(args) => {
            let lab = Lab::open(&args.dir.dir)?;
            print_status(&lab.status().await, args.json, false)
        }
        LabCommand::Kill(args) => {
            let mut lab = Lab::open(&args.dir.dir)?;
            println!("{}", lab.kill(&args.node)?);
            Ok(())
        }
        LabCommand::Pause(args) => {
            let mut lab = Lab::open(&args.dir.dir)?;
            println!("{}", lab.pause(&args.node)?);
            Ok(())
        }
        LabCommand::Resume(args) => {
            let mut lab = Lab::open(&args.dir.dir)?;
            println!("{}", lab.resume(&args.node)?);
            Ok(())
        }
        LabCommand::Restart(args) => {
            let mut lab = Lab::open(&args.dir.dir)?;
            lab.restart(&args.node).await?;
            let pid = lab
                .node(&args.node)?
                .pid()
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            println!("{} restarted{pid} and answering", args.node);
            Ok(())
        }
        LabCommand::Partition(args) => {
            let mut lab = Lab::open(&args.dir.dir)?;
            let partition = lab.partition(&args.sides)?;
            println!(
                "partitioned: {} ({} one-way links cut); `testnet heal` undoes it",
                describe(&partition.sides),
                partition.cuts.len()
            );
            Ok(())
        }
        LabCommand::Heal(args) => {
            let mut lab = Lab::open(&args.dir)?;
            if lab.heal()? {
                println!("healed: every link works again");
            } else {
                println!("there was no partition");
            }
            Ok(())
        }
        LabCommand::Down(args) => {
            let lab = Lab::open(&args.dir)?;
            let dir = lab.dir().to_path_buf();
            let count = lab.state().nodes.len();
            lab.down()?;
            println!("down: {count} node(s) stopped, {} removed", dir.display());
            Ok(())
        }
    }
}

async fn up(args: UpArgs) -> Result<(), LabError> {
    let options = UpOptions {
        dir: args.dir.dir,
        managers: args.managers,
        workers: args.workers,
        backend: args.backend,
        agent_bin: args.agent_bin,
        subnet: args.subnet.parse()?,
        addressing: Addressing::Subnet,
        lifetime: Lifetime::Detached,
        log_level: args.log_level,
        agent_args: args.agent_arg,
        start_timeout: Duration::from_secs(args.timeout_s),
        form_timeout: Duration::from_secs(args.timeout_s),
    };
    let mut progress = |message: &str| eprintln!("{message}");
    let lab = match Lab::up(options.clone(), &mut progress).await {
        Ok(lab) => lab,
        // Nothing was started: no hint about cleaning up.
        Err(error @ LabError::AlreadyUp { .. }) => return Err(error),
        Err(error) if !super::LabState::exists_in(&options.dir) => return Err(error),
        Err(error) => {
            let dir = options.dir.display();
            eprintln!(
                "testnet up failed; the nodes started so far keep running for inspection (`testnet status --dir {dir}`), `testnet down --dir {dir}` removes them"
            );
            return Err(error);
        }
    };
    print_status(&lab.status().await, args.json, true)
}

fn print_status(status: &LabStatus, json: bool, reach: bool) -> Result<(), LabError> {
    if json {
        println!("{}", serde_json::to_string_pretty(status)?);
    } else {
        print!("{}", table::render(status));
        if reach {
            print!("{}", table::reach(status));
        }
    }
    Ok(())
}
