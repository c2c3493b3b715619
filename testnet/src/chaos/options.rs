//! What one chaos run does: the cluster it brings up, the load, the faults, the timings.
//!
//! Everything random in a run derives from [`ChaosOptions::seed`], so a run can be repeated;
//! what cannot be repeated is timing (which node leads when a fault picks "the leader", how many
//! operations fit in a second), which is why a run prints its seed and its fault log.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lab::{BackendKind, Subnet};

/// A kind of fault the nemesis injects.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// SIGKILL a node, start it again later on the same config dir.
    Kill,
    /// SIGSTOP a node (it answers nothing, as a hung machine), SIGCONT later.
    Pause,
    /// Cut one node off, or split the managers into a minority and a majority; heal later.
    Partition,
    /// SIGTERM a node (a clean stop), start it again.
    Restart,
    /// A manager leaves and joins again with the manager token, or is demoted and promoted.
    Membership,
    /// A manager's disk fills up (its config dir is a small tmpfs; local backend, as root);
    /// freed later.
    DiskFull,
    /// A node restarts with its wall clock an hour behind or a day ahead (libfaketime; local
    /// backend), and later restarts with it right again.
    Clock,
    /// Every fsync of a manager takes 50 ms longer (a failpoint), for a while.
    SlowDisk,
    /// A failpoint of a manager's store, snapshots or membership changes fails (an I/O error,
    /// or a panic of the agent), for a while.
    Failpoint,
    /// The cluster's root CA is rotated (`ca rotate` through a manager): every node renews
    /// onto the new root while the clients run; the fault lasts until the rotation ends.
    CaRotate,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Restart,
        FaultKind::Membership,
        FaultKind::DiskFull,
        FaultKind::Clock,
        FaultKind::SlowDisk,
        FaultKind::Failpoint,
        FaultKind::CaRotate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Restart => "restart",
            FaultKind::Membership => "membership",
            FaultKind::DiskFull => "disk-full",
            FaultKind::Clock => "clock",
            FaultKind::SlowDisk => "slow-disk",
            FaultKind::Failpoint => "failpoint",
            FaultKind::CaRotate => "ca-rotate",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Gossip and liveness timings much faster than the LAN profile, so that a worker fault of a
/// few seconds is seen (`down`) and undone (`ready`) within the fault's hold. Each is added to
/// the agents' flags unless the user passed that flag.
pub const FAST_LIVENESS_FLAGS: [(&str, &str); 6] = [
    ("--gossip-probe-period-ms", "200"),
    ("--gossip-probe-rtt-ms", "100"),
    ("--gossip-suspect-ms", "1000"),
    ("--liveness-grace-ms", "500"),
    // Tasks of a lost node move within the run's faults, and `--on-isolation stop` ones too.
    ("--node-loss-grace-ms", "2000"),
    ("--isolation-lease-ms", "3000"),
];

/// The subnet a chaos run's local testnet uses unless told otherwise: not the lab's default,
/// so a run never collides with a `testnet up` of the same user.
pub const DEFAULT_SUBNET: &str = "127.78.0";

/// One chaos run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// The seed of every random choice: operations, keys, faults, targets, hold times.
    pub seed: u64,
    /// How long clients run and faults are injected (recovery and the check come after).
    pub duration: Duration,
    /// The faults the nemesis may pick from; empty means a run without faults.
    pub faults: Vec<FaultKind>,
    pub backend: BackendKind,
    pub managers: usize,
    pub workers: usize,
    /// Concurrent KV clients.
    pub clients: u32,
    /// How many keys the clients share (fewer keys, more contention).
    pub keys: usize,
    /// The lab's state dir; must not hold a testnet yet. Removed (as `testnet down` does) at
    /// the end.
    pub lab_dir: PathBuf,
    /// The agent binary; `None`: `$SYMPHONY_AGENT_BIN` or next to this executable.
    pub agent_bin: Option<PathBuf>,
    pub subnet: Subnet,
    /// Flags for every agent, the fast liveness ones included (see [`agent_args`]).
    pub agent_args: Vec<String>,
    pub log_level: String,
    /// How long one client operation may take before it counts as indeterminate.
    pub op_timeout: Duration,
    /// The longest pause a client takes between two operations (it picks one at random up to
    /// this): keeps the history, and so the check, a reasonable size.
    pub think_max: Duration,
    /// How long a killed, paused or cut-off worker may take to be marked `down`.
    pub worker_down_timeout: Duration,
    /// How long the cluster may take to be whole again after a fault (one leader, every manager
    /// voting, every node ready), and after the run.
    pub recovery_timeout: Duration,
    /// How long a node may take to answer after a start.
    pub start_timeout: Duration,
}

impl ChaosOptions {
    /// The defaults of `testnet chaos`, for a run in `lab_dir`.
    pub fn new(seed: u64, lab_dir: PathBuf) -> ChaosOptions {
        ChaosOptions {
            seed,
            duration: Duration::from_secs(60),
            faults: FaultKind::ALL.to_vec(),
            backend: BackendKind::Local,
            managers: 3,
            workers: 2,
            clients: 5,
            keys: 8,
            lab_dir,
            agent_bin: None,
            subnet: Subnet::new(78, 0).unwrap_or_default(),
            agent_args: agent_args(&[]),
            log_level: "info".to_string(),
            op_timeout: Duration::from_secs(2),
            think_max: Duration::from_millis(10),
            worker_down_timeout: Duration::from_secs(20),
            recovery_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(30),
        }
    }

    /// Whether the nemesis may use `kind`.
    pub fn enabled(&self, kind: FaultKind) -> bool {
        self.faults.contains(&kind)
    }
}

/// The user's agent flags with every [`FAST_LIVENESS_FLAGS`] entry the user did not set.
pub fn agent_args(user: &[String]) -> Vec<String> {
    let mut args: Vec<String> = FAST_LIVENESS_FLAGS
        .iter()
        .filter(|(flag, _)| {
            !user
                .iter()
                .any(|arg| arg == flag || arg.starts_with(&format!("{flag}=")))
        })
        .map(|(flag, value)| format!("{flag}={value}"))
        .collect();
    args.extend(user.iter().cloned());
    args
}

/// Reads a duration as people write it: `60s`, `2m`, `1500ms`, `1h`, or a bare number of
/// seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration; write e.g. 60s, 2m or 1500ms"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is not a usable duration"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations_read_as_written() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn fast_liveness_flags_yield_to_the_users() {
        let args = agent_args(&["--liveness-grace-ms=2000".to_string()]);
        assert!(args.contains(&"--gossip-probe-period-ms=200".to_string()));
        assert!(!args.contains(&"--liveness-grace-ms=500".to_string()));
        assert_eq!(args.last().unwrap(), "--liveness-grace-ms=2000");
        let args = agent_args(&["--gossip-suspect-ms".to_string(), "3000".to_string()]);
        assert!(!args.iter().any(|arg| arg == "--gossip-suspect-ms=1000"));
        assert_eq!(agent_args(&[]).len(), FAST_LIVENESS_FLAGS.len());
    }
}
