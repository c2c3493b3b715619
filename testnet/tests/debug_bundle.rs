//! `symphony-ctl debug bundle --all` end to end, on a manager and a worker: the archive holds
//! status, node ls and each node's flags, recent log lines, Raft state (the manager's) and a
//! metrics scrape — and none of the cluster's secrets: join tokens, the gossip key, the
//! worker's node secret, any node's TLS key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use clap::Parser;
use symphony_ctl::cli::Cli;
use symphony_ctl::proto::Role;
use symphony_testnet::harness::{AgentOptions, Cluster, ClusterOptions};

/// The archive's files by path.
fn unpack(path: &Path) -> BTreeMap<String, String> {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        entry.read_to_string(&mut text).unwrap();
        files.insert(name, text);
    }
    files
}

/// Every secret a config dir holds, in the forms it could leak in.
fn secrets_of(config_dir: &Path) -> Vec<String> {
    let mut secrets = Vec::new();
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config_dir.join("gossip-keys.json")).unwrap())
            .unwrap();
    for key in keys["keyring"]["keys"].as_array().unwrap() {
        let bytes: Vec<u8> = key["secret"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| u8::try_from(b.as_u64().unwrap()).unwrap())
            .collect();
        secrets.push(bytes.iter().map(|b| format!("{b:02x}")).collect());
        secrets.push(
            bytes
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if let Ok(worker) = std::fs::read(config_dir.join("worker.json")) {
        let worker: serde_json::Value = serde_json::from_slice(&worker).unwrap();
        secrets.push(worker["node_secret"].as_str().unwrap().to_string());
    }
    let key = std::fs::read_to_string(config_dir.join("tls/node.key")).unwrap();
    secrets.extend(
        key.lines()
            .filter(|line| !line.starts_with("-----") && line.len() > 16)
            .map(str::to_string),
    );
    secrets
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bundle_holds_what_it_promises_and_no_secret() {
    let cluster = Cluster::formed(1, ClusterOptions::default()).await.unwrap();
    let (worker, worker_id) = cluster.join_worker(AgentOptions::default()).await.unwrap();
    let client = cluster.client(0).await.unwrap();
    client.kv_put("greeting", "hello", None).await.unwrap();
    let manager_id = client.status().await.unwrap().node_id;

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle.tar.gz");
    // The manager named by its config dir, as an operator on its machine would: the CLI finds
    // the control socket in it.
    let config_dir = cluster.record(0).unwrap().config_dir.clone();
    let cli = Cli::try_parse_from([
        "symphony-ctl",
        "--config-dir",
        config_dir.to_str().unwrap(),
        "debug",
        "bundle",
        "--all",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    symphony_ctl::cli::run(cli).await.unwrap();
    let files = unpack(&out);

    let at = |path: String| -> &String {
        files
            .get(&format!("symphony-bundle/{path}"))
            .unwrap_or_else(|| panic!("{path} is not in {:?}", files.keys()))
    };
    assert!(at("status.json".into()).contains(&manager_id.to_string()));
    assert!(at("nodes.json".into()).contains(&worker_id.to_string()));
    assert!(
        !files.contains_key("symphony-bundle/problems.txt"),
        "{files:?}"
    );
    for node in [manager_id, worker_id] {
        assert!(at(format!("nodes/{node}/flags.txt")).contains("--config-dir"));
        assert!(at(format!("nodes/{node}/agent.log")).contains(&node.to_string()));
        assert!(at(format!("nodes/{node}/metrics.txt")).contains("symphony_build_info"));
    }
    assert!(at(format!("nodes/{manager_id}/raft.txt")).contains("current_term"));
    assert!(!files.contains_key(&format!("symphony-bundle/nodes/{worker_id}/raft.txt")));

    let mut secrets = vec![
        client.token_show(Role::Manager).await.unwrap().token,
        client.token_show(Role::Worker).await.unwrap().token,
    ];
    secrets.extend(secrets_of(&cluster.record(0).unwrap().config_dir));
    secrets.extend(secrets_of(worker.config_dir()));
    assert!(secrets.len() > 6, "{secrets:?}");
    for (path, text) in &files {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{path} holds a secret");
        }
    }
}

/// Every line every node logged during a run — at debug level, through joins (a worker and a
/// manager), a token rotation, a gossip key rotation and a snapshot — holds none of the
/// cluster's secrets: join tokens (old and new), gossip keys, the worker's node secret, any
/// node's TLS key. `snapshot save` writes its file for its owner only.
#[tokio::test(flavor = "multi_thread")]
async fn no_secret_reaches_any_log_and_a_snapshot_is_private() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    let mut options = ClusterOptions::default();
    options.agent.log_level = "debug".into();
    let mut cluster = Cluster::formed(1, options.clone()).await.unwrap();
    let client = cluster.client(0).await.unwrap();
    let mut secrets = vec![
        client.token_show(Role::Manager).await.unwrap().token,
        client.token_show(Role::Worker).await.unwrap().token,
    ];
    let (worker, _) = cluster.join_worker(options.agent.clone()).await.unwrap();
    let second = cluster.add_manager_by_join().await.unwrap();
    client.kv_put("greeting", "hello", None).await.unwrap();
    let wait = Duration::from_secs(20);
    let installed = client.gossip_key_install(wait).await.unwrap();
    let newest = installed.keys.iter().map(|key| key.id).max().unwrap();
    client.gossip_key_use(newest, wait, false).await.unwrap();
    secrets.push(client.token_rotate(Role::Worker).await.unwrap().token);
    secrets.push(client.token_rotate(Role::Manager).await.unwrap().token);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.snap");
    client
        .snapshot_save(file.display().to_string())
        .await
        .unwrap();
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the snapshot file is readable by others"
    );

    for index in [0, second] {
        secrets.extend(secrets_of(&cluster.record(index).unwrap().config_dir));
    }
    secrets.extend(secrets_of(worker.config_dir()));
    assert!(secrets.len() > 10, "{secrets:?}");
    let logs = [
        ("manager 0", cluster.run_log(0)),
        ("manager 1", cluster.run_log(second)),
        ("worker", worker.log()),
    ];
    for (who, log) in &logs {
        assert!(log.lines().count() > 20, "{who} logged almost nothing");
        for line in log.lines() {
            for secret in &secrets {
                assert!(
                    !line.contains(secret.as_str()),
                    "{who} logged a secret: {line}"
                );
            }
        }
    }
}
