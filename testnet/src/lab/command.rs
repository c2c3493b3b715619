//! The `testnet up|status|kill|pause|resume|restart|partition|heal|down` commands: parse
//! nothing (the command line did, into an [`Action`]), call the [`Lab`], print. Progress goes
//! to stderr, results to stdout.

use std::path::PathBuf;

use super::partition::describe;
use super::table;
use super::up::UpOptions;
use super::{Lab, LabError, LabStatus};

/// One lab command. Every one but `Up` names the testnet by its state dir.
#[derive(Debug, Clone)]
pub enum Action {
    Up {
        options: UpOptions,
        json: bool,
    },
    Status {
        dir: PathBuf,
        json: bool,
    },
    Kill {
        dir: PathBuf,
        node: String,
    },
    Pause {
        dir: PathBuf,
        node: String,
    },
    Resume {
        dir: PathBuf,
        node: String,
    },
    Restart {
        dir: PathBuf,
        node: String,
    },
    /// Sides as the user wrote them (see [`super::partition::resolve`]).
    Partition {
        dir: PathBuf,
        sides: Vec<String>,
    },
    Heal {
        dir: PathBuf,
    },
    Down {
        dir: PathBuf,
    },
}

/// Runs one lab command.
pub async fn run(action: Action) -> Result<(), LabError> {
    match action {
        Action::Up { options, json } => up(options, json).await,
        Action::Status { dir, json } => {
            let lab = Lab::open(&dir)?;
            print_status(&lab.status().await, json, false)
        }
        Action::Kill { dir, node } => {
            let mut lab = Lab::open(&dir)?;
            println!("{}", lab.kill(&node)?);
            Ok(())
        }
        Action::Pause { dir, node } => {
            let mut lab = Lab::open(&dir)?;
            println!("{}", lab.pause(&node)?);
            Ok(())
        }
        Action::Resume { dir, node } => {
            let mut lab = Lab::open(&dir)?;
            println!("{}", lab.resume(&node)?);
            Ok(())
        }
        Action::Restart { dir, node } => {
            let mut lab = Lab::open(&dir)?;
            lab.restart(&node).await?;
            let pid = lab
                .node(&node)?
                .pid()
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            println!("{node} restarted{pid} and answering");
            Ok(())
        }
        Action::Partition { dir, sides } => {
            let mut lab = Lab::open(&dir)?;
            let partition = lab.partition(&sides)?;
            println!(
                "partitioned: {} ({} one-way links cut); `testnet heal` undoes it",
                describe(&partition.sides),
                partition.cuts.len()
            );
            Ok(())
        }
        Action::Heal { dir } => {
            let mut lab = Lab::open(&dir)?;
            if lab.heal()? {
                println!("healed: every link works again");
            } else {
                println!("there was no partition");
            }
            Ok(())
        }
        Action::Down { dir } => {
            let lab = Lab::open(&dir)?;
            let dir = lab.dir().to_path_buf();
            let count = lab.state().nodes.len();
            lab.down()?;
            println!("down: {count} node(s) stopped, {} removed", dir.display());
            Ok(())
        }
    }
}

async fn up(options: UpOptions, json: bool) -> Result<(), LabError> {
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
    print_status(&lab.status().await, json, true)
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
