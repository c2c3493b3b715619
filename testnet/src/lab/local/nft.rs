//! Partitions on the local backend: nftables rules in a table of the testnet's own.
//!
//! Why nftables: the nodes are processes of this machine, talking over `lo`, so the cut has to
//! be made in this machine's packet path; nftables is the kernel's current firewall, atomic
//! (a whole rule set is replaced in one transaction, so a partition never exists half-made)
//! and scoped (a table of our own, `inet symphony_testnet_<subnet key>`, leaves every other
//! rule on the machine alone, and deleting it is a complete heal). Two testnets on one machine
//! have different tables, so one's heal never touches the other's partition.
//!
//! Each cut "A sends nothing to B" is a rule on the output hook: a packet from a socket in A's
//! cgroup (see [`super::cgroup`] for why the source address cannot identify A) to B's address
//! is dropped. A second rule drops `ip saddr A ip daddr B`, for sockets that are bound to A's
//! address (gossip over UDP), which keeps the cut right even for a node whose cgroup
//! membership the kernel could not see. Dropping, not rejecting: a partitioned peer looks like
//! a silent network, not a closed port. Every address in a rule is a testnet node's, in
//! 127.0.0.0/8: the rules can only affect loopback traffic.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::lab::LabError;

/// Where nft usually lives; `$PATH` is searched after these.
const NFT_CANDIDATES: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];

/// One dropped direction of traffic, with what identifies the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRule {
    pub from_ip: Ipv4Addr,
    /// The sender's cgroup: `(path relative to /sys/fs/cgroup, level)`.
    pub from_cgroup: (String, u32),
    pub to_ip: Ipv4Addr,
}

/// The `nft` command, usable (found, and we are root).
#[derive(Debug, Clone)]
pub struct Nft {
    bin: PathBuf,
}

impl Nft {
    /// Finds nft and checks that we may use it, or says why not.
    pub fn detect() -> Result<Nft, String> {
        let found = NFT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .chain(
                std::env::var_os("PATH")
                    .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|dir| dir.join("nft")),
            )
            .find(|candidate| candidate.is_file());
        let Some(bin) = found else {
            return Err(
                "nft (nftables) is not installed; install the nftables package".to_string(),
            );
        };
        if !rustix::process::geteuid().is_root() {
            return Err("changing nftables rules needs root; run testnet as root".to_string());
        }
        Ok(Nft { bin })
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Replaces the table `table` with one holding exactly `rules`, atomically.
    pub fn apply(&self, table: &str, rules: &[DropRule]) -> Result<(), LabError> {
        let script = script(table, rules)?;
        self.run(&["-f", "-"], Some(&script))
    }

    /// Deletes the table `table`, if it exists.
    pub fn delete(&self, table: &str) -> Result<(), LabError> {
        if !self.exists(table) {
            return Ok(());
        }
        self.run(&["delete", "table", "inet", table], None)
    }

    /// Whether the table `table` exists.
    pub fn exists(&self, table: &str) -> bool {
        Command::new(&self.bin)
            .args(["list", "table", "inet", table])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<(), LabError> {
        let command = format!("{} {}", self.bin.display(), args.join(" "));
        let mut child = Command::new(&self.bin)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(LabError::io(format!("cannot run {command}")))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .map_err(LabError::io(format!("cannot write the rules to {command}")))?;
        }
        let output = child
            .wait_with_output()
            .map_err(LabError::io(format!("cannot wait for {command}")))?;
        if output.status.success() {
            return Ok(());
        }
        Err(LabError::CommandFailed {
            command,
            status: output.status.to_string(),
            output: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// The nft script that makes `table` hold exactly `rules`. The leading `table` + `delete
/// table` pair makes it replace a table that exists and create one that does not, in the same
/// transaction as the new rules.
pub fn script(table: &str, rules: &[DropRule]) -> Result<String, LabError> {
    let mut text = format!("table inet {table}\ndelete table inet {table}\n");
    text.push_str(&format!("table inet {table} {{\n"));
    text.push_str(
        "  chain output {\n    type filter hook output priority filter; policy accept;\n",
    );
    for rule in rules {
        for ip in [rule.from_ip, rule.to_ip] {
            if !ip.is_loopback() {
                return Err(LabError::InvalidArgument(format!(
                    "refusing a firewall rule for {ip}: testnet only ever touches 127.0.0.0/8"
                )));
            }
        }
        let (path, level) = &rule.from_cgroup;
        if path.contains('"') {
            return Err(LabError::InvalidArgument(format!(
                "the cgroup path {path:?} cannot be quoted for nft"
            )));
        }
        text.push_str(&format!(
            "    socket cgroupv2 level {level} \"{path}\" ip daddr {} drop\n",
            rule.to_ip
        ));
        text.push_str(&format!(
            "    ip saddr {} ip daddr {} drop\n",
            rule.from_ip, rule.to_ip
        ));
    }
    text.push_str("  }\n}\n");
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_script_replaces_the_table_with_drops_for_each_cut() {
        let rules = [DropRule {
            from_ip: Ipv4Addr::new(127, 77, 0, 1),
            from_cgroup: ("unified/symphony-testnet/77_0/manager-1".to_string(), 3),
            to_ip: Ipv4Addr::new(127, 77, 0, 2),
        }];
        let text = script("symphony_testnet_77_0", &rules).unwrap();
        assert!(text.starts_with(
            "table inet symphony_testnet_77_0\ndelete table inet symphony_testnet_77_0\n"
        ));
        assert!(text.contains(
            "socket cgroupv2 level 3 \"unified/symphony-testnet/77_0/manager-1\" ip daddr 127.77.0.2 drop"
        ));
        assert!(text.contains("ip saddr 127.77.0.1 ip daddr 127.77.0.2 drop"));
    }

    #[test]
    fn refuses_anything_off_loopback() {
        let rules = [DropRule {
            from_ip: Ipv4Addr::new(127, 77, 0, 1),
            from_cgroup: ("x".to_string(), 1),
            to_ip: Ipv4Addr::new(10, 0, 0, 2),
        }];
        assert!(script("t", &rules).is_err());
    }
}
