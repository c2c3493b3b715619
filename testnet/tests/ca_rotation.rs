//! A root rotation (`ca rotate`) on a running 3-manager, 5-worker cluster: every node moves
//! onto the new root while writes go on, no node stops being ready and no acknowledged write
//! is lost; afterwards every node trusts the new root alone and holds a certificate of it,
//! the old join token is refused before the joiner sends its secret, and the new one admits.
//!
//! (The same rotation under faults is `testnet chaos --faults ca-rotate,...`, which ends
//! linearizable in `.ci/run`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use symphony_ctl::proto::{ErrorCode, ReadConsistency, Role};
use symphony_pki::CaBundle;
use symphony_testnet::harness::{
    AgentOptions, AgentProcess, Cluster, ClusterOptions, error_code, fast_gossip_args, poll_until,
};

/// Generous: debug builds of nine agents on two cores, tests in parallel.
const TIMEOUT: Duration = Duration::from_secs(90);

async fn start_worker() -> AgentProcess {
    AgentProcess::start_with(AgentOptions {
        extra_args: fast_gossip_args(),
        ..AgentOptions::default()
    })
    .await
    .unwrap()
}

/// The CA bundle and the certificate chain a node keeps in its config dir.
fn tls_files(config_dir: &Path) -> (CaBundle, String) {
    let tls = config_dir.join("tls");
    (
        CaBundle::new(std::fs::read_to_string(tls.join("ca.crt")).unwrap()),
        std::fs::read_to_string(tls.join("node.crt")).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_rotation_on_a_running_cluster_moves_every_node_and_cuts_none_off() {
    let args = fast_gossip_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let cluster = Cluster::formed(3, ClusterOptions::with_agent_args(&args))
        .await
        .unwrap();
    let leader = cluster.leader().await.unwrap();
    let client = cluster.client(leader).await.unwrap();
    let old_token = client.token_show(Role::Worker).await.unwrap().token;
    let join_addr = cluster.remote_addr(leader).unwrap().to_string();
    let mut workers = Vec::new();
    for _ in 0..5 {
        let worker = start_worker().await;
        worker
            .client()
            .await
            .unwrap()
            .join(old_token.clone(), join_addr.clone())
            .await
            .unwrap();
        workers.push(worker);
    }
    let all = cluster.len() + workers.len();
    poll_until(TIMEOUT, "every node ready", async || {
        let statuses = cluster.node_statuses().await?;
        let ready = statuses
            .values()
            .filter(|status| *status == "ready")
            .count();
        (ready == all)
            .then_some(())
            .ok_or_else(|| format!("{ready} of {all} ready"))
    })
    .await
    .unwrap();
    let before = client
        .ca_status(ReadConsistency::Linearizable)
        .await
        .unwrap();
    assert!(before.rotation.is_none());
    assert_eq!(before.roots.len(), 1, "{before:?}");

    // Writes and a watch on every node's status all through the rotation.
    let done = AtomicBool::new(false);
    let not_ready = Mutex::new(Vec::<String>::new());
    let writer = async { cluster.write_until("ca-rotation", &done).await.unwrap() };
    let watcher = async {
        while !done.load(Ordering::Relaxed) {
            if let Ok(statuses) = cluster.node_statuses().await {
                for (id, status) in statuses.iter().filter(|(_, status)| *status != "ready") {
                    not_ready
                        .lock()
                        .unwrap()
                        .push(format!("node {id:x} {status}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let rotation = async {
        let started = client.ca_rotate().await.unwrap();
        let rotating = started.rotation.clone().expect("a rotation under way");
        assert_eq!(rotating.old_root_digest, before.root_digest);
        assert_ne!(started.root_digest, before.root_digest);
        // Asked again while under way: the same rotation, not a second one.
        let again = client.ca_rotate().await.unwrap();
        assert_eq!(again.root_digest, started.root_digest);
        let during = client.token_show(Role::Worker).await.unwrap().token;
        assert_ne!(during, old_token, "the tokens pin the bundle of both roots");
        // `symphony-ctl ca rotate` with one under way waits for it to end, as it waits for
        // one it starts.
        let socket = cluster.socket_path(leader).unwrap();
        let cli = symphony_ctl::cli::Cli::try_parse_from([
            "symphony-ctl",
            "--socket",
            socket.to_str().unwrap(),
            "--timeout",
            "90s",
            "ca",
            "rotate",
        ])
        .unwrap();
        symphony_ctl::cli::run(cli).await.unwrap();
        let after = client
            .ca_status(ReadConsistency::Linearizable)
            .await
            .unwrap();
        assert!(
            after.rotation.is_none(),
            "ca rotate returned before the end: {after:?}"
        );
        // A few more seconds of writes and watching on the new root alone.
        tokio::time::sleep(Duration::from_secs(3)).await;
        done.store(true, Ordering::Relaxed);
        (started, after)
    };
    let (written, (), (started, after)) = tokio::join!(writer, watcher, rotation);
    assert!(written > 0);
    let not_ready = not_ready.into_inner().unwrap();
    assert!(
        not_ready.is_empty(),
        "a node stopped being ready during the rotation: {not_ready:?}"
    );
    let checked = cluster.verify_acknowledged().await.unwrap();
    assert!(checked >= written as usize, "{checked} < {written}");

    // Every node on the new root, which alone is trusted.
    assert_eq!(after.root_digest, started.root_digest);
    assert_eq!(after.roots.len(), 1, "{after:?}");
    assert_eq!(after.roots[0].nodes, all as u64, "{after:?}");
    let mut dirs: Vec<PathBuf> = (0..cluster.len())
        .map(|index| cluster.record(index).unwrap().config_dir.clone())
        .collect();
    dirs.extend(
        workers
            .iter()
            .map(|worker| worker.config_dir().to_path_buf()),
    );
    poll_until(
        TIMEOUT,
        "every node trusting the new root alone",
        async || {
            for dir in &dirs {
                let (bundle, chain) = tls_files(dir);
                if bundle.digest().map_err(|e| e.to_string())? != after.root_digest {
                    return Err(format!("{} trusts another bundle", dir.display()));
                }
                symphony_pki::verify::verify_pem(
                    &chain,
                    &bundle,
                    None,
                    std::time::SystemTime::now(),
                )
                .map_err(|error| format!("{}: {error}", dir.display()))?;
            }
            Ok(())
        },
    )
    .await
    .unwrap();

    // Links made now, on the new root alone, work: a write and a fresh worker.
    cluster.put_any("ca-rotation/after", b"v").await.unwrap();
    let new_token = client.token_show(Role::Worker).await.unwrap().token;
    assert_ne!(new_token, old_token);
    let refused = start_worker().await;
    let error = refused
        .client()
        .await
        .unwrap()
        .join(old_token, join_addr.clone())
        .await
        .unwrap_err();
    assert_eq!(
        error_code(&error),
        Some(ErrorCode::UntrustedCa),
        "the old token pins the old root: {error}"
    );
    let joined = refused
        .client()
        .await
        .unwrap()
        .join(new_token, join_addr)
        .await
        .unwrap();
    poll_until(TIMEOUT, "the new worker ready", async || {
        match cluster.node_statuses().await?.get(&joined.node_id) {
            Some(status) if status == "ready" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
}
