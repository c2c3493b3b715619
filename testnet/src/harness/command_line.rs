//! The command line of one `symphony-agent` run, built in one place for every way testnet
//! starts an agent — a child process of a test ([`super::AgentProcess`]), a lab node on this
//! machine, a lab node in a container — so that they all start the same agent the same way.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The flags of one agent run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCommandLine {
    /// `--config-dir`, as the agent sees it (inside a container: under the node's mount).
    pub config_dir: PathBuf,
    /// `--listen-raft-addr`. A worker binds no Raft port, but naming one on the node's own
    /// address keeps a node that does (an older agent, or one before it knows its role) off the
    /// default port of 127.0.0.1.
    pub raft_addr: SocketAddr,
    /// `--listen-remote-addr`: the node-to-node API (TCP) and gossip (UDP).
    pub remote_addr: SocketAddr,
    /// `--advertise-addr`, the ip other nodes reach this one at; `None` leaves the agent's
    /// default (its listen ip).
    pub advertise_ip: Option<IpAddr>,
    /// `--log-level`.
    pub log_level: String,
    /// More flags, after the ones above.
    pub extra: Vec<String>,
}

impl AgentCommandLine {
    /// The arguments, without the program.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--config-dir".into(),
            self.config_dir.clone().into(),
            "--listen-raft-addr".into(),
            self.raft_addr.to_string().into(),
            "--listen-remote-addr".into(),
            self.remote_addr.to_string().into(),
        ];
        if let Some(ip) = self.advertise_ip {
            args.push("--advertise-addr".into());
            args.push(ip.to_string().into());
        }
        args.push("--log-level".into());
        args.push(self.log_level.clone().into());
        args.extend(self.extra.iter().map(OsString::from));
        args
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn flags_in_order_with_the_extra_ones_last() {
        let mut line = AgentCommandLine {
            config_dir: PathBuf::from("/node/config"),
            raft_addr: "10.0.0.2:15760".parse().unwrap(),
            remote_addr: "10.0.0.2:27242".parse().unwrap(),
            advertise_ip: Some("10.0.0.2".parse().unwrap()),
            log_level: "warn".to_string(),
            extra: vec!["--snapshot-interval=5".to_string()],
        };
        let words = |line: &AgentCommandLine| -> Vec<String> {
            line.args()
                .iter()
                .map(|arg| arg.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            words(&line),
            [
                "--config-dir",
                "/node/config",
                "--listen-raft-addr",
                "10.0.0.2:15760",
                "--listen-remote-addr",
                "10.0.0.2:27242",
                "--advertise-addr",
                "10.0.0.2",
                "--log-level",
                "warn",
                "--snapshot-interval=5",
            ]
        );
        line.advertise_ip = None;
        assert!(!words(&line).contains(&"--advertise-addr".to_string()));
    }
}
