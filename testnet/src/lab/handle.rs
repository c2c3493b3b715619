//! [`Lab`]: one testnet, opened from its state dir, and what an operator does to it after
//! `up` — status, kill, pause, resume, restart, partition, heal, down. Every change is written
//! to the state file before the call returns, so the next command (from any shell) sees it.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use symphony_ctl::Client;
use symphony_ctl::proto::{Role, StatusInfo};

use super::LabError;
use super::backend::{Backend, BackendKind, ProcessState};
use super::docker::DockerBackend;
use super::local::LocalBackend;
use super::partition::{self, Partition};
use super::plan;
use super::rpc::call;
use super::state::{Intent, LabState, NodeRecord};
use super::status::{self, LabStatus};
use crate::harness::{HarnessError, log, poll_until};

/// How long one `status` call may take while waiting for a node to answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How many lines of a node's log an error shows.
const LOG_TAIL_LINES: usize = 30;

/// The backend of a kind, or why it cannot be used here.
pub fn backend_for(kind: BackendKind) -> Result<Box<dyn Backend>, LabError> {
    match kind {
        BackendKind::Local => Ok(Box::new(LocalBackend::new())),
        BackendKind::Docker => Ok(Box::new(DockerBackend::detect()?)),
    }
}

/// The absolute form of `dir` (the state file records absolute paths, so that commands from
/// another working directory find everything).
pub fn absolute_dir(dir: &Path) -> Result<PathBuf, LabError> {
    std::path::absolute(dir).map_err(LabError::io(format!(
        "cannot resolve the state dir {}",
        dir.display()
    )))
}

/// One testnet and its backend.
#[derive(Debug)]
pub struct Lab {
    pub(crate) state: LabState,
    pub(crate) backend: Box<dyn Backend>,
}

impl Lab {
    /// Opens the testnet whose state is in `dir`.
    pub fn open(dir: &Path) -> Result<Lab, LabError> {
        let dir = absolute_dir(dir)?;
        let state = LabState::load(&dir)?;
        let backend = backend_for(state.backend)?;
        Ok(Lab { state, backend })
    }

    pub fn state(&self) -> &LabState {
        &self.state
    }

    pub fn dir(&self) -> &Path {
        &self.state.dir
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Result<&NodeRecord, LabError> {
        Ok(&self.state.nodes[self.state.index_of(name)?])
    }

    /// What the backend sees of `node` right now.
    pub fn probe(&self, node: &NodeRecord) -> ProcessState {
        self.backend.probe(node)
    }

    /// Every node as the backend and the cluster see it now.
    pub async fn status(&self) -> LabStatus {
        status::gather(&self.state, self.backend.as_ref()).await
    }

    /// SIGKILL. Returns a sentence saying what happened.
    pub fn kill(&mut self, name: &str) -> Result<String, LabError> {
        let index = self.state.index_of(name)?;
        let node = &self.state.nodes[index];
        let message = match self.backend.probe(node) {
            ProcessState::Gone => format!("{name} was not running"),
            _ => {
                self.backend.kill(node)?;
                format!("{name} killed (SIGKILL)")
            }
        };
        self.state.nodes[index].intent = Intent::Killed;
        self.state.save()?;
        Ok(message)
    }

    /// SIGSTOP.
    pub fn pause(&mut self, name: &str) -> Result<String, LabError> {
        let index = self.state.index_of(name)?;
        let node = &self.state.nodes[index];
        match self.backend.probe(node) {
            ProcessState::Gone => return Err(not_running(node)),
            ProcessState::Paused => return Ok(format!("{name} was already paused")),
            ProcessState::Running => self.backend.pause(node)?,
        }
        self.state.nodes[index].intent = Intent::Paused;
        self.state.save()?;
        Ok(format!(
            "{name} paused (SIGSTOP); `testnet resume {name}` continues it"
        ))
    }

    /// SIGCONT.
    pub fn resume(&mut self, name: &str) -> Result<String, LabError> {
        let index = self.state.index_of(name)?;
        let node = &self.state.nodes[index];
        let message = match self.backend.probe(node) {
            ProcessState::Gone => return Err(not_running(node)),
            ProcessState::Running => format!("{name} was not paused"),
            ProcessState::Paused => {
                self.backend.resume(node)?;
                format!("{name} resumed (SIGCONT)")
            }
        };
        self.state.nodes[index].intent = Intent::Running;
        self.state.save()?;
        Ok(message)
    }

    /// SIGTERM (the agent leaves gracefully), then waits up to `timeout` for the node to be
    /// gone; one still there by then is killed, and that is an error.
    pub async fn terminate(&mut self, name: &str, timeout: Duration) -> Result<(), LabError> {
        let index = self.state.index_of(name)?;
        let node = &self.state.nodes[index];
        let backend = self.backend.as_ref();
        backend.terminate(node)?;
        let stopped = poll_until(timeout, &format!("{name} to stop"), async || match backend
            .probe(node)
        {
            ProcessState::Gone => Ok(()),
            _ => Err("still running"),
        })
        .await;
        let outcome = match stopped {
            Ok(()) => {
                self.state.nodes[index].intent = Intent::Stopped;
                Ok(())
            }
            Err(_) => {
                backend.kill(node)?;
                self.state.nodes[index].intent = Intent::Killed;
                Err(LabError::WrongNodeState {
                    node: name.to_string(),
                    state: format!("still running {timeout:?} after SIGTERM"),
                    hint: "it was killed (SIGKILL); its log may say why it did not stop"
                        .to_string(),
                })
            }
        };
        self.state.save()?;
        outcome
    }

    /// Adds `count` nodes of `role` (the next numbers of the role, on the next addresses) and
    /// starts them without waiting (see [`Lab::wait_answers`]). They join no cluster by
    /// themselves. Returns their indexes in [`LabState::nodes`].
    pub fn add_nodes(&mut self, role: Role, count: usize) -> Result<Range<usize>, LabError> {
        let first = self.state.nodes.len();
        for index in first..first + count {
            let mut node = plan::next_node(&self.state, role)?;
            self.backend.place(&self.state, index, &mut node)?;
            self.state.nodes.push(node);
        }
        self.state.save()?;
        // One save for them all (a fleet adds hundreds): on a failure, the ones started so far.
        let mut started = Ok(());
        for index in first..first + count {
            match self.backend.start(&self.state, &self.state.nodes[index]) {
                Ok(handle) => self.state.nodes[index].handle = Some(handle),
                Err(error) => {
                    started = Err(error);
                    break;
                }
            }
        }
        self.state.save()?;
        started.map(|()| first..first + count)
    }

    /// Starts node `index` (not started yet) without waiting; records how to find it.
    pub(crate) fn start(&mut self, index: usize) -> Result<&NodeRecord, LabError> {
        let handle = self.backend.start(&self.state, &self.state.nodes[index])?;
        self.state.nodes[index].handle = Some(handle);
        self.state.save()?;
        Ok(&self.state.nodes[index])
    }

    /// Kills the node if it runs (or is paused), starts it again on the same config dir and
    /// waits until it answers on its control socket.
    pub async fn restart(&mut self, name: &str) -> Result<StatusInfo, LabError> {
        let index = self.state.index_of(name)?;
        let handle = self
            .backend
            .restart(&self.state, &self.state.nodes[index])?;
        let node = &mut self.state.nodes[index];
        node.handle = Some(handle);
        node.intent = Intent::Running;
        self.state.save()?;
        self.wait_answers(index).await
    }

    /// Sets the extra environment node `name` gets from its next start on (an empty map
    /// clears it): how a clock offset or failpoints reach an agent.
    pub fn set_env(
        &mut self,
        name: &str,
        env: std::collections::BTreeMap<String, String>,
    ) -> Result<(), LabError> {
        let index = self.state.index_of(name)?;
        self.state.nodes[index].env = env;
        self.state.save()
    }

    /// Sets the failpoints of node `name` (`name=action;...`, see `symphony_consensus::failpoint`;
    /// empty turns them all off). The running agent reads them at its next check; the file is
    /// replaced whole (written aside, then renamed), so no check reads it half written.
    pub fn set_failpoints(&self, name: &str, spec: &str) -> Result<(), LabError> {
        let index = self.state.index_of(name)?;
        let node = &self.state.nodes[index];
        let path = node.config_dir.join(super::state::FAILPOINTS_FILE);
        let aside = path.with_extension("new");
        std::fs::create_dir_all(&node.config_dir)
            .and_then(|()| std::fs::write(&aside, spec))
            .and_then(|()| std::fs::rename(&aside, &path))
            .map_err(LabError::io(format!("cannot write {}", path.display())))
    }

    /// Fills the small disk of node `name` (see [`super::UpOptions::disk_mb`]) until a write
    /// fails for lack of space.
    pub fn fill_disk(&self, name: &str) -> Result<(), LabError> {
        let node = self.small_disk(name)?;
        super::local::disk::fill(&node.config_dir)
            .map_err(LabError::io(format!("cannot fill the disk of {name}")))
    }

    /// Frees what [`Lab::fill_disk`] took.
    pub fn free_disk(&self, name: &str) -> Result<(), LabError> {
        let node = self.small_disk(name)?;
        super::local::disk::free(&node.config_dir)
            .map_err(LabError::io(format!("cannot free the disk of {name}")))
    }

    fn small_disk(&self, name: &str) -> Result<&NodeRecord, LabError> {
        if self.state.disk_mb.is_none() || self.state.backend != BackendKind::Local {
            return Err(LabError::InvalidArgument(format!(
                "{name} has no small disk of its own to fill (a local testnet started with small disks, as root, has)"
            )));
        }
        self.node(name)
    }

    /// Installs a partition (see [`partition::resolve`] for the syntax), replacing any other.
    pub fn partition(&mut self, words: &[String]) -> Result<Partition, LabError> {
        let partition = partition::resolve(&self.state, words)?;
        self.backend.partition(&self.state, &partition.cuts)?;
        self.state.partition = Some(partition.sides.clone());
        self.state.save()?;
        Ok(partition)
    }

    /// Removes the partition. Returns whether there was one.
    pub fn heal(&mut self) -> Result<bool, LabError> {
        self.backend.heal(&self.state)?;
        let had = self.state.partition.take().is_some();
        self.state.save()?;
        Ok(had)
    }

    /// Stops every node and removes what the backend created outside the state dir (cgroups,
    /// containers, firewall tables), but keeps the dir, logs and all: for a testnet whose dir
    /// its owner removes (a temp dir) or keeps for inspection.
    pub fn halt(&self) -> Result<(), LabError> {
        self.backend.down(&self.state)
    }

    /// Stops every node, heals, and removes everything `up` created: the backend's resources,
    /// the nodes' dirs, the state file, and the state dir if nothing else is left in it. Goes
    /// on past failures and reports them all at the end.
    pub fn down(self) -> Result<(), LabError> {
        let mut problems = Vec::new();
        if let Err(error) = self.backend.down(&self.state) {
            problems.push(error.to_string());
        }
        let nodes = self.state.dir.join("nodes");
        match std::fs::remove_dir_all(&nodes) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => problems.push(format!("cannot remove {}: {error}", nodes.display())),
        }
        // Keep the state file if anything is left running, so that `down` can be retried.
        if problems.is_empty() {
            for file in [self.state.path(), self.state.dir.join("state.json.tmp")] {
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        problems.push(format!("cannot remove {}: {error}", file.display()));
                    }
                }
            }
            // Only if empty: the user may keep other files there.
            let _ = std::fs::remove_dir(&self.state.dir);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LabError::Cleanup(problems.join("; ")))
        }
    }

    /// Waits until node `index` answers `status` on its control socket, failing early (with
    /// its log) if it exits; records its ids.
    pub async fn wait_answers(&mut self, index: usize) -> Result<StatusInfo, LabError> {
        let timeout = Duration::from_millis(self.state.start_timeout_ms);
        let node = &self.state.nodes[index];
        let socket = node.socket_path();
        let backend = self.backend.as_ref();
        let outcome = poll_until(
            timeout,
            &format!("{} to answer on its control socket", node.name),
            async || {
                if backend.probe(node) == ProcessState::Gone {
                    return Ok(None);
                }
                call(&socket, ATTEMPT_TIMEOUT, async |client: &mut Client| {
                    client.status().await
                })
                .await
                .map(Some)
                .map_err(|error| error.to_string())
            },
        )
        .await;
        let failed = |reason: String| LabError::NodeFailed {
            node: node.name.clone(),
            reason,
            log: node.log_path.clone(),
            tail: log_tail(&node.log_path),
        };
        let status = match outcome {
            Ok(Some(status)) => status,
            Ok(None) => {
                return Err(failed(
                    "it exited before it answered on its control socket".to_string(),
                ));
            }
            Err(HarnessError::Timeout { waited, last, .. }) => {
                return Err(failed(format!(
                    "it did not answer on its control socket within {waited:?} (last failure: {last})"
                )));
            }
            Err(other) => return Err(other.into()),
        };
        let node = &mut self.state.nodes[index];
        node.node_id = Some(status.node_id);
        node.raft_node_id = Some(status.raft_node_id);
        self.state.save()?;
        Ok(status)
    }
}

fn not_running(node: &NodeRecord) -> LabError {
    LabError::WrongNodeState {
        node: node.name.clone(),
        state: "not running".to_string(),
        hint: format!("`testnet restart {}` starts it again", node.name),
    }
}

/// The last lines of a log file (empty if it cannot be read).
pub fn log_tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    log::tail(&String::from_utf8_lossy(&bytes), LOG_TAIL_LINES)
}
