//! Peers that do not play by the rules, on the Raft port and the node-to-node API: thousands
//! of idle connections, and frames announced huge and never sent. The agent keeps serving real
//! clients and peers, and its memory follows what arrived, not what was announced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use symphony_ctl::proto::{ReadConsistency, Role};
use symphony_testnet::harness::{AgentProcess, poll_until};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Lets this test process hold thousands of sockets.
fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}

fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_idle_connections_does_not_starve_real_clients_or_peers() {
    raise_open_files();
    let manager = AgentProcess::start().await.unwrap();
    let client = manager.client().await.unwrap();
    client.init().await.unwrap();
    manager.wait_leader(TIMEOUT).await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..1500 {
        for addr in [manager.raft_addr(), manager.remote_addr()] {
            if let Ok(socket) = TcpStream::connect(addr).await {
                idle.push(socket);
            }
        }
    }
    assert!(idle.len() > 2000, "opened {} idle connections", idle.len());
    // While they are all held open, a client writes and a new worker joins.
    client
        .kv_put("during", b"flood".to_vec(), None)
        .await
        .unwrap();
    let token = client.token_show(Role::Worker).await.unwrap().token;
    let worker = AgentProcess::start().await.unwrap();
    worker
        .client()
        .await
        .unwrap()
        .join(token, manager.remote_addr().to_string())
        .await
        .unwrap();
    let nodes = client
        .node_list(ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert_eq!(nodes.len(), 2);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn frames_announced_huge_and_never_sent_hold_no_memory() {
    let manager = AgentProcess::start().await.unwrap();
    let client = manager.client().await.unwrap();
    client.init().await.unwrap();
    manager.wait_leader(TIMEOUT).await.unwrap();
    let pid = manager.pid().unwrap();
    let before = resident_bytes(pid);
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut socket = TcpStream::connect(manager.remote_addr()).await.unwrap();
        // A frame of 16 MiB announced, and one byte of it sent.
        socket
            .write_all(&(16u32 << 20).to_be_bytes())
            .await
            .unwrap();
        socket.write_all(b"x").await.unwrap();
        held.push(socket);
    }
    // The agent takes frames still arriving up to its memory budget and refuses the rest;
    // wait until it has looked at every connection (each answered or held).
    poll_until(TIMEOUT, "every connection looked at", async || {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map_err(|e| e.to_string())?
            .count();
        let refused = held.len() - fds.min(held.len());
        if refused > 0 {
            Ok(())
        } else {
            Err(format!("{fds} descriptors"))
        }
    })
    .await
    .unwrap();
    client
        .kv_put("still", b"here".to_vec(), None)
        .await
        .unwrap();
    let during = resident_bytes(pid);
    assert!(
        during < before + (64 << 20),
        "200 frames announced at 16 MiB grew the agent from {before} to {during} bytes"
    );
    drop(held);
}
