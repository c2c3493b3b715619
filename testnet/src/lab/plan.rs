//! The layout of a new testnet: node names, addresses and directories.
//!
//! Managers are `manager-1..M` at `127.A.B.1..M`, workers `worker-1..W` at the next addresses.
//! Every node listens on the agent's default ports on its own address (Raft 15760/tcp, remote
//! API 27242/tcp, gossip 27242/udp), as it would on its own machine. Each node owns
//! `<dir>/nodes/<name>/`, with the agent's config dir in `config/` and its output in
//! `agent.log`.

use std::net::SocketAddr;
use std::path::Path;

use symphony_ctl::proto::Role;

use super::state::{Intent, NodeRecord};
use super::{LabError, Subnet};

/// The agent's default Raft port.
pub const RAFT_PORT: u16 = 15760;
/// The agent's default remote-API port (TCP), also its gossip port (UDP).
pub const REMOTE_PORT: u16 = 27242;

/// `manager-1`, `worker-3`: the names users type.
pub fn node_name(role: Role, number: usize) -> String {
    format!("{role}-{number}")
}

/// The nodes of a testnet with `managers` managers and `workers` workers under `dir`.
pub fn plan(
    dir: &Path,
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
        let ip = subnet.host(host + 1)?;
        let name = node_name(role, index + 1);
        let node_dir = dir.join("nodes").join(&name);
        nodes.push(NodeRecord {
            role,
            ip,
            raft_addr: SocketAddr::from((ip, RAFT_PORT)),
            remote_addr: SocketAddr::from((ip, REMOTE_PORT)),
            config_dir: node_dir.join("config"),
            log_path: node_dir.join("agent.log"),
            node_dir,
            name,
            handle: None,
            intent: Intent::Running,
            node_id: None,
            raft_node_id: None,
        });
    }
    Ok(nodes)
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
        let nodes = plan(Path::new("/x"), subnet, 2, 2).unwrap();
        let names: Vec<&str> = nodes.iter().map(|node| node.name.as_str()).collect();
        assert_eq!(names, ["manager-1", "manager-2", "worker-1", "worker-2"]);
        assert_eq!(nodes[2].remote_addr.to_string(), "127.77.42.3:27242");
        assert_eq!(nodes[1].raft_addr.to_string(), "127.77.42.2:15760");
        assert_eq!(
            nodes[3].config_dir,
            Path::new("/x/nodes/worker-2/config").to_path_buf()
        );
        assert!(plan(Path::new("/x"), subnet, 0, 3).is_err());
        assert!(plan(Path::new("/x"), subnet, 200, 60).is_err());
    }
}
