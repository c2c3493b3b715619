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
//!   half-made, see [`crate::lab::local::Nft`] for the same pattern on the local backend) and
//!   deleting it is a complete heal. Rules follow addresses, which are fixed per node, so a
//!   partition holds across `testnet restart`.
//!
//! Each cut "A sends nothing to B" is `ip saddr A ip daddr B drop`. On a container's network a
//! packet's source address is the container's own (one interface, one address), so unlike on
//! loopback the address identifies the sender. Every address in a rule is a node of this
//! testnet on its private network, a /24 no other Docker network and no route of the host
//! overlaps (see [`super::network`]): the rules cannot touch any other traffic.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::cli::{self, os_args};
use crate::lab::LabError;
use crate::lab::local::Nft;

/// How long one nft command may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(30);

/// One dropped direction: what `from` sends to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropRule {
    pub from: Ipv4Addr,
    pub to: Ipv4Addr,
}

/// Replaces the table `table` with one holding exactly `drops`, atomically.
pub fn apply(nft: &Nft, table: &str, drops: &[DropRule]) -> Result<(), LabError> {
    let script = script(table, drops)?;
    let feed: cli::Feeder<'_> =
        Box::new(move |pipe| std::io::Write::write_all(pipe, script.as_bytes()));
    cli::check(nft.bin(), &os_args(&["-f", "-"]), Some(feed), NFT_TIMEOUT)?;
    Ok(())
}

/// Deletes the table `table`, if it exists.
pub fn delete(nft: &Nft, table: &str) -> Result<(), LabError> {
    if !exists(nft, table) {
        return Ok(());
    }
    cli::check(
        nft.bin(),
        &os_args(&["delete", "table", "bridge", table]),
        None,
        NFT_TIMEOUT,
    )?;
    Ok(())
}

/// Whether the table `table` exists.
pub fn exists(nft: &Nft, table: &str) -> bool {
    cli::execute(
        nft.bin(),
        &os_args(&["list", "table", "bridge", table]),
        None,
        NFT_TIMEOUT,
    )
    .is_ok_and(|output| output.success)
}

/// The nft script that makes `table` hold exactly `drops`: the leading `table` + `delete table`
/// pair replaces a table that exists and creates one that does not, in one transaction.
pub fn script(table: &str, drops: &[DropRule]) -> Result<String, LabError> {
    let mut text = format!("table bridge {table}\ndelete table bridge {table}\n");
    text.push_str(&format!("table bridge {table} {{\n"));
    text.push_str(
        "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
    );
    for drop in drops {
        for ip in [drop.from, drop.to] {
            if !ip.is_private() {
                return Err(LabError::InvalidArgument(format!(
                    "refusing a firewall rule for {ip}: a docker testnet's nodes are on a private network"
                )));
            }
        }
        text.push_str(&format!(
            "    ip saddr {} ip daddr {} drop\n",
            drop.from, drop.to
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
    fn the_script_replaces_the_table_with_one_drop_per_cut() {
        let drops = [DropRule {
            from: Ipv4Addr::new(172, 31, 9, 2),
            to: Ipv4Addr::new(172, 31, 9, 3),
        }];
        let text = script("symphony_testnet_0123456789", &drops).unwrap();
        assert!(text.starts_with(
            "table bridge symphony_testnet_0123456789\ndelete table bridge symphony_testnet_0123456789\n"
        ));
        assert!(text.contains("type filter hook forward priority filter"));
        assert!(text.contains("ip saddr 172.31.9.2 ip daddr 172.31.9.3 drop"));
        let public = [DropRule {
            from: Ipv4Addr::new(172, 31, 9, 2),
            to: Ipv4Addr::new(8, 8, 8, 8),
        }];
        assert!(script("t", &public).is_err());
    }
}
