//! The `local` backend: every node is a `symphony-agent` process of this machine, listening on
//! its own loopback address (see [`crate::lab::Subnet`]), in its own cgroup when we are root
//! (see [`cgroup`]); faults are signals and partitions are nftables rules (see [`nft`]).
//!
//! - [`process`]: detached processes, found again by pid and start time;
//! - [`cgroup`]: one cgroup v2 per node, the identity partition rules match on;
//! - [`firewall`]: the partition rules.

mod cgroup;
pub mod disk;
mod firewall;
mod process;

use rustix::process::Signal;

pub use cgroup::NodeCgroup;
pub use firewall::DropRule;

use super::LabError;
use super::backend::{Backend, BackendKind, NodeHandle, ProcessState};
use super::nft::{Family, Nft};
use super::partition::Cut;
use super::plan::Addressing;
use super::state::{LabState, NodeRecord};
use cgroup::Cgroups;

/// Agents as local processes.
#[derive(Debug)]
pub struct LocalBackend {
    /// Where node cgroups go, or why they cannot be made.
    cgroups: Result<Cgroups, String>,
}

impl LocalBackend {
    pub fn new() -> LocalBackend {
        LocalBackend {
            cgroups: Cgroups::detect(),
        }
    }

    /// The nft table of a testnet: one per subnet, so testnets never touch each other's rules.
    pub fn table(lab: &LabState) -> String {
        format!("symphony_testnet_{}", lab.subnet.key())
    }

    fn process_of(node: &NodeRecord) -> Option<(u32, u64)> {
        match &node.handle {
            Some(NodeHandle::Process {
                pid, start_ticks, ..
            }) => Some((*pid, *start_ticks)),
            _ => None,
        }
    }

    fn send(&self, node: &NodeRecord, signal: Signal, name: &'static str) -> Result<(), LabError> {
        let Some((pid, start)) = LocalBackend::process_of(node) else {
            return Ok(());
        };
        process::signal(pid, start, signal).map_err(|cause| LabError::Signal {
            node: node.name.clone(),
            pid,
            signal: name,
            cause,
        })
    }
}

impl Default for LocalBackend {
    fn default() -> Self {
        LocalBackend::new()
    }
}

impl Backend for LocalBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Local
    }

    fn start(&self, lab: &LabState, node: &NodeRecord) -> Result<NodeHandle, LabError> {
        std::fs::create_dir_all(&node.node_dir).map_err(LabError::io(format!(
            "cannot create {}",
            node.node_dir.display()
        )))?;
        if let Some(megabytes) = lab.disk_mb {
            disk::ensure(&node.config_dir, megabytes).map_err(LabError::io(format!(
                "cannot give {} a small disk",
                node.name
            )))?;
        }
        // A node keeps its cgroup across restarts (same path, so a partition still holds).
        // Nodes that share 127.0.0.1 cannot be partitioned, so they need none.
        let cgroup = match &self.cgroups {
            Ok(cgroups) if lab.addressing == Addressing::Subnet => {
                let cgroup = cgroups.node(&lab.subnet.key(), &node.name);
                cgroup.create().map_err(LabError::io(format!(
                    "cannot create the cgroup {}",
                    cgroup.dir.display()
                )))?;
                Some(cgroup)
            }
            _ => None,
        };
        let started = process::spawn(
            &lab.agent_bin,
            &lab.command_line(node, node.config_dir.clone()).args(),
            &node.env,
            cgroup.as_ref().map(NodeCgroup::procs_file).as_deref(),
            &node.log_path,
            lab.lifetime,
        )
        .map_err(|source| LabError::NodeFailed {
            node: node.name.clone(),
            reason: format!("cannot start {}: {source}", lab.agent_bin.display()),
            log: node.log_path.clone(),
            tail: String::new(),
        })?;
        Ok(NodeHandle::Process {
            pid: started.pid,
            start_ticks: started.start_ticks,
            cgroup,
        })
    }

    fn probe(&self, node: &NodeRecord) -> ProcessState {
        match LocalBackend::process_of(node) {
            Some((pid, start)) => process::probe(pid, start),
            None => ProcessState::Gone,
        }
    }

    fn kill(&self, node: &NodeRecord) -> Result<(), LabError> {
        let Some((pid, start)) = LocalBackend::process_of(node) else {
            return Ok(());
        };
        process::kill(pid, start).map_err(|cause| LabError::Signal {
            node: node.name.clone(),
            pid,
            signal: "SIGKILL",
            cause,
        })
    }

    fn terminate(&self, node: &NodeRecord) -> Result<(), LabError> {
        self.send(node, Signal::TERM, "SIGTERM")
    }

    fn pause(&self, node: &NodeRecord) -> Result<(), LabError> {
        self.send(node, Signal::STOP, "SIGSTOP")
    }

    fn resume(&self, node: &NodeRecord) -> Result<(), LabError> {
        self.send(node, Signal::CONT, "SIGCONT")
    }

    fn partition(&self, lab: &LabState, cuts: &[Cut]) -> Result<(), LabError> {
        if lab.addressing != Addressing::Subnet {
            return Err(LabError::PartitionUnavailable {
                reason: "the nodes of this testnet share 127.0.0.1, and partitions tell nodes \
                         apart by address; start it with a subnet of its own"
                    .to_string(),
            });
        }
        let nft = Nft::detect().map_err(|reason| LabError::PartitionUnavailable { reason })?;
        if let Err(reason) = &self.cgroups {
            return Err(LabError::PartitionUnavailable {
                reason: format!("nodes cannot get cgroups of their own: {reason}"),
            });
        }
        let mut rules = Vec::with_capacity(cuts.len());
        for cut in cuts {
            let (Some(from), Some(to)) = (lab.nodes.get(cut.from), lab.nodes.get(cut.to)) else {
                continue;
            };
            let cgroup = match &from.handle {
                Some(NodeHandle::Process {
                    cgroup: Some(cgroup),
                    ..
                }) => cgroup,
                _ => {
                    return Err(LabError::PartitionUnavailable {
                        reason: format!(
                            "{} runs without a cgroup of its own (it was started without root?); restart it as root with `testnet restart {}`",
                            from.name, from.name
                        ),
                    });
                }
            };
            rules.push(DropRule {
                from_ip: from.ip,
                from_cgroup: (cgroup.nft_path.clone(), cgroup.level),
                to_ip: to.ip,
            });
        }
        nft.replace(
            Family::Inet,
            &LocalBackend::table(lab),
            &firewall::rules(&rules)?,
        )
    }

    fn heal(&self, lab: &LabState) -> Result<(), LabError> {
        // No partition without a subnet, and the table named after the (unused) subnet may be
        // another testnet's.
        if lab.addressing != Addressing::Subnet {
            return Ok(());
        }
        match Nft::detect() {
            Ok(nft) => nft.delete(Family::Inet, &LocalBackend::table(lab)),
            // Without nft there can be no table of ours; with a partition recorded, say why
            // it cannot be removed.
            Err(_) if lab.partition.is_none() => Ok(()),
            Err(reason) => Err(LabError::PartitionUnavailable { reason }),
        }
    }

    fn down(&self, lab: &LabState) -> Result<(), LabError> {
        let mut problems = Vec::new();
        if let Err(error) = self.heal(lab) {
            problems.push(error.to_string());
        }
        for node in &lab.nodes {
            if let Err(error) = self.kill(node) {
                problems.push(error.to_string());
            }
            // Tasks outlive their agent by design (a restarted agent adopts them), but not
            // the testnet: stop what the node ran, or its cgroup cannot go either.
            crate::harness::kill_tasks(&node.config_dir);
            if lab.disk_mb.is_some()
                && let Err(error) = disk::release(&node.config_dir)
            {
                problems.push(error.to_string());
            }
            if let Some(NodeHandle::Process {
                cgroup: Some(cgroup),
                ..
            }) = &node.handle
                && let Err(error) = cgroup.remove()
            {
                problems.push(format!(
                    "cannot remove the cgroup {}: {error}",
                    cgroup.dir.display()
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LabError::Cleanup(problems.join("; ")))
        }
    }
}
