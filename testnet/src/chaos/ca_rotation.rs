//! A root CA rotation as an operator starts it: `ca rotate` through one manager, then
//! following `ca status` until the leader ends it (every node renewed onto the new root), as
//! `symphony-ctl ca rotate` waits. The clients go on all through; the checker then says
//! whether any acknowledged write was lost or any read was stale across it.

use std::time::Duration;

use symphony_ctl::Client;
use symphony_ctl::proto::ReadConsistency;
use tokio::sync::watch;

use crate::harness::poll_until;
use crate::lab::Lab;
use crate::lab::rpc::call_retrying;

/// How long starting the rotation may keep being retried (no leader for a moment).
const START_TOTAL: Duration = Duration::from_secs(30);
const ATTEMPT: Duration = Duration::from_secs(10);
/// How long the rotation may take to end: every node renews within a second of learning of
/// the new root; a node that is down holds it up, and faults come one at a time.
const END_TOTAL: Duration = Duration::from_secs(60);

/// Rotates the root through manager `name` and waits until the rotation ended (or `stop`).
pub async fn rotate(lab: &Lab, name: &str, stop: &watch::Receiver<bool>) -> Result<(), String> {
    let node = lab.node(name).map_err(|error| error.to_string())?;
    let socket = node.socket_path();
    let started = call_retrying(
        name,
        &socket,
        "ca rotate",
        START_TOTAL,
        ATTEMPT,
        async |client: &mut Client| client.ca_rotate().await,
    )
    .await
    .map_err(|error| error.to_string())?;
    let root = started.root_digest;
    poll_until(END_TOTAL, "the root rotation to end", async || {
        if *stop.borrow() {
            return Ok(());
        }
        let status = Client::connect(&socket)
            .await
            .map_err(|error| error.to_string())?
            .ca_status(ReadConsistency::Linearizable)
            .await
            .map_err(|error| error.to_string())?;
        if status.root_digest != root {
            return Err(format!(
                "the root is {}, not the one rotated to",
                status.root_digest
            ));
        }
        match status.rotation {
            None => Ok(()),
            Some(rotation) => Err(format!("waiting for nodes {:x?}", rotation.waiting_for)),
        }
    })
    .await
    .map_err(|error| error.to_string())
}
