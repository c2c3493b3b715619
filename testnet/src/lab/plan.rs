//! The layout of a testnet: node names, addresses and directories.
//!
//! Managers are `manager-1..M`, workers `worker-1..W`; nodes added later take the next number
//! of their role. Each node owns `<dir>/nodes/<name>/`, with the agent's config dir in
//! `config/` and its output in `agent.log`. Addresses depend on the [`Addressing`]:
//! - by subnet (what `testnet up` and chaos runs use): managers at `127.A.B.1..M`, workers at
//!   the next addresses, every node on the agent's default ports on its own address (Raft
//!   15760/tcp, remote API 27242/tcp, gossip 27242/udp), as it would on its own machine;
//! - by OS ports (what tests and benchmarks use): every node on 127.0.0.1, on ports the OS
//!   hands out.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use serde::{Deserialize, Serialize};
use symphony_ctl::proto::Role;

use super::state::{Intent, LabState, NodeRecord};
use super::{LabError, Subnet};
use crate::harness::free_port;

/// The agent's default Raft port.
pub const RAFT_PORT: u16 = 15760;
/// The agent's default remote-API port (TCP), also its gossip port (UDP).
pub const REMOTE_PORT: u16 = 27242;

/// How a testnet's nodes get their addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    /// Each node on its own address of the subnet, on the agent's default ports, as on a
    /// machine of its own: what partitions need, since they tell nodes apart by address. At
    /// most [`super::subnet::MAX_NODES`] nodes, one testnet per subnet.
    #[default]
    Subnet,
    /// Every node on 127.0.0.1, on ports the OS hands out: any number of nodes and of testnets
    /// at once (tests in parallel, a fleet of hundreds), but no partitions.
    OsPorts,
}

/// `manager-1`, `worker-3`: the names users type.
pub fn node_name(role: Role, number: usize) -> String {
    format!("{role}-{number}")
}

/// The nodes of a testnet with `managers` managers and `workers` workers under `dir`.
pub fn plan(
    dir: &Path,
    addressing: Addressing,
    subnet: Subnet,
    managers: usize,
    workers: usize,
) -> Result<Vec<NodeRecord>, LabError> {
    if managers == 0 {
        return Err(LabError::InvalidArgument(
            "a testnet needs at least one manager (--managers 1 or more)".to_string(),
        ));
    }
    let roles = std::iter::repeat_n(Role::Manager, managers)
        .enumerate()
        .chain(std::iter::repeat_n(Role::Worker, workers).enumerate());
    let mut nodes = Vec::with_capacity(managers + workers);
    for (host, (index, role)) in roles.enumerate() {
        nodes.push(record(dir, addressing, subnet, role, index + 1, host + 1)?);
    }
    Ok(nodes)
}

/// One more node of `role` for the testnet `lab`: the next number of its role, the next
/// address.
pub fn next_node(lab: &LabState, role: Role) -> Result<NodeRecord, LabError> {
    let number = lab.nodes.iter().filter(|node| node.role == role).count() + 1;
    record(
        &lab.dir,
        lab.addressing,
        lab.subnet,
        role,
        number,
        lab.nodes.len() + 1,
    )
}

/// Node `number` of `role`, the testnet's `host`-th node (from 1).
fn record(
    dir: &Path,
    addressing: Addressing,
    subnet: Subnet,
    role: Role,
    number: usize,
    host: usize,
) -> Result<NodeRecord, LabError> {
    let (ip, raft_port, remote_port) = match addressing {
        Addressing::Subnet => (subnet.host(host)?, RAFT_PORT, REMOTE_PORT),
        Addressing::OsPorts => (Ipv4Addr::LOCALHOST, free_port()?, free_port()?),
    };
    let name = node_name(role, number);
    let node_dir = dir.join("nodes").join(&name);
    Ok(NodeRecord {
        role,
        ip,
        raft_addr: SocketAddr::from((ip, raft_port)),
        remote_addr: SocketAddr::from((ip, remote_port)),
        config_dir: node_dir.join("config"),
        log_path: node_dir.join("agent.log"),
        node_dir,
        name,
        handle: None,
        intent: Intent::Running,
        node_id: None,
        raft_node_id: None,
        env: std::collections::BTreeMap::new(),
    })
}

/// Fails with [`LabError::AddressInUse`] if any node's TCP or UDP address is taken (another
/// testnet on the same subnet, or a leftover agent).
pub fn check_addresses_free(nodes: &[NodeRecord]) -> Result<(), LabError> {
    for node in nodes {
        for addr in [node.raft_addr, node.remote_addr] {
            std::net::TcpListener::bind(addr).map_err(|_| LabError::AddressInUse {
                addr: format!("{addr}/tcp"),
            })?;
        }
        std::net::UdpSocket::bind(node.remote_addr).map_err(|_| LabError::AddressInUse {
            addr: format!("{}/udp", node.remote_addr),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn managers_first_then_workers_each_on_its_own_address() {
        let subnet = Subnet::new(77, 42).unwrap();
        let nodes = plan(Path::new("/x"), Addressing::Subnet, subnet, 2, 2).unwrap();
        let names: Vec<&str> = nodes.iter().map(|node| node.name.as_str()).collect();
        assert_eq!(names, ["manager-1", "manager-2", "worker-1", "worker-2"]);
        assert_eq!(nodes[2].remote_addr.to_string(), "127.77.42.3:27242");
        assert_eq!(nodes[1].raft_addr.to_string(), "127.77.42.2:15760");
        assert_eq!(
            nodes[3].config_dir,
            Path::new("/x/nodes/worker-2/config").to_path_buf()
        );
        assert!(plan(Path::new("/x"), Addressing::Subnet, subnet, 0, 3).is_err());
        assert!(plan(Path::new("/x"), Addressing::Subnet, subnet, 200, 60).is_err());
    }

    #[test]
    fn os_ports_put_any_number_of_nodes_on_127_0_0_1() {
        let nodes = plan(
            Path::new("/x"),
            Addressing::OsPorts,
            Subnet::DEFAULT,
            3,
            300,
        )
        .unwrap();
        assert_eq!(nodes.len(), 303);
        assert!(nodes.iter().all(|node| node.ip == Ipv4Addr::LOCALHOST));
        let mut ports: Vec<u16> = nodes
            .iter()
            .flat_map(|node| [node.raft_addr.port(), node.remote_addr.port()])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 606, "no port is handed out twice");
    }
}
