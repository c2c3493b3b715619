//! The testnet's private network: one Docker bridge network per testnet, `--internal`, on a
//! /24 of its own, with every node at a fixed address.
//!
//! - Fixed addresses, because a node's Raft and remote addresses are in the cluster state and
//!   must survive a restart; Docker only lets a container pick its address (`--ip`) on a
//!   network whose subnet was given explicitly, so the backend picks the subnet itself.
//! - Picking it: a few candidate /24s in ranges Docker's own pools rarely reach (high in
//!   172.16.0.0/12, then 10.213.0.0/16), starting at a place derived from the testnet's key so
//!   that parallel testnets rarely try the same one first. A candidate that overlaps a route of
//!   this host is skipped (it would shadow a real network), one that overlaps another Docker
//!   network is refused by Docker ("Pool overlaps") and the next is tried.
//! - `--internal`: the nodes reach each other and nothing else (no route out, no NAT), so a
//!   testnet can never send traffic anywhere but to its own containers. The host needs no
//!   route to them either: it talks to each node over its control socket, a file in the
//!   bind-mounted config dir.
//! - The gateway takes `.1`; node `n` (from 1) is at `.n+1`.

use std::net::Ipv4Addr;

use super::cli::Docker;
use super::scope::Scope;
use crate::lab::LabError;
use crate::procfs;

/// Candidate /16s, tried in order; within each, [`TRIES_PER_RANGE`] /24s.
const RANGES: [[u8; 2]; 5] = [[172, 31], [172, 30], [172, 29], [172, 28], [10, 213]];
const TRIES_PER_RANGE: u8 = 8;

/// The highest node number on a /24 whose `.1` is the gateway.
pub const MAX_NODES: usize = 253;

/// Creates the testnet's network and returns its base address (`a.b.c.0`).
pub fn create(docker: &Docker, scope: &Scope) -> Result<Ipv4Addr, LabError> {
    let routes = procfs::ipv4_routes();
    let mut refused = Vec::new();
    for base in candidates(scope) {
        if routes.iter().any(|route| route.overlaps(base, 24)) {
            continue;
        }
        let [a, b, c, _] = base.octets();
        let subnet = format!("{a}.{b}.{c}.0/24");
        let args = [
            "network".to_string(),
            "create".to_string(),
            "--driver".to_string(),
            "bridge".to_string(),
            "--internal".to_string(),
            "--subnet".to_string(),
            subnet.clone(),
            "--gateway".to_string(),
            format!("{a}.{b}.{c}.1"),
            "--label".to_string(),
            scope.label(),
            "--opt".to_string(),
            format!("com.docker.network.bridge.name={}", scope.bridge()),
            scope.network(),
        ];
        let output = docker.output(&args)?;
        if output.success {
            return Ok(base);
        }
        if output.stderr.contains("overlaps") {
            refused.push(subnet);
            continue;
        }
        return Err(docker.failed(&args, &output));
    }
    Err(LabError::BackendUnavailable {
        backend: "docker",
        reason: format!(
            "no free /24 for the testnet's network (tried {}; the others overlap this host's routes); remove unused Docker networks (`docker network prune`)",
            if refused.is_empty() {
                "none".to_string()
            } else {
                refused.join(", ")
            }
        ),
    })
}

/// Removes the testnet's network, if it exists (its containers must be gone).
pub fn remove(docker: &Docker, scope: &Scope) -> Result<(), LabError> {
    let args = ["network", "rm", &scope.network()];
    let output = docker.output(&args)?;
    if output.success || missing(&output.stderr) {
        Ok(())
    } else {
        Err(docker.failed(&args, &output))
    }
}

/// Whether the testnet's network exists.
pub fn exists(docker: &Docker, scope: &Scope) -> Result<bool, LabError> {
    let args = [
        "network",
        "inspect",
        "--format",
        "{{.Name}}",
        &scope.network(),
    ];
    let output = docker.output(&args)?;
    if output.success {
        Ok(true)
    } else if missing(&output.stderr) {
        Ok(false)
    } else {
        Err(docker.failed(&args, &output))
    }
}

/// Node number `n`'s address on the network at `base`.
pub fn host(base: Ipv4Addr, n: usize) -> Result<Ipv4Addr, LabError> {
    let [a, b, c, _] = base.octets();
    match u8::try_from(n + 1) {
        Ok(last) if (1..=MAX_NODES).contains(&n) => Ok(Ipv4Addr::new(a, b, c, last)),
        _ => Err(LabError::InvalidArgument(format!(
            "a docker testnet has at most {MAX_NODES} nodes (one /24, the gateway at .1), not {n}"
        ))),
    }
}

/// Docker's ways of saying "no such network".
fn missing(stderr: &str) -> bool {
    let lower = stderr.to_lowercase();
    lower.contains("no such network") || lower.contains("not found")
}

/// The candidate bases, in order of preference for this testnet.
fn candidates(scope: &Scope) -> impl Iterator<Item = Ipv4Addr> {
    let start = u8::from_str_radix(&scope.key()[..2], 16).unwrap_or(0);
    RANGES.into_iter().flat_map(move |[a, b]| {
        (0..TRIES_PER_RANGE).map(move |step| Ipv4Addr::new(a, b, start.wrapping_add(step), 0))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;

    #[test]
    fn nodes_start_after_the_gateway() {
        let base = Ipv4Addr::new(172, 31, 9, 0);
        assert_eq!(host(base, 1).unwrap(), Ipv4Addr::new(172, 31, 9, 2));
        assert_eq!(host(base, 253).unwrap(), Ipv4Addr::new(172, 31, 9, 254));
        assert!(host(base, 0).is_err());
        assert!(host(base, 254).is_err());
    }

    #[test]
    fn candidates_are_private_24s() {
        let scope = Scope::of(Path::new("/x"));
        let all: Vec<Ipv4Addr> = candidates(&scope).collect();
        assert_eq!(all.len(), RANGES.len() * usize::from(TRIES_PER_RANGE));
        assert!(all.iter().all(|ip| ip.is_private() && ip.octets()[3] == 0));
    }
}
