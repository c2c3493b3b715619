//! What the agent's integration tests share.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use symphony_ctl::Client;

/// An agent process, killed when dropped.
pub struct Agent(pub Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where an agent listens.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub remote: u16,
    pub raft: u16,
}

/// Starts an agent in `dir` on OS-given ports; returns it, its control client and its
/// remote port.
pub async fn start_agent(dir: &std::path::Path) -> (Agent, Client, u16) {
    let (agent, client, ports) = start_agent_with_ports(dir).await;
    (agent, client, ports.remote)
}

/// Like [`start_agent`], with both ports.
pub async fn start_agent_with_ports(dir: &std::path::Path) -> (Agent, Client, Ports) {
    let ports = Ports {
        remote: free_port(),
        raft: free_port(),
    };
    let agent = Agent(
        Command::new(AGENT)
            .arg("--config-dir")
            .arg(dir)
            .arg("--listen-raft-addr")
            .arg(format!("127.0.0.1:{}", ports.raft))
            .arg("--listen-remote-addr")
            .arg(format!("127.0.0.1:{}", ports.remote))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = dir.join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        if let Ok(client) = Client::connect(&socket).await {
            break client;
        }
        assert!(
            Instant::now() < deadline,
            "the agent never opened its control socket"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (agent, client, ports)
}

/// The agent binary Cargo built for these tests.
pub const AGENT: &str = env!("CARGO_BIN_EXE_symphony-agent");

/// A port for an agent: the testnet harness's picker, which keeps out of the kernel's
/// ephemeral range (an outgoing connection could take a port `bind(0)` gave) and claims the
/// port across processes.
pub fn free_port() -> u16 {
    symphony_testnet::harness::free_port().unwrap()
}

/// The TLS a node holds in its config dir (`tls/`), as its own links use it: `auth` says
/// whether it asks clients for a certificate when it serves.
pub fn node_tls(
    config_dir: &std::path::Path,
    auth: symphony_wire::tls::ClientAuth,
) -> symphony_wire::Transport {
    let tls = config_dir.join("tls");
    let read = |name: &str| std::fs::read_to_string(tls.join(name)).unwrap();
    let cert_pem = read("node.crt");
    let key = symphony_pki::NodeKey::from_pem(&read("node.key")).unwrap();
    let identity =
        symphony_pki::verify::identity_of_der(&symphony_pki::verify::first_der(&cert_pem).unwrap())
            .unwrap();
    let material = symphony_wire::tls::TlsMaterial {
        cert_pem,
        key_der: key.der(),
        bundle: symphony_pki::CaBundle::new(read("ca.crt")),
        cluster_id: identity.cluster_id,
    };
    symphony_wire::Transport::tls(symphony_wire::tls::TlsTransport::new(&material, auth).unwrap())
}

/// A newcomer's TLS: no certificate, trusting no server yet (what a joining node asks the CA
/// bundle over).
pub fn discovery() -> symphony_wire::Transport {
    symphony_wire::Transport::tls(symphony_wire::tls::TlsTransport::discovery().unwrap())
}
