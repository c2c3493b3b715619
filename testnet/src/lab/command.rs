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
    /// A fault (or its undoing) on one node.
    Node {
        dir: PathBuf,
        node: String,
        op: NodeOp,
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

/// What `testnet kill|pause|resume|restart NODE` does to the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOp {
    Kill,
    Pause,
    Resume,
    Restart,
}

/// Runs one lab command.
pub async fn run(action: Action) -> Result<(), LabError> {
    match action {
        Action::Up { options, json } => up(options, json).await,
        Action::Status { dir, json } => {
            let lab = Lab::open(&dir)?;
            print_status(&lab.status().await, json, false)
        }
        Action::Node { dir, node, op } => {
            let mut lab = Lab::open(&dir)?;
            let said = match op {
                NodeOp::Kill => lab.kill(&node)?,
                NodeOp::Pause => lab.pause(&node)?,
                NodeOp::Resume => lab.resume(&node)?,
                NodeOp::Restart => {
                    lab.restart(&node).await?;
                    let pid = lab
                        .node(&node)?
                        .pid()
                        .map(|pid| format!(" (pid {pid})"))
                        .unwrap_or_default();
                    format!("{node} restarted{pid} and answering")
                }
            };
            println!("{said}");
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
