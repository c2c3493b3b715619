//! `symphony-agent snapshot restore FILE --config-dir DIR`: seeds a fresh manager from a
//! snapshot file, offline. Started afterwards, the agent is a one-manager cluster holding the
//! snapshot's state (cluster id, tokens, KV, nodes) and can grow again with `join`.

use std::path::Path;

use symphony_consensus::ManagerNode;
use symphony_consensus::store::{SnapshotPayload, seed, snapshot};

use crate::config::AgentArgs;
use crate::identity::Identity;
use crate::node::init::manager_record;
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
    let cluster = state
        .cluster
        .clone()
        .ok_or_else(|| format!("the snapshot {} holds no cluster", file.display()))?;
    let cluster_id = cluster.cluster_id.clone();
    let identity = Identity::load_or_create(&args.config_dir).map_err(|error| error.to_string())?;
    // The restored manager speaks mutual TLS like any: it issues itself a certificate from the
    // CA the snapshot holds, for a key of its own.
    let tls = crate::tls::TlsStore::open(&args.config_dir).map_err(|error| error.to_string())?;
    // Issued as any manager issues (with the cross-signed root if the snapshot was taken
    // during a root rotation), trusting what the cluster's nodes trust.
    let bundle = cluster
        .trust_bundle()
        .ok_or_else(|| format!("the snapshot {} holds no cluster CA", file.display()))?;
    let csr = tls
        .request(identity.node_id)
        .map_err(|error| format!("cannot make a certificate request: {error}"))?;
    let cert = crate::manager::admission::issue_certificate(
        &cluster,
        &csr,
        identity.node_id,
        symphony_ctl::proto::Role::Manager,
    )
    .map_err(|error| error.message)?;
    tls.store(&cert, &bundle)
        .map_err(|error| format!("cannot keep this manager's certificate: {error}"))?;
    let advertised = crate::run::advertised(
        args,
        args.listen_raft_addr,
        args.listen_remote_addr,
        crate::run::gossip_listen_addr(args, args.listen_remote_addr),
    );
    let now = crate::now_ms();
    let labels = args.labels.iter().cloned().collect();
    let docker = crate::exec::docker::Engine::connect(&args.docker_socket)
        .await
        .ok()
        .map(|engine| engine.version);
    state
        .nodes
        .seed(manager_record(&identity, &advertised, labels, docker, now));
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
