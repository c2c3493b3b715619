//! What the end-to-end tests that drive a [`crate::lab`] testnet directly (not through a
//! [`super::Cluster`]) share: a guard that takes the testnet down, `up` with its progress
//! printed, waiting for a status, the settled check, and a write and a read with a deadline.

use std::path::PathBuf;
use std::time::Duration;

use symphony_ctl::Client;
use symphony_ctl::proto::{ReadConsistency, Role};

use super::{HarnessError, poll_until};
use crate::lab::rpc::call;
use crate::lab::{Lab, LabError, LabStatus, UpOptions};

/// How long one control call to a node may take.
const CALL: Duration = Duration::from_secs(3);

/// Runs `down` on the testnet in this dir when dropped, whatever state it is in, so a test
/// that ends, passed or failed, leaves nothing behind.
pub struct DownOnDrop(pub PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        if let Ok(lab) = Lab::open(&self.0)
            && let Err(error) = lab.down()
        {
            eprintln!("cleaning up {}: {error}", self.0.display());
        }
    }
}

/// Brings a testnet up, printing its progress.
pub async fn up(options: UpOptions) -> Result<Lab, LabError> {
    let mut progress = |message: &str| println!("up: {message}");
    Lab::up(options, &mut progress).await
}

/// Polls the lab's status until `check` accepts it; a failure shows the last status's table.
pub async fn wait_status<F>(
    lab: &Lab,
    timeout: Duration,
    what: &str,
    check: F,
) -> Result<LabStatus, HarnessError>
where
    F: Fn(&LabStatus) -> Result<(), String>,
{
    poll_until(timeout, what, async || {
        let status = lab.status().await;
        check(&status)
            .map(|()| status.clone())
            .map_err(|why| format!("{why}\n{}", crate::lab::table::render(&status)))
    })
    .await
}

/// The nodes that say they lead.
pub fn leaders(status: &LabStatus) -> Vec<String> {
    status
        .nodes
        .iter()
        .filter(|node| node.leader)
        .map(|node| node.name.clone())
        .collect()
}

/// One leader, every node's process running and the node ready, every manager a voter in the
/// leader's term.
pub fn settled(status: &LabStatus) -> Result<(), String> {
    if leaders(status).len() != 1 {
        return Err(format!("leaders: {:?}", leaders(status)));
    }
    for node in &status.nodes {
        if node.process != "running" {
            return Err(format!("{} is {}", node.name, node.process));
        }
        if node.status.as_deref() != Some("ready") {
            return Err(format!("{} has status {:?}", node.name, node.status));
        }
        if node.role != Role::Manager {
            continue;
        }
        if !matches!(node.raft_state.as_deref(), Some("leader" | "follower")) {
            return Err(format!("{} is {:?}", node.name, node.raft_state));
        }
        if node.term != status.term {
            return Err(format!("{} is in term {:?}", node.name, node.term));
        }
    }
    Ok(())
}

/// Puts `key` through node `name` (one try); the revision it was written at.
pub async fn put(lab: &Lab, name: &str, key: &str, value: &str) -> Result<u64, String> {
    let socket = lab
        .node(name)
        .map_err(|error| error.to_string())?
        .socket_path();
    let (key, value) = (key.to_string(), value.as_bytes().to_vec());
    call(&socket, CALL, async move |client: &mut Client| {
        client.kv_put(key, value, None).await
    })
    .await
    .map(|result| result.revision)
    .map_err(|error| error.to_string())
}

/// Waits until node `name`'s own replica has `key` as written at `revision`.
pub async fn wait_caught_up(
    lab: &Lab,
    timeout: Duration,
    name: &str,
    key: &str,
    revision: u64,
) -> Result<(), HarnessError> {
    let socket = lab.node(name)?.socket_path();
    poll_until(timeout, &format!("{name} to catch up"), async || {
        let entry = call(&socket, CALL, async |client: &mut Client| {
            client.kv_get(key, ReadConsistency::Stale).await
        })
        .await
        .map_err(|error| error.to_string())?;
        match entry {
            Some(entry) if entry.mod_revision == revision => Ok(()),
            other => Err(format!("{key} is {other:?} on {name}")),
        }
    })
    .await
}
