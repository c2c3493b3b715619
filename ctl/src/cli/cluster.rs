//! `symphony-ctl cluster update` (cluster-wide settings) and `symphony-ctl ca status` (the
//! certificates the cluster CA issued).

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use super::{CliError, ReadArgs, Table, emit, now_ms};
use crate::Client;
use crate::proto::{CaStatusInfo, ClusterSettingsInfo, ReadConsistency};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Change cluster-wide settings; each applies from now on.
    Update {
        /// How long node certificates issued from now on are valid (e.g. 90d, 12h, 45s;
        /// from 30s to 5 years). Nodes renew theirs between half and four fifths of their
        /// life, so existing certificates take the new lifetime at their next renewal.
        #[arg(long, value_name = "DURATION", value_parser = super::parse::duration_ms)]
        cert_expiry: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// The cluster's root, how many nodes hold a certificate from each root, and when each
    /// node's certificate ends.
    Status {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Replace the cluster's root without downtime: a new root, cross-signed by the old, from
    /// which every node renews its certificate at once; once all did, the old root is trusted
    /// no more and the join tokens are replaced (`token show` prints the new ones). Waits
    /// until then, saying which nodes it waits for; a node that is down holds the rotation
    /// up until it is back or removed (`node rm`). With one under way, waits for it.
    Rotate {
        /// Start it (or find the one under way) and return at once; `ca status` follows it.
        #[arg(long)]
        detach: bool,
    },
}

/// How often `ca rotate` looks at the rotation while it waits.
const ROTATION_POLL: Duration = Duration::from_millis(500);

pub async fn run_cluster(
    client: &Client,
    json: bool,
    command: ClusterCommand,
) -> Result<(), CliError> {
    match command {
        ClusterCommand::Update { cert_expiry } => {
            let info = client
                .cluster_update(cert_expiry.map(Duration::from_millis))
                .await?;
            emit(json, json!(info), || settings_text(&info));
        }
    }
    Ok(())
}

pub async fn run_ca(client: &Client, json: bool, command: CaCommand) -> Result<(), CliError> {
    match command {
        CaCommand::Status { read } => {
            let info = client.ca_status(read.consistency()).await?;
            emit(json, json!(info), || ca_text(&info, now_ms()));
        }
        CaCommand::Rotate { detach } => {
            let mut info = client.ca_rotate().await?;
            let root = info.root_digest.clone();
            let mut shown = None;
            while !detach && info.root_digest == root {
                let Some(rotation) = &info.rotation else {
                    break;
                };
                let waiting = rotation.waiting_for.clone();
                if shown.as_ref() != Some(&waiting) {
                    super::progress_line(&waiting_text(&info, &waiting));
                    shown = Some(waiting);
                }
                tokio::time::sleep(ROTATION_POLL).await;
                info = client.ca_status(ReadConsistency::Linearizable).await?;
            }
            emit(json, json!(info), || rotated_text(&info, detach, now_ms()));
        }
    }
    Ok(())
}

/// Which nodes a rotation waits for, by hostname where the status names them.
fn waiting_text(info: &CaStatusInfo, waiting: &[u64]) -> String {
    let names: Vec<String> = waiting
        .iter()
        .map(|id| {
            info.nodes
                .iter()
                .find(|node| node.node_id == *id)
                .map_or(id.to_string(), |node| {
                    format!("{} ({id}, {})", node.hostname, node.status)
                })
        })
        .collect();
    let moved = info.nodes.len().saturating_sub(waiting.len());
    format!(
        "rotating the root: {moved} of {} nodes hold a certificate of the new root; waiting for {}",
        info.nodes.len(),
        if names.is_empty() {
            "the leader to end the rotation".to_string()
        } else {
            names.join(", ")
        }
    )
}

fn rotated_text(info: &CaStatusInfo, detach: bool, now_ms: u64) -> String {
    let head = match (&info.rotation, detach) {
        (Some(_), true) => format!(
            "A root rotation to {} is under way: every node renews onto it. Follow it with `symphony-ctl ca status`; the join tokens change again when it ends.\n\n",
            short_digest(&info.root_digest)
        ),
        (Some(_), false) => "The root changed again while this command waited.\n\n".to_string(),
        (None, _) => format!(
            "The root was replaced by {}: every node holds a certificate of it, the old root is trusted no more, and the join tokens were replaced (`symphony-ctl token show worker|manager`).\n\n",
            short_digest(&info.root_digest)
        ),
    };
    format!("{head}{}", ca_text(info, now_ms))
}

fn short_digest(digest: &str) -> String {
    digest.chars().take(16).collect()
}

fn settings_text(info: &ClusterSettingsInfo) -> String {
    format!(
        "Cluster {}: node certificates are issued for {}.\n",
        info.cluster_id,
        span(info.cert_expiry_ms)
    )
}

fn ca_text(info: &CaStatusInfo, now_ms: u64) -> String {
    let short = |digest: &Option<String>| {
        digest.as_deref().map_or("-".to_string(), |digest| {
            digest.chars().take(16).collect::<String>()
        })
    };
    let mut out = format!(
        "Root {} (cluster {}); certificates are issued for {}.\n\n",
        short(&Some(info.root_digest.clone())),
        info.cluster_id,
        span(info.cert_expiry_ms)
    );
    if let Some(rotation) = &info.rotation {
        out.push_str(&format!(
            "Rotating from root {} for {}; {}.\n\n",
            short(&Some(rotation.old_root_digest.clone())),
            span(now_ms.saturating_sub(rotation.started_ms)),
            waiting_text(info, &rotation.waiting_for).trim_start_matches("rotating the root: ")
        ));
    }
    let mut roots = Table::new(["ROOT", "NODES"]);
    for root in &info.roots {
        let name = match &root.root_digest {
            Some(digest) if *digest == info.root_digest => {
                format!("{} (current)", short(&root.root_digest))
            }
            Some(digest)
                if info
                    .rotation
                    .as_ref()
                    .is_some_and(|rotation| rotation.old_root_digest == *digest) =>
            {
                format!("{} (old, still trusted)", short(&root.root_digest))
            }
            Some(_) => short(&root.root_digest),
            None => "not recorded".to_string(),
        };
        roots.row([name, root.nodes.to_string()]);
    }
    out.push_str(&roots.render());
    out.push('\n');
    let mut nodes = Table::new(["ID", "HOSTNAME", "ROLE", "STATUS", "ROOT", "EXPIRES"]);
    for node in &info.nodes {
        let expires = node.not_after_ms.map_or("-".to_string(), |end| {
            if end <= now_ms {
                format!("expired {} ago", span(now_ms - end))
            } else {
                format!("in {}", span(end - now_ms))
            }
        });
        nodes.row([
            node.node_id.to_string(),
            node.hostname.clone(),
            node.role.to_string(),
            node.status.clone(),
            short(&node.root_digest),
            expires,
        ]);
    }
    out.push_str(&nodes.render());
    out
}

/// A duration for people, in its largest whole unit: `90d`, `12h`, `45s`.
fn span(ms: u64) -> String {
    let seconds = ms / 1_000;
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{CaRootCount, CaRotationInfo, NodeCertInfo, Role};

    #[test]
    fn ca_status_counts_roots_and_says_when_each_certificate_ends() {
        let info = CaStatusInfo {
            cluster_id: "c".into(),
            root_digest: "ab".repeat(32),
            cert_expiry_ms: 90 * 86_400_000,
            roots: vec![CaRootCount {
                root_digest: Some("ab".repeat(32)),
                nodes: 2,
            }],
            nodes: vec![
                NodeCertInfo {
                    node_id: 255,
                    hostname: "h".into(),
                    role: Role::Worker,
                    status: "ready".into(),
                    root_digest: Some("ab".repeat(32)),
                    not_after_ms: Some(10_000 + 7_200_000),
                },
                NodeCertInfo {
                    node_id: 1,
                    hostname: "m".into(),
                    role: Role::Manager,
                    status: "down".into(),
                    root_digest: Some("ab".repeat(32)),
                    not_after_ms: Some(5_000),
                },
            ],
            rotation: None,
        };
        let text = ca_text(&info, 10_000);
        assert!(text.contains("issued for 90d"), "{text}");
        assert!(text.contains("abababababababab (current)  2"), "{text}");
        assert!(text.contains("in 2h"), "{text}");
        assert!(text.contains("expired 5s ago"), "{text}");
        assert!(text.contains("\n255 "), "{text}");
        assert!(!text.contains("Rotating"), "{text}");

        // During a rotation: from which root, for how long, and who it waits for.
        let mut rotating = info.clone();
        rotating.roots.push(CaRootCount {
            root_digest: Some("cd".repeat(32)),
            nodes: 1,
        });
        rotating.nodes[1].root_digest = Some("cd".repeat(32));
        rotating.rotation = Some(CaRotationInfo {
            started_ms: 4_000,
            old_root_digest: "cd".repeat(32),
            waiting_for: vec![1],
        });
        let text = ca_text(&rotating, 10_000);
        assert!(text.contains("Rotating from root cdcdcdcdcdcdcdcd for 6s; 1 of 2 nodes hold a certificate of the new root; waiting for m (1, down)."), "{text}");
        assert!(
            text.contains("cdcdcdcdcdcdcdcd (old, still trusted)"),
            "{text}"
        );
        let done = rotated_text(&info, false, 10_000);
        assert!(
            done.starts_with("The root was replaced by abababababababab"),
            "{done}"
        );
        assert!(rotated_text(&rotating, true, 10_000).contains("is under way"));
    }
}
