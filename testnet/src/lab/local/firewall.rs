//! Partitions on the local backend: nftables rules in a table of the testnet's own (see
//! [`crate::lab::nft`] for how the table is replaced and removed).
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

use std::net::Ipv4Addr;

use crate::lab::LabError;

/// One dropped direction of traffic, with what identifies the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRule {
    pub from_ip: Ipv4Addr,
    /// The sender's cgroup: `(path relative to /sys/fs/cgroup, level)`.
    pub from_cgroup: (String, u32),
    pub to_ip: Ipv4Addr,
}

/// The nft rules of `drops`, two for each (see the module docs), refusing anything off
/// loopback.
pub fn rules(drops: &[DropRule]) -> Result<Vec<String>, LabError> {
    let mut rules = Vec::with_capacity(drops.len() * 2);
    for drop in drops {
        for ip in [drop.from_ip, drop.to_ip] {
            if !ip.is_loopback() {
                return Err(LabError::InvalidArgument(format!(
                    "refusing a firewall rule for {ip}: testnet only ever touches 127.0.0.0/8"
                )));
            }
        }
        let (path, level) = &drop.from_cgroup;
        if path.contains('"') {
            return Err(LabError::InvalidArgument(format!(
                "the cgroup path {path:?} cannot be quoted for nft"
            )));
        }
        rules.push(format!(
            "socket cgroupv2 level {level} \"{path}\" ip daddr {} drop",
            drop.to_ip
        ));
        rules.push(format!(
            "ip saddr {} ip daddr {} drop",
            drop.from_ip, drop.to_ip
        ));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn two_drops_for_each_cut() {
        let drops = [DropRule {
            from_ip: Ipv4Addr::new(127, 77, 0, 1),
            from_cgroup: ("unified/symphony-testnet/77_0/manager-1".to_string(), 3),
            to_ip: Ipv4Addr::new(127, 77, 0, 2),
        }];
        assert_eq!(
            rules(&drops).unwrap(),
            [
                "socket cgroupv2 level 3 \"unified/symphony-testnet/77_0/manager-1\" ip daddr 127.77.0.2 drop",
                "ip saddr 127.77.0.1 ip daddr 127.77.0.2 drop",
            ]
        );
    }

    #[test]
    fn refuses_anything_off_loopback() {
        let drops = [DropRule {
            from_ip: Ipv4Addr::new(127, 77, 0, 1),
            from_cgroup: ("x".to_string(), 1),
            to_ip: Ipv4Addr::new(10, 0, 0, 2),
        }];
        assert!(rules(&drops).is_err());
    }
}
