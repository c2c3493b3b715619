//! The `docker` backend: every node in a container of its own, on a private bridge network of
//! the testnet's own, from an image assembled from this machine's files.
//!
//! Why containers at all, when the local backend exists: a container is the closest thing to a
//! machine of its own on one host — its own network stack and address (no loopback tricks to
//! tell nodes' traffic apart), its own process tree, its own freezer — so faults and
//! partitions look to the agents as they would across machines.
//!
//! How each part maps onto Docker, and why:
//! - the image ([`image`]): built offline from the agent binary and what it links against,
//!   cached by a hash of its contents, since nothing can be pulled;
//! - the network ([`network`]): one `--internal` bridge network per testnet on a /24 picked
//!   here, every node at a fixed address (Raft addresses must survive restarts), nodes on the
//!   agent's default ports as on real machines;
//! - a node's dir (`<dir>/nodes/<name>`) is bind-mounted at `/node`, so the agent's config dir,
//!   its control socket and its log are where the local backend has them: the lab, the tests
//!   and `symphony-ctl --socket` reach a node the same way with either backend. The container
//!   runs as the user running `testnet` (`--user uid:gid`), so what the agent writes there
//!   belongs to that user (`down` can remove it, a non-root user can open the socket);
//! - faults: `docker kill` (SIGKILL), `docker pause` / `docker unpause` (the cgroup freezer:
//!   like SIGSTOP, the node answers nothing); restart is `docker kill` then `docker start` of
//!   the same container — not `docker restart`, whose SIGTERM the agent takes as "leave
//!   gracefully" — so the node keeps its address and its image;
//! - partitions ([`firewall`]): nftables `bridge`-family rules on the host, dropping by
//!   container address on the testnet's bridge;
//! - names and labels ([`scope`]): everything created carries the testnet's label, so `down`
//!   removes exactly that;
//! - the `docker` command itself ([`cli`]): the CLI, with deadlines, rather than the Engine
//!   API.
//!
//! Without Docker (no `docker` command, or a daemon that does not answer), asking for this
//! backend fails with one sentence before anything is created, and the local backend is
//! unaffected.

mod cli;
mod firewall;
mod image;
mod network;
pub mod probe;
mod scope;
mod tar;

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use cli::Docker;
pub use probe::ensure_probe_image;
pub use scope::Scope;

use super::LabError;
use super::backend::{Backend, BackendKind, NodeHandle, ProcessState};
use super::nft::{Family, Nft};
use super::partition::Cut;
use super::state::{LabState, NodeRecord};
use crate::harness::log;
use image::NODE_MOUNT;

/// How long a killed container may take to be reported as stopped.
const KILL_TIMEOUT: Duration = Duration::from_secs(20);
const POLL_PAUSE: Duration = Duration::from_millis(20);
/// How many characters of a container id the state file keeps (what `docker ps` shows).
const SHORT_ID: usize = 12;

/// Nodes as containers.
#[derive(Debug)]
pub struct DockerBackend {
    docker: Docker,
    /// The image's tag, once this process has made sure it exists.
    image: Mutex<Option<String>>,
}

impl DockerBackend {
    /// The backend, if Docker can be used here; otherwise
    /// [`LabError::BackendUnavailable`] with one sentence saying why.
    pub fn detect() -> Result<DockerBackend, LabError> {
        let docker = Docker::detect().map_err(|reason| LabError::BackendUnavailable {
            backend: "docker",
            reason,
        })?;
        Ok(DockerBackend {
            docker,
            image: Mutex::new(None),
        })
    }

    /// Whatever of testnet `lab` is still there — containers, its network, its firewall table —
    /// one description each; empty after a complete `down`.
    pub fn leftovers(&self, lab: &LabState) -> Result<Vec<String>, LabError> {
        let scope = Scope::of(&lab.dir);
        let mut left: Vec<String> = self
            .containers(&scope)?
            .into_iter()
            .map(|id| format!("container {id}"))
            .collect();
        if network::exists(&self.docker, &scope)? {
            left.push(format!("network {}", scope.network()));
        }
        if let Ok(nft) = Nft::detect()
            && nft.exists(Family::Bridge, &scope.table())
        {
            left.push(format!("nft table bridge {}", scope.table()));
        }
        Ok(left)
    }

    /// The image for the lab's agent binary, built if it does not exist yet.
    fn image(&self, lab: &LabState) -> Result<String, LabError> {
        let mut cached = self.image.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tag) = cached.as_ref() {
            return Ok(tag.clone());
        }
        let tag = image::ensure(&self.docker, &lab.agent_bin)?;
        *cached = Some(tag.clone());
        Ok(tag)
    }

    /// Forgets the image's tag, so that the next start makes sure it exists again.
    fn forget_image(&self) {
        *self.image.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The ids of every container of the testnet, running or not.
    fn containers(&self, scope: &Scope) -> Result<Vec<String>, LabError> {
        let listed = self.docker.run(&[
            "ps",
            "--all",
            "--quiet",
            "--no-trunc",
            "--filter",
            &format!("label={}", scope.label()),
        ])?;
        Ok(listed.lines().map(str::to_string).collect())
    }

    /// Removes containers by id (`docker rm --force`: killed first if they run).
    fn remove_containers(&self, ids: &[String]) -> Result<(), LabError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args = vec!["rm".to_string(), "--force".to_string()];
        args.extend(ids.iter().cloned());
        let output = self.docker.output(&args)?;
        if output.success || output.stderr.contains("No such container") {
            Ok(())
        } else {
            Err(self.docker.failed(&args, &output))
        }
    }

    /// `docker run` of `node`, detached.
    fn run(&self, lab: &LabState, node: &NodeRecord, image: &str) -> Result<Run, LabError> {
        let scope = Scope::of(&lab.dir);
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let mut args: Vec<OsString> = vec![
            "run".into(),
            "--detach".into(),
            "--pull".into(),
            "never".into(),
            "--restart".into(),
            "no".into(),
            "--name".into(),
            scope.container(&node.name).into(),
            "--hostname".into(),
            node.name.clone().into(),
            "--label".into(),
            scope.label().into(),
            "--label".into(),
            format!("{}={}", scope::NODE_LABEL, node.name).into(),
            "--network".into(),
            scope.network().into(),
            "--ip".into(),
            node.ip.to_string().into(),
            "--user".into(),
            format!("{uid}:{gid}").into(),
            "--mount".into(),
            format!(
                "type=bind,{},target={NODE_MOUNT}",
                csv_field(&format!("source={}", node.node_dir.display()))
            )
            .into(),
        ];
        for (name, value) in &node.env {
            args.push("--env".into());
            args.push(format!("{name}={value}").into());
        }
        args.push(image.into());
        // The agent's config dir is under the mount.
        let config_dir = Path::new(NODE_MOUNT).join("config");
        args.extend(lab.command_line(node, config_dir).args());
        let output = self.docker.output(&args)?;
        if output.success {
            let id = output.stdout.trim();
            return Ok(Run::Started(id.get(..SHORT_ID).unwrap_or(id).to_string()));
        }
        if output.stderr.contains("No such image") {
            return Ok(Run::ImageGone);
        }
        Err(LabError::NodeFailed {
            node: node.name.clone(),
            reason: format!(
                "docker could not start its container: {}",
                output.first_line()
            ),
            log: node.log_path.clone(),
            tail: String::new(),
        })
    }

    /// The container's state: `running`, `paused`, `exited`, ...; `None` if there is no such
    /// container.
    fn container_state(&self, id: &str) -> Option<String> {
        let output = self
            .docker
            .output(&[
                "inspect",
                "--type",
                "container",
                "--format",
                "{{.State.Status}}",
                id,
            ])
            .ok()?;
        output.success.then(|| output.stdout.trim().to_string())
    }

    /// `docker args...` on one container, treating "not running" and "no such container" as
    /// done when `gone_is_done`.
    fn act(&self, args: &[&str], gone_is_done: bool) -> Result<(), LabError> {
        let output = self.docker.output(args)?;
        let gone =
            output.stderr.contains("is not running") || output.stderr.contains("No such container");
        if output.success || (gone_is_done && gone) {
            Ok(())
        } else {
            Err(self.docker.failed(args, &output))
        }
    }
}

/// One field of `--mount`'s comma-separated list, quoted (CSV style) if it holds a comma or a
/// quote.
fn csv_field(field: &str) -> String {
    if field.contains([',', '"']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// What `docker run` did.
enum Run {
    /// The container runs: its short id.
    Started(String),
    /// The image was not there: pruned by another testnet's build (see [`image`]) since this
    /// process made sure of it.
    ImageGone,
}

/// Puts node `index` (from 0) at host `index + 1` of `base`'s /24, on the ports of its plan.
fn place_on(base: Ipv4Addr, index: usize, node: &mut NodeRecord) -> Result<(), LabError> {
    let ip = network::host(base, index + 1)?;
    node.ip = ip;
    node.raft_addr = SocketAddr::from((ip, node.raft_addr.port()));
    node.remote_addr = SocketAddr::from((ip, node.remote_addr.port()));
    Ok(())
}

fn container_of(node: &NodeRecord) -> Option<&str> {
    node.handle.as_ref().and_then(NodeHandle::container)
}

impl Backend for DockerBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Docker
    }

    /// Removes whatever an earlier testnet in the same dir left (no state file claims it any
    /// more), makes sure the image exists, creates the network and gives every node its
    /// address on it.
    fn prepare(&self, lab: &mut LabState) -> Result<(), LabError> {
        let scope = Scope::of(&lab.dir);
        self.remove_containers(&self.containers(&scope)?)?;
        network::remove(&self.docker, &scope)?;
        self.image(lab)?;
        let base = network::create(&self.docker, &scope)?;
        for (index, node) in lab.nodes.iter_mut().enumerate() {
            place_on(base, index, node)?;
        }
        Ok(())
    }

    /// The next address on the testnet's network (the first node's /24).
    fn place(&self, lab: &LabState, index: usize, node: &mut NodeRecord) -> Result<(), LabError> {
        let Some(first) = lab.nodes.first() else {
            return Err(LabError::InvalidArgument(
                "a docker testnet gets its network with its first nodes".to_string(),
            ));
        };
        place_on(first.ip, index, node)
    }

    fn start(&self, lab: &LabState, node: &NodeRecord) -> Result<NodeHandle, LabError> {
        std::fs::create_dir_all(&node.node_dir).map_err(LabError::io(format!(
            "cannot create {}",
            node.node_dir.display()
        )))?;
        // Created here, by the user running testnet, so that the container (running as that
        // user) can always append to it, and its output is never lost.
        log::append(&node.log_path).map_err(LabError::io(format!(
            "cannot create {}",
            node.log_path.display()
        )))?;
        let image = self.image(lab)?;
        let id = match self.run(lab, node, &image)? {
            Run::Started(id) => id,
            Run::ImageGone => {
                self.forget_image();
                let image = self.image(lab)?;
                match self.run(lab, node, &image)? {
                    Run::Started(id) => id,
                    Run::ImageGone => {
                        return Err(LabError::NodeFailed {
                            node: node.name.clone(),
                            reason: format!("the image {image} disappeared as it was started"),
                            log: node.log_path.clone(),
                            tail: String::new(),
                        });
                    }
                }
            }
        };
        Ok(NodeHandle::Container { id })
    }

    fn probe(&self, node: &NodeRecord) -> ProcessState {
        let Some(id) = container_of(node) else {
            return ProcessState::Gone;
        };
        match self.container_state(id).as_deref() {
            Some("running" | "restarting") => ProcessState::Running,
            Some("paused") => ProcessState::Paused,
            _ => ProcessState::Gone,
        }
    }

    fn kill(&self, node: &NodeRecord) -> Result<(), LabError> {
        let Some(id) = container_of(node) else {
            return Ok(());
        };
        // `docker kill` sends SIGKILL, to a paused container too.
        self.act(&["kill", id], true)?;
        let deadline = Instant::now() + KILL_TIMEOUT;
        while self.probe(node) != ProcessState::Gone {
            if Instant::now() >= deadline {
                return Err(LabError::WrongNodeState {
                    node: node.name.clone(),
                    state: format!("still running {KILL_TIMEOUT:?} after `docker kill {id}`"),
                    hint: format!("see `docker inspect {id}`"),
                });
            }
            std::thread::sleep(POLL_PAUSE);
        }
        Ok(())
    }

    fn terminate(&self, node: &NodeRecord) -> Result<(), LabError> {
        match container_of(node) {
            // Not `docker stop`, which kills after its own timeout: the caller decides.
            Some(id) => self.act(&["kill", "--signal", "TERM", id], true),
            None => Ok(()),
        }
    }

    fn pause(&self, node: &NodeRecord) -> Result<(), LabError> {
        match container_of(node) {
            Some(id) => self.act(&["pause", id], false),
            None => Ok(()),
        }
    }

    fn resume(&self, node: &NodeRecord) -> Result<(), LabError> {
        match container_of(node) {
            Some(id) => self.act(&["unpause", id], false),
            None => Ok(()),
        }
    }

    /// Kill, then start the same container again: same address, same image, same config dir.
    fn restart(&self, lab: &LabState, node: &NodeRecord) -> Result<NodeHandle, LabError> {
        let Some(id) = container_of(node) else {
            return self.start(lab, node);
        };
        if self.container_state(id).is_none() {
            // Removed behind our back: a new container on the same dir is the same node.
            return self.start(lab, node);
        }
        self.kill(node)?;
        self.act(&["start", id], false)
            .map_err(|error| LabError::NodeFailed {
                node: node.name.clone(),
                reason: error.to_string(),
                log: node.log_path.clone(),
                tail: String::new(),
            })?;
        Ok(NodeHandle::Container { id: id.to_string() })
    }

    fn partition(&self, lab: &LabState, cuts: &[Cut]) -> Result<(), LabError> {
        let nft = Nft::detect().map_err(|reason| LabError::PartitionUnavailable { reason })?;
        let drops: Vec<firewall::DropRule> = cuts
            .iter()
            .filter_map(|cut| {
                let (from, to) = (lab.nodes.get(cut.from)?, lab.nodes.get(cut.to)?);
                Some(firewall::DropRule {
                    from: from.ip,
                    to: to.ip,
                })
            })
            .collect();
        let rules = firewall::rules(&drops)?;
        nft.replace(Family::Bridge, &Scope::of(&lab.dir).table(), &rules)
    }

    fn heal(&self, lab: &LabState) -> Result<(), LabError> {
        match Nft::detect() {
            Ok(nft) => nft.delete(Family::Bridge, &Scope::of(&lab.dir).table()),
            // Without nft there can be no table of ours; with a partition recorded, say why it
            // cannot be removed.
            Err(_) if lab.partition.is_none() => Ok(()),
            Err(reason) => Err(LabError::PartitionUnavailable { reason }),
        }
    }

    fn down(&self, lab: &LabState) -> Result<(), LabError> {
        let scope = Scope::of(&lab.dir);
        let mut problems = Vec::new();
        if let Err(error) = self.heal(lab) {
            problems.push(error.to_string());
        }
        // The label finds every container of the testnet, recorded or not; the recorded ids
        // are added in case a label query misses one.
        let mut ids = self.containers(&scope).unwrap_or_else(|error| {
            problems.push(error.to_string());
            Vec::new()
        });
        ids.extend(
            lab.nodes
                .iter()
                .filter_map(container_of)
                .filter(|id| !ids.iter().any(|listed| listed.starts_with(*id)))
                .map(str::to_string)
                .collect::<Vec<_>>(),
        );
        if let Err(error) = self.remove_containers(&ids) {
            problems.push(error.to_string());
        }
        if let Err(error) = network::remove(&self.docker, &scope) {
            problems.push(error.to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LabError::Cleanup(problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("source=/a/b"), "source=/a/b");
        assert_eq!(csv_field("source=/a,b"), "\"source=/a,b\"");
        assert_eq!(csv_field("source=/a\"b"), "\"source=/a\"\"b\"");
    }
}
