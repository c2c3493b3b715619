//! `symphony-agent snapshot restore FILE --config-dir DIR`: seeds a fresh manager from a
//! snapshot file, offline. Started afterwards, the agent is a one-manager cluster holding the
//! snapshot's state (cluster id, tokens, KV, nodes) and can grow again with `join`.

use std::path::Path;

use symphony_consensus::store::{SnapshotPayload, seed, snapshot};
use symphony_consensus::{Availability, ManagerNode, NodeRecord, NodeRole, NodeStatus, Resources};

use crate::config::AgentArgs;
use crate::identity::Identity;
use crate::run::RAFT_DIR;

pub async fn restore(args: &AgentArgs, file: &Path) -> Result<(), String> {
    let raft_dir = args.config_dir.join(RAFT_DIR);
    if raft_dir.join(symphony_consensus::store::DB_FILE).exists() {
        return Err(format!(
            "{} already holds a Raft store; restore seeds a fresh manager, so give it an empty --config-dir",
            args.config_dir.display()
        ));
    }
    let snapshot = snapshot::load(file)
        .map_err(|error| format!("cannot read the snapshot {}: {error}", file.display()))?
        .ok_or_else(|| format!("there is no snapshot file at {}", file.display()))?;
    let mut state = SnapshotPayload::decode(&snapshot.snapshot)
        .map_err(|error| format!("the snapshot {} is unreadable: {error}", file.display()))?;
    let cluster_id = state
        .cluster
        .as_ref()
        .map(|cluster| cluster.cluster_id.clone())
        .ok_or_else(|| format!("the snapshot {} holds no cluster", file.display()))?;
    let identity = Identity::load_or_create(&args.config_dir).map_err(|error| error.to_string())?;
    let advertised = crate::run::advertised(
        args,
        args.listen_raft_addr,
        args.listen_remote_addr,
        crate::run::gossip_listen_addr(args, args.listen_remote_addr),
    );
    let now = crate::now_ms();
    state.nodes.seed(NodeRecord {
        node_id: identity.node_id,
        raft_node_id: Some(identity.raft_node_id),
        role: NodeRole::Manager,
        hostname: advertised.hostname.clone(),
        remote_addr: advertised.remote_addr.clone(),
        raft_addr: Some(advertised.raft_addr.clone()),
        labels: Default::default(),
        availability: Availability::Active,
        status: NodeStatus::Ready,
        resources: Resources {
            cpus: crate::system::cpus(),
            memory_bytes: crate::system::total_memory_bytes(),
        },
        agent_version: crate::VERSION.to_string(),
        joined_at_ms: now,
        status_changed_at_ms: now,
        demoted: false,
        gossip_addr: Some(advertised.gossip_addr.clone()),
        node_secret: None,
    });
    seed::seed_single_voter(
        &raft_dir,
        identity.raft_node_id,
        ManagerNode {
            raft_addr: advertised.raft_addr,
            remote_addr: advertised.remote_addr,
        },
        &state,
        snapshot.meta.last_log_id,
    )
    .await
    .map_err(|error| {
        format!(
            "cannot write the Raft store in {}: {error}",
            raft_dir.display()
        )
    })?;
    println!(
        "Restored cluster {cluster_id} (log index {}) into {}; start symphony-agent with this --config-dir.",
        snapshot
            .meta
            .last_log_id
            .map_or("-".to_string(), |id| id.index().to_string()),
        args.config_dir.display()
    );
    Ok(())
}
