//! Partitions on the docker backend: nftables rules of the `bridge` family on the host, in a
//! table of the testnet's own, that drop what one container sends another over the testnet's
//! bridge.
//!
//! Why there, of the options:
//! - Inside each container (`--cap-add NET_ADMIN`, or `nsenter` into its network namespace):
//!   the image would need an nft binary and its libraries, a rule set per container must be
//!   kept consistent across them, and a restarted container comes back with a fresh namespace
//!   and no rules, quietly healing its own partition.
//! - iptables' `DOCKER-USER` chain: sees bridged traffic only through `br_netfilter` (which
//!   Docker may or may not have loaded), shares a chain with the operator's own rules, and
//!   depends on Docker's iptables setup (Docker can run with `iptables: false`, or on nftables).
//! - The `bridge` family's forward hook sees every frame the kernel switches from one port of a
//!   bridge to another, without `br_netfilter` and whatever Docker does with iptables; a table
//!   of our own (`bridge symphony_testnet_<key>`) is replaced atomically (a partition is never
//!   half-made, see [`crate::lab::nft`], as on the local backend) and deleting it is a
//!   complete heal. Rules follow addresses, which are fixed per node, so a
//!   partition holds across `testnet restart`.
//!
//! Each cut "A sends nothing to B" is `ip saddr A ip daddr B drop`. On a container's network a
//! packet's source address is the container's own (one interface, one address), so unlike on
//! loopback the address identifies the sender. Every address in a rule is a node of this
//! testnet on its private network, a /24 no other Docker network and no route of the host
//! overlaps (see [`super::network`]): the rules cannot touch any other traffic.

use std::net::Ipv4Addr;

use crate::lab::LabError;

/// One dropped direction: what `from` sends to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropRule {
    pub from: Ipv4Addr,
    pub to: Ipv4Addr,
}

/// The nft rules of `drops`, one for each, refusing any address off a private network.
pub fn rules(drops: &[DropRule]) -> Result<Vec<String>, LabError> {
    let mut rules = Vec::with_capacity(drops.len());
    for drop in drops {
        for ip in [drop.from, drop.to] {
            if !ip.is_private() {
                return Err(LabError::InvalidArgument(format!(
                    "refusing a firewall rule for {ip}: a docker testnet's nodes are on a private network"
                )));
            }
        }
        rules.push(format!("ip saddr {} ip daddr {} drop", drop.from, drop.to));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn one_drop_per_cut_on_private_addresses_only() {
        let drops = [DropRule {
            from: Ipv4Addr::new(172, 31, 9, 2),
            to: Ipv4Addr::new(172, 31, 9, 3),
        }];
        assert_eq!(
            rules(&drops).unwrap(),
            ["ip saddr 172.31.9.2 ip daddr 172.31.9.3 drop"]
        );
        let public = [DropRule {
            from: Ipv4Addr::new(172, 31, 9, 2),
            to: Ipv4Addr::new(8, 8, 8, 8),
        }];
        assert!(rules(&public).is_err());
    }
}
