//! The state file, `<dir>/state.json`: everything a later `testnet` command (from any shell)
//! needs to find and drive the nodes `testnet up` started — their pids or containers,
//! addresses, config dirs, logs — and what testnet last did to each (killed, paused) and to the
//! links between them (the partition).
//!
//! The file is rewritten whole (to a temp file, then renamed over the old one) after every
//! change, so a crash or a Ctrl-C never leaves half a file. Commands are not locked against each
//! other: running two commands on one testnet at the same moment may lose one's update.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use symphony_ctl::proto::Role;

use super::backend::{BackendKind, NodeHandle};
use super::plan::Addressing;
use super::{LabError, Subnet};
use crate::harness::AgentCommandLine;

/// The state file's name inside the state dir.
pub const STATE_FILE: &str = "state.json";

/// Bumped when a field changes meaning; an older file is refused with a clear error.
pub const STATE_VERSION: u32 = 1;

/// What testnet last did to a node, to tell "killed by `testnet kill`" from "crashed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    Running,
    Paused,
    Killed,
    /// Stopped cleanly (SIGTERM).
    Stopped,
}

/// Whether a testnet's nodes outlive the process that started them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifetime {
    /// `testnet up`: the nodes go on running after the command, in process groups of their
    /// own, until `testnet down`.
    #[default]
    Detached,
    /// A test or a benchmark: the nodes stay in its process group, so that a Ctrl-C in its
    /// terminal stops them with it; it takes them down itself when it ends.
    Owned,
}

/// One node of the testnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// `manager-1`, `worker-3`, ...
    pub name: String,
    pub role: Role,
    /// The node's own loopback address.
    pub ip: Ipv4Addr,
    pub raft_addr: SocketAddr,
    /// The node-to-node API (TCP) and gossip (UDP).
    pub remote_addr: SocketAddr,
    /// Holds `config/` and `agent.log`.
    pub node_dir: PathBuf,
    /// The agent's `--config-dir`.
    pub config_dir: PathBuf,
    /// The agent's stdout and stderr, appended across restarts.
    pub log_path: PathBuf,
    /// How the backend finds the running node; `None` before its first start.
    pub handle: Option<NodeHandle>,
    pub intent: Intent,
    /// From the node's `status`, once it answered: what `node ls` shows.
    pub node_id: Option<u64>,
    /// From the node's `status`: what Raft and `status` name leaders by.
    pub raft_node_id: Option<u64>,
    /// Extra environment the agent gets from its next start on: how faults that live in the
    /// process reach it (a clock offset through libfaketime, failpoints).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The file in a node's config dir its agent reads failpoints from.
pub const FAILPOINTS_FILE: &str = "failpoints";

impl NodeRecord {
    pub fn socket_path(&self) -> PathBuf {
        self.config_dir.join("control.sock")
    }

    pub fn pid(&self) -> Option<u32> {
        self.handle.as_ref().and_then(NodeHandle::pid)
    }
}

/// Everything testnet knows about one testnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub backend: BackendKind,
    /// The state dir, absolute.
    pub dir: PathBuf,
    /// The local backend's loopback range. A docker testnet's network picks its own private
    /// /24; its nodes' `ip`s are their container addresses there.
    pub subnet: Subnet,
    /// How the nodes got their addresses (absent in older state files: by subnet).
    #[serde(default)]
    pub addressing: Addressing,
    /// Whether the nodes outlive the process that started them (absent in older state
    /// files: they do).
    #[serde(default)]
    pub lifetime: Lifetime,
    /// The agent binary every node runs, absolute.
    pub agent_bin: PathBuf,
    /// Passed to every agent as `--log-level`.
    pub log_level: String,
    /// More flags for every agent.
    pub agent_args: Vec<String>,
    /// How long a node may take to answer on its control socket after a start, in ms.
    pub start_timeout_ms: u64,
    /// Each node's config dir is a tmpfs of this many MiB (local backend, as root): a disk
    /// small enough to fill, for disk-full faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<u64>,
    /// Set once `init` succeeded.
    pub cluster_id: Option<String>,
    pub nodes: Vec<NodeRecord>,
    /// The sides of the current partition, by node name; `None` when every link works.
    pub partition: Option<Vec<Vec<String>>>,
}

impl LabState {
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    pub fn path(&self) -> PathBuf {
        LabState::path_in(&self.dir)
    }

    /// Whether `dir` holds a state file.
    pub fn exists_in(dir: &Path) -> bool {
        LabState::path_in(dir).is_file()
    }

    /// Reads `<dir>/state.json`.
    pub fn load(dir: &Path) -> Result<LabState, LabError> {
        let path = LabState::path_in(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(LabError::NoLab {
                    dir: dir.to_path_buf(),
                });
            }
            Err(error) => {
                return Err(LabError::Io {
                    context: format!("cannot read {}", path.display()),
                    cause: error,
                });
            }
        };
        let state: LabState = serde_json::from_str(&text).map_err(|error| LabError::BadState {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        if state.version != STATE_VERSION {
            return Err(LabError::BadState {
                path,
                reason: format!(
                    "it has version {}, this testnet reads version {STATE_VERSION}",
                    state.version
                ),
            });
        }
        Ok(state)
    }

    /// Writes the state file whole: to a temp file, then renamed over the old one.
    pub fn save(&self) -> Result<(), LabError> {
        let path = self.path();
        let temp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(|error| LabError::BadState {
            path: path.clone(),
            reason: format!("cannot encode it: {error}"),
        })?;
        std::fs::write(&temp, text + "\n")
            .map_err(LabError::io(format!("cannot write {}", temp.display())))?;
        std::fs::rename(&temp, &path)
            .map_err(LabError::io(format!("cannot replace {}", path.display())))
    }

    /// How the agent of `node` is started, with `config_dir` its config dir as the agent sees
    /// it (inside a container: under the node's mount).
    pub fn command_line(&self, node: &NodeRecord, config_dir: PathBuf) -> AgentCommandLine {
        // Every node reads its failpoints from a file in its config dir (absent: none), so
        // that a test or the nemesis can turn them on and off in a running agent (see
        // [`crate::lab::Lab::set_failpoints`]); release builds ignore it.
        let mut extra = self.agent_args.clone();
        extra.push("--failpoints-file".to_string());
        extra.push(config_dir.join(FAILPOINTS_FILE).display().to_string());
        AgentCommandLine {
            config_dir,
            raft_addr: node.raft_addr,
            remote_addr: node.remote_addr,
            advertise_ip: Some(node.ip.into()),
            log_level: self.log_level.clone(),
            extra,
        }
    }

    /// The node called `name`.
    pub fn index_of(&self, name: &str) -> Result<usize, LabError> {
        self.nodes
            .iter()
            .position(|node| node.name == name)
            .ok_or_else(|| LabError::NoSuchNode {
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.name.clone()).collect()
    }

    /// The indexes of the managers.
    pub fn managers(&self) -> impl Iterator<Item = usize> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.role == Role::Manager)
            .map(|(index, _)| index)
    }
}
