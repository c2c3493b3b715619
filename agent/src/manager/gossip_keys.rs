//! On the leader: whether a gossip key rotation may take its next step, asked of the nodes.
//!
//! A rotation never cuts a node off as long as every node holds a key before anyone seals
//! with it, and seals with the new primary before the old key is removed. The leader checks
//! both by asking every `ready` node (`GossipKeysHeld`, over the node-to-node API) which key
//! ids its gossip driver holds and seals with; [`behind`] decides from the answers, without
//! I/O. Nodes that are `down` or `left` are not asked: a node that comes back with an old
//! keyring cannot be understood by the others until it has caught up — a worker at its first
//! session (seconds), a manager as soon as its replica does — and then rejoins by itself.
//!
//! The survey costs one small request per ready node, only when an operator runs a `gossip
//! key` command.

use std::time::Duration;

use futures_util::StreamExt;
use symphony_consensus::{GossipKeyring, NodeStatus};
use symphony_ctl::proto::{GossipKeyInfo, GossipKeysInfo};

use crate::context::Context;
use crate::keyring::AppliedKeys;
use crate::remote::proto::{RemoteReply, RemoteRequest};

/// How long one node may take to say what it holds.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// How many nodes are asked at once.
const ASK_AT_ONCE: usize = 64;

/// The next step of a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Seal with key `id`: every node must hold it.
    Use(u32),
    /// Uninstall key `id`: no node may still seal with it.
    Remove(u32),
}

/// One ready node and what its gossip holds; `None` when it did not answer or does not
/// gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub node_id: u64,
    pub held: Option<AppliedKeys>,
}

/// The nodes that are not ready for `step` in cluster `cluster_id`.
pub fn behind(step: Step, cluster_id: &str, answers: &[Answer]) -> Vec<u64> {
    answers
        .iter()
        .filter(|answer| {
            let Some(held) = answer
                .held
                .as_ref()
                .filter(|held| held.cluster_id == cluster_id)
            else {
                return true;
            };
            match step {
                Step::Use(id) => !held.ids.contains(&id),
                Step::Remove(id) => held.primary.is_none_or(|primary| primary == id),
            }
        })
        .map(|answer| answer.node_id)
        .collect()
}

/// The keyring as operators see it: ids, the primary, and how many answering nodes hold and
/// seal with each key. No key ever appears here.
pub fn summary(
    cluster_id: &str,
    keyring: &GossipKeyring,
    answers: &[Answer],
    changed: Option<u32>,
) -> GossipKeysInfo {
    let held: Vec<&AppliedKeys> = answers
        .iter()
        .filter_map(|answer| answer.held.as_ref())
        .filter(|held| held.cluster_id == cluster_id)
        .collect();
    let count = |matches: &dyn Fn(&AppliedKeys) -> bool| {
        u64::try_from(held.iter().filter(|held| matches(held)).count()).unwrap_or(u64::MAX)
    };
    GossipKeysInfo {
        version: keyring.version,
        primary: keyring.primary,
        keys: keyring
            .keys
            .iter()
            .map(|key| GossipKeyInfo {
                id: key.id,
                primary: keyring.primary == Some(key.id),
                installed_at_ms: key.installed_at_ms,
                installed_on: count(&|held| held.ids.contains(&key.id)),
                sealing_on: count(&|held| held.primary == Some(key.id)),
            })
            .collect(),
        nodes: u64::try_from(answers.len()).unwrap_or(u64::MAX),
        unreachable: answers
            .iter()
            .filter(|answer| answer.held.is_none())
            .map(|answer| answer.node_id)
            .collect(),
        changed,
    }
}

/// Asks every ready node (this one from its own store) what its gossip holds.
pub async fn survey(ctx: &Context) -> Vec<Answer> {
    let own_id = ctx.node.node_id();
    let nodes: Vec<(u64, String)> = ctx.node.state().read_stale(|replica| {
        replica
            .nodes
            .values()
            .filter(|record| record.status == NodeStatus::Ready)
            .map(|record| (record.node_id, record.remote_addr.clone()))
            .collect()
    });
    futures_util::stream::iter(nodes)
        .map(|(node_id, addr)| async move {
            if node_id == own_id {
                return Answer {
                    node_id,
                    held: ctx.keys.applied(),
                };
            }
            let held = match ctx
                .remote
                .call(&addr, RemoteRequest::GossipKeysHeld, ASK_TIMEOUT)
                .await
            {
                Ok(RemoteReply::GossipKeysHeld(held)) => held,
                Ok(_) => None,
                Err(error) => {
                    tracing::debug!(node_id, %error, "a node did not say which gossip keys it holds");
                    None
                }
            };
            Answer { node_id, held }
        })
        .buffer_unordered(ASK_AT_ONCE)
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use symphony_consensus::{GossipKeyRecord, KeySecret};

    use super::*;

    fn answer(node_id: u64, primary: u32, ids: &[u32]) -> Answer {
        Answer {
            node_id,
            held: Some(AppliedKeys {
                cluster_id: "c".into(),
                version: 1,
                primary: Some(primary),
                ids: ids.to_vec(),
            }),
        }
    }

    #[test]
    fn use_waits_for_every_node_to_hold_the_key() {
        let answers = [
            answer(1, 1, &[1, 2]),
            answer(2, 1, &[1]),
            Answer {
                node_id: 3,
                held: None,
            },
        ];
        assert_eq!(behind(Step::Use(2), "c", &answers), [2, 3]);
        assert_eq!(behind(Step::Use(2), "c", &answers[..1]), Vec::<u64>::new());
        // A node of another cluster (a stale record's address reused) holds nothing of ours.
        assert_eq!(behind(Step::Use(1), "other", &answers[..1]), [1]);
    }

    #[test]
    fn remove_waits_for_every_node_to_seal_with_another_key() {
        let answers = [answer(1, 2, &[1, 2]), answer(2, 1, &[1, 2])];
        assert_eq!(behind(Step::Remove(1), "c", &answers), [2]);
        assert_eq!(
            behind(Step::Remove(1), "c", &answers[..1]),
            Vec::<u64>::new()
        );
        // A node gossiping in the clear seals with nothing.
        let plain = Answer {
            node_id: 5,
            held: Some(AppliedKeys {
                cluster_id: "c".into(),
                version: 0,
                primary: None,
                ids: Vec::new(),
            }),
        };
        assert_eq!(behind(Step::Remove(1), "c", &[plain]), [5]);
    }

    #[test]
    fn the_summary_counts_nodes_per_key_and_shows_no_secret() {
        let keyring = GossipKeyring {
            version: 3,
            primary: Some(2),
            keys: [1, 2]
                .into_iter()
                .map(|id| GossipKeyRecord {
                    id,
                    secret: KeySecret([0xab; 32]),
                    installed_at_ms: 10,
                })
                .collect(),
            next_id: 3,
        };
        let answers = [
            answer(1, 2, &[1, 2]),
            answer(2, 1, &[1, 2]),
            answer(3, 1, &[1]),
            Answer {
                node_id: 4,
                held: None,
            },
        ];
        let info = summary("c", &keyring, &answers, Some(2));
        assert_eq!(info.nodes, 4);
        assert_eq!(info.unreachable, [4]);
        let counts: Vec<(u32, bool, u64, u64)> = info
            .keys
            .iter()
            .map(|key| (key.id, key.primary, key.installed_on, key.sealing_on))
            .collect();
        assert_eq!(counts, [(1, false, 3, 2), (2, true, 2, 1)]);
        let shown = format!("{info:?}");
        assert!(!shown.contains("171"), "{shown}");
    }
}
