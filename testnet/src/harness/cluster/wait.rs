//! Waiting for the cluster: until its running members agree on one leader, have the expected
//! voters, have caught up with the leader, or hold every acknowledged write.

use symphony_ctl::proto::{ClusterStatus, ReadConsistency, StatusInfo};

use super::Cluster;
use crate::harness::{HarnessError, poll_until};

impl Cluster {
    /// Every node's status (`ready`, `down`, `left`) by node id, as the leader's `node ls`
    /// says; an error in words, for [`poll_until`].
    pub async fn node_statuses(&self) -> Result<std::collections::BTreeMap<u64, String>, String> {
        let leader = self.leader().await.map_err(|e| e.to_string())?;
        let nodes = self
            .client(leader)
            .await
            .map_err(|e| e.to_string())?
            .node_list(ReadConsistency::Linearizable)
            .await
            .map_err(|e| e.to_string())?;
        Ok(nodes
            .into_iter()
            .map(|node| (node.node_id, node.status))
            .collect())
    }

    /// Waits until every running member names the same leader and that leader says it leads.
    /// Returns the leader's index.
    pub async fn leader(&self) -> Result<usize, HarnessError> {
        Ok(self.leader_status().await?.0)
    }

    /// [`Cluster::leader`] with the leader's status.
    pub async fn leader_status(&self) -> Result<(usize, StatusInfo), HarnessError> {
        poll_until(
            self.options.timeout,
            "all running members to agree on one leader",
            async || self.leader_once().await,
        )
        .await
    }

    /// One look at every running member: the leader they all name, if they agree.
    async fn leader_once(&self) -> Result<(usize, StatusInfo), String> {
        let live = self.live_members();
        let mut agreed: Option<(u64, String)> = None;
        let mut statuses = Vec::with_capacity(live.len());
        for index in live {
            let name = self.name(index);
            let status = self.status_once(index).await?;
            let cluster = cluster_of(&name, &status)?;
            let Some(leader) = cluster.leader_raft_id else {
                return Err(format!(
                    "{name} knows no leader ({}, term {})",
                    cluster.raft_state, cluster.term
                ));
            };
            match &agreed {
                Some((other, other_name)) if *other != leader => {
                    return Err(format!(
                        "{name} says the leader is {leader}, {other_name} says {other}"
                    ));
                }
                Some(_) => {}
                None => agreed = Some((leader, name)),
            }
            statuses.push((index, status));
        }
        let Some((leader, _)) = agreed else {
            return Err("no member is running".to_string());
        };
        let Some((index, status)) = statuses
            .into_iter()
            .find(|(index, _)| self.raft_id(*index).ok() == Some(leader))
        else {
            return Err(format!(
                "the members name raft node {leader} as leader, which is not a running member"
            ));
        };
        let state = status
            .cluster
            .as_ref()
            .map(|cluster| cluster.raft_state.clone())
            .unwrap_or_default();
        if !state.eq_ignore_ascii_case("leader") {
            return Err(format!(
                "the members name {} as leader, but its own raft_state is {state}",
                self.name(index)
            ));
        }
        Ok((index, status))
    }

    /// One `status` call to node `index`, with the attempt timeout, as a poll-friendly string
    /// error.
    async fn status_once(&self, index: usize) -> Result<StatusInfo, String> {
        let name = self.name(index);
        let call = async {
            let client = self.client(index).await.map_err(|e| e.to_string())?;
            client.status().await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(self.options.attempt_timeout, call).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(error)) => Err(format!("{name}: {error}")),
            Err(_) => Err(format!(
                "{name}: no status within {:?}",
                self.options.attempt_timeout
            )),
        }
    }

    /// Waits until the leader's status shows exactly `voters` voters and `learners` learners.
    pub async fn wait_membership(
        &self,
        voters: usize,
        learners: usize,
    ) -> Result<StatusInfo, HarnessError> {
        self.wait_leader_membership(
            &format!("{voters} voters and {learners} learners"),
            |cluster| cluster.voters.len() == voters && cluster.learners.len() == learners,
        )
        .await
    }

    /// Waits until the leader's status shows `voters` voters (any number of learners).
    pub async fn wait_voters(&self, voters: usize) -> Result<StatusInfo, HarnessError> {
        self.wait_leader_membership(&format!("{voters} voters"), |cluster| {
            cluster.voters.len() == voters
        })
        .await
    }

    /// Waits until the agreed leader's view of the Raft membership satisfies `wanted`.
    async fn wait_leader_membership(
        &self,
        what: &str,
        wanted: impl Fn(&ClusterStatus) -> bool,
    ) -> Result<StatusInfo, HarnessError> {
        poll_until(self.options.timeout, what, async || {
            let (_, status) = self.leader_once().await?;
            let cluster = cluster_of("the leader", &status)?;
            if wanted(cluster) {
                Ok(status)
            } else {
                Err(format!(
                    "voters {:?}, learners {:?}",
                    cluster.voters, cluster.learners
                ))
            }
        })
        .await
    }

    /// Waits until every running member has applied the log up to the leader's commit index
    /// (as it was when looked at). Returns that index.
    pub async fn wait_caught_up(&self) -> Result<u64, HarnessError> {
        poll_until(
            self.options.timeout,
            "every running member to apply the leader's commit index",
            async || {
                let (_, status) = self.leader_once().await?;
                let commit = cluster_of("the leader", &status)?.commit_index.unwrap_or(0);
                for index in self.live_members() {
                    let status = self.status_once(index).await?;
                    let applied = cluster_of(&self.name(index), &status)?
                        .applied_index
                        .unwrap_or(0);
                    if applied < commit {
                        return Err(format!(
                            "{} applied {applied} of {commit}",
                            self.name(index)
                        ));
                    }
                }
                Ok(commit)
            },
        )
        .await
    }

    /// Waits until the local replica of every running member (a stale read) holds every
    /// acknowledged write.
    pub async fn wait_replicated(&self) -> Result<(), HarnessError> {
        for index in self.live_members() {
            self.wait_replicated_on(index).await?;
        }
        Ok(())
    }

    /// Waits until node `index`'s local replica (a stale read) holds every acknowledged write.
    pub async fn wait_replicated_on(&self, index: usize) -> Result<(), HarnessError> {
        let name = self.name(index);
        poll_until(
            self.options.timeout,
            &format!("{name}'s replica to hold every acknowledged write"),
            async || {
                let client = self.client(index).await.map_err(|e| e.to_string())?;
                let listing = client
                    .kv_list("", ReadConsistency::Stale)
                    .await
                    .map_err(|e| e.to_string())?;
                match self.acknowledged.missing_from("", &listing.entries) {
                    (0, _) => Ok(()),
                    (lost, examples) => Err(format!(
                        "{lost} missing, e.g. {}",
                        examples.first().cloned().unwrap_or_default()
                    )),
                }
            },
        )
        .await
    }
}

fn cluster_of<'a>(name: &str, status: &'a StatusInfo) -> Result<&'a ClusterStatus, String> {
    status
        .cluster
        .as_ref()
        .ok_or_else(|| format!("{name} is not in a cluster"))
}
