//! The end of a run, after the final reads: every manager's replica holds the same KV store.
//!
//! The history checker judges only what clients saw, and clients read through the leader: a
//! replica whose state parted from the others' (an entry skipped or applied twice) passes
//! unseen until it happens to lead. Once the clients have stopped nothing writes to the KV
//! store any more, so every replica must come to the same revision and the same entries; each
//! manager's own copy is read (a stale read, served by that replica) until they agree or the
//! deadline passes.

use std::time::Duration;

use serde::Serialize;
use symphony_ctl::Client;
use symphony_ctl::proto::{KvListing, ReadConsistency, Role};
use tokio::time::Instant;

use crate::lab::Lab;
use crate::lab::rpc::call;

/// How often the replicas are read again while they disagree.
const POLL: Duration = Duration::from_millis(250);
/// How long one manager may take to list its KV store.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the comparison found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplicaReport {
    /// Managers compared.
    pub managers: usize,
    /// The revision they all hold, when they agreed.
    pub revision: Option<u64>,
    /// Why they did not agree by the deadline.
    pub problem: Option<String>,
}

impl ReplicaReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }

    /// The summary's line.
    pub fn line(&self) -> String {
        match (&self.problem, self.revision) {
            (Some(problem), _) => format!("replicas: DISAGREE: {problem}"),
            (None, Some(revision)) => format!(
                "replicas: {} manager(s) hold the same KV store at revision {revision}: ok",
                self.managers
            ),
            (None, None) => "replicas: not compared".to_string(),
        }
    }
}

/// Reads every manager's replica until they agree, or `timeout` passes.
pub async fn check(lab: &Lab, timeout: Duration) -> ReplicaReport {
    let managers: Vec<(String, std::path::PathBuf)> = lab
        .state()
        .nodes
        .iter()
        .filter(|node| node.role == Role::Manager)
        .map(|node| (node.name.clone(), node.socket_path()))
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let mut views = Vec::new();
        let mut problem = None;
        for (name, socket) in &managers {
            let listing = call(socket, LIST_TIMEOUT, async |client: &mut Client| {
                client.kv_list("", ReadConsistency::Stale).await
            })
            .await;
            match listing {
                Ok(listing) => views.push((name.clone(), listing)),
                Err(error) => {
                    problem = Some(format!("{name} did not list its KV store: {error}"));
                    break;
                }
            }
        }
        let outcome = match problem {
            Some(problem) => Err(problem),
            None => compare(&views),
        };
        match outcome {
            Ok(revision) => {
                return ReplicaReport {
                    managers: managers.len(),
                    revision: Some(revision),
                    problem: None,
                };
            }
            Err(problem) if Instant::now() >= deadline => {
                let positions = positions(&managers).await;
                return ReplicaReport {
                    managers: managers.len(),
                    revision: None,
                    problem: Some(format!("{problem} ({positions})")),
                };
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Where each manager's replica stands — its applied log index and its KV revision — for a
/// disagreement to say which replica parted from the others and when.
async fn positions(managers: &[(String, std::path::PathBuf)]) -> String {
    let mut positions = Vec::new();
    for (name, socket) in managers {
        let status = call(socket, LIST_TIMEOUT, async |client: &mut Client| {
            client.status().await
        })
        .await;
        positions.push(match status.map(|status| status.cluster) {
            Ok(Some(cluster)) => format!(
                "{name} applied {} at KV revision {}",
                cluster
                    .applied_index
                    .map_or("nothing".to_string(), |index| index.to_string()),
                cluster.kv_revision
            ),
            Ok(None) => format!("{name} is in no cluster"),
            Err(error) => format!("{name}: {error}"),
        });
    }
    positions.join("; ")
}

/// The revision every replica in `views` holds, or the first difference between them.
pub fn compare(views: &[(String, KvListing)]) -> Result<u64, String> {
    let Some((first_name, first)) = views.first() else {
        return Err("no manager to compare".to_string());
    };
    for (name, view) in &views[1..] {
        if view.revision != first.revision {
            return Err(format!(
                "{first_name} is at revision {}, {name} at {}",
                first.revision, view.revision
            ));
        }
        let theirs = view.entries.iter().map(|entry| (&entry.key, entry));
        let ours = first.entries.iter().map(|entry| (&entry.key, entry));
        let mut theirs: std::collections::BTreeMap<_, _> = theirs.collect();
        for (key, entry) in ours {
            match theirs.remove(key) {
                None => return Err(format!("{first_name} holds {key:?}, {name} does not")),
                Some(other) if other != entry => {
                    return Err(format!(
                        "{key:?} differs: {first_name} has it at mod_revision {} (version {}), {name} at {} (version {})",
                        entry.mod_revision, entry.version, other.mod_revision, other.version
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(key) = theirs.keys().next() {
            return Err(format!("{name} holds {key:?}, {first_name} does not"));
        }
    }
    Ok(first.revision)
}

#[cfg(test)]
mod tests {
    use symphony_ctl::proto::KvEntry;

    use super::*;

    fn view(name: &str, revision: u64, entries: &[(&str, &str, u64)]) -> (String, KvListing) {
        let entries = entries
            .iter()
            .map(|(key, value, mod_revision)| KvEntry {
                key: (*key).to_string(),
                value: value.as_bytes().to_vec(),
                create_revision: 1,
                mod_revision: *mod_revision,
                version: 1,
            })
            .collect();
        (name.to_string(), KvListing { entries, revision })
    }

    #[test]
    fn replicas_with_the_same_store_agree() {
        let views = [
            view("m1", 9, &[("a", "1", 4), ("b", "2", 9)]),
            view("m2", 9, &[("a", "1", 4), ("b", "2", 9)]),
        ];
        assert_eq!(compare(&views), Ok(9));
    }

    /// The divergence CI once found: the same value at another revision on one replica.
    #[test]
    fn a_value_at_another_revision_is_a_disagreement() {
        let views = [
            view("m1", 9, &[("a", "v", 869)]),
            view("m2", 9, &[("a", "v", 782)]),
        ];
        let problem = compare(&views).unwrap_err();
        assert!(problem.contains("mod_revision 869"), "{problem}");
        assert!(problem.contains("782"), "{problem}");
    }

    #[test]
    fn a_replica_behind_or_with_other_keys_disagrees() {
        let behind = [view("m1", 9, &[]), view("m2", 8, &[])];
        assert!(
            compare(&behind)
                .unwrap_err()
                .contains("revision 9, m2 at 8")
        );
        let missing = [view("m1", 9, &[("a", "1", 9)]), view("m2", 9, &[])];
        assert!(compare(&missing).unwrap_err().contains("m2 does not"));
        let extra = [view("m1", 9, &[]), view("m2", 9, &[("a", "1", 9)])];
        assert!(compare(&extra).unwrap_err().contains("m1 does not"));
    }
}
