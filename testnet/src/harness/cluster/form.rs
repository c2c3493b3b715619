//! Forming a cluster the ways an operator can: a static bootstrap (`init --peers` on the
//! first manager, `init --join-addr` on the others) or a dynamic one (`init`, then joins with
//! the manager token), and joining more managers later.

use std::time::Duration;

use symphony_ctl::proto::{InitInfo, JoinInfo, Role};
use symphony_ctl::{Client, ClientError};

use super::Cluster;
use crate::harness::{HarnessError, is_retryable, poll_until};

/// The number of voters a cluster of `managers` settles on when managers join one by one: the
/// largest odd number not above it (the others stay learners).
pub fn expected_voters(managers: usize) -> usize {
    if managers % 2 == 1 {
        managers
    } else {
        managers.saturating_sub(1)
    }
}

impl Cluster {
    /// Static bootstrap of every started node: `init --peers <raft addrs of the others>` on
    /// node 0, then `init --join-addr <remote addr of node 0>` on each other node; waits until
    /// all of them are voters under one leader.
    pub async fn bootstrap_static(&mut self) -> Result<InitInfo, HarnessError> {
        let peers = self.lab.state().nodes[1.min(self.nodes.len())..]
            .iter()
            .map(|node| format!("http://{}", node.raft_addr))
            .collect::<Vec<_>>();
        let first = self
            .retrying(0, "init --peers on the first node", self.options.timeout, {
                let peers = peers.clone();
                async move |client: &mut Client| client.init_with(peers.clone(), None).await
            })
            .await?;
        self.set_member(0, true)?;
        let join_addr = self.remote_addr(0)?.to_string();
        for index in 1..self.nodes.len() {
            let join_addr = join_addr.clone();
            self.retrying(
                index,
                "init --join-addr on a peer",
                self.options.timeout,
                async move |client: &mut Client| {
                    client.init_with(Vec::new(), Some(join_addr.clone())).await
                },
            )
            .await?;
            self.set_member(index, true)?;
        }
        self.wait_membership(self.nodes.len(), 0).await?;
        Ok(first)
    }

    /// Dynamic forming of every started node: `init` on node 0, then each other node joins
    /// through node 0 with the manager token; waits until the cluster has the odd number of
    /// voters it should settle on (see [`expected_voters`]).
    pub async fn bootstrap_dynamic(&mut self) -> Result<InitInfo, HarnessError> {
        let first = self
            .retrying(
                0,
                "init on the first node",
                self.options.timeout,
                async |client| client.init().await,
            )
            .await?;
        self.set_member(0, true)?;
        // The only member: it leads once it says so.
        self.leader().await?;
        for index in 1..self.nodes.len() {
            self.join_manager(index, 0).await?;
        }
        self.wait_voters(expected_voters(self.nodes.len())).await?;
        Ok(first)
    }

    /// The manager token, as member `via` shows it.
    pub async fn manager_token(&self, via: usize) -> Result<String, HarnessError> {
        let info = self
            .retrying(
                via,
                "token show manager",
                self.options.attempt_timeout,
                async |client| client.token_show(Role::Manager).await,
            )
            .await?;
        Ok(info.token)
    }

    /// Node `index` joins the cluster through member `via` (its remote address) with the
    /// manager token `via` shows. Does not wait for a promotion.
    pub async fn join_manager(
        &mut self,
        index: usize,
        via: usize,
    ) -> Result<JoinInfo, HarnessError> {
        let token = self.manager_token(via).await?;
        let addr = self.remote_addr(via)?.to_string();
        let info = self
            .retrying(
                index,
                "join as a manager",
                self.options.timeout,
                async move |client| client.join(token.clone(), addr.clone()).await,
            )
            .await?;
        self.set_member(index, true)?;
        Ok(info)
    }

    /// Starts a new agent and joins it through the current leader with the manager token.
    /// Returns its index; it enters as a learner (see [`Cluster::wait_membership`]).
    pub async fn add_manager_by_join(&mut self) -> Result<usize, HarnessError> {
        let index = self.add_node().await?;
        let via = self.leader().await?;
        self.join_manager(index, via).await?;
        Ok(index)
    }

    /// Starts `count` managers with `options` and forms them: a dynamic bootstrap for one, a
    /// static one for more.
    pub async fn formed(
        count: usize,
        options: super::ClusterOptions,
    ) -> Result<Cluster, HarnessError> {
        let mut cluster = Cluster::start_with(count, options).await?;
        if count == 1 {
            cluster.bootstrap_dynamic().await?;
        } else {
            cluster.bootstrap_static().await?;
        }
        Ok(cluster)
    }

    /// Starts a worker agent with `options` (outside the cluster's lab: the caller keeps it)
    /// and joins it through the leader with the worker token; returns it and its node id.
    pub async fn join_worker(
        &self,
        options: crate::harness::AgentOptions,
    ) -> Result<(crate::harness::AgentProcess, u64), HarnessError> {
        let leader = self.leader().await?;
        let token = self
            .client(leader)
            .await?
            .token_show(Role::Worker)
            .await?
            .token;
        let addr = self.remote_addr(leader)?.to_string();
        let worker = crate::harness::AgentProcess::start_with(options).await?;
        let joined = worker.client().await?.join(&token, &addr).await?;
        Ok((worker, joined.node_id))
    }

    /// Calls `op` on a fresh connection to node `index`, retrying on a retryable failure or a
    /// call that takes longer than `attempt_timeout`, for up to the cluster timeout.
    async fn retrying<T, F>(
        &self,
        index: usize,
        what: &str,
        attempt_timeout: Duration,
        mut op: F,
    ) -> Result<T, HarnessError>
    where
        F: AsyncFnMut(&mut Client) -> Result<T, ClientError>,
    {
        let socket = self.socket_path(index)?;
        let what = format!("{what} on {}", self.name(index));
        let outcome = poll_until(self.options.timeout, &what, async || {
            let call = async {
                let mut client = Client::connect(&socket).await?;
                op(&mut client).await
            };
            match tokio::time::timeout(attempt_timeout, call).await {
                Err(_) => Err(format!("no answer within {attempt_timeout:?}")),
                Ok(Ok(value)) => Ok(Ok(value)),
                Ok(Err(error)) if is_retryable(&error) => Err(error.to_string()),
                Ok(Err(error)) => Ok(Err(error)),
            }
        })
        .await?;
        Ok(outcome?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_stay_odd() {
        let expected: Vec<usize> = (1..=7).map(expected_voters).collect();
        assert_eq!(expected, [1, 1, 3, 3, 5, 5, 7]);
    }
}
