//! A cluster of managers: N [`AgentProcess`]es formed into one Raft group the way an operator
//! would, through their control sockets, plus the waits and faults the manager-cluster tests and
//! benchmarks need.
//!
//! Nodes are numbered from 0 in the order they were started (node 0 is "manager-01" in a given
//! base dir). The harness remembers which nodes it made members of the cluster (by bootstrap or
//! join) and which of those it stopped; [`Cluster::leader`], [`Cluster::put_any`] and the other
//! waits only ask members that run. After a test removes a node (`node rm`, `leave`, a recovery
//! that drops the others) it tells the harness with [`Cluster::set_member`].
//!
//! Every write made through the harness is recorded in an [`Acknowledged`] set once the cluster
//! acknowledged it, so that a test can check at the end that none was lost.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use symphony_ctl::proto::{
    ClusterStatus, ErrorCode, InitInfo, JoinInfo, KvEntry, ReadConsistency, Role, StatusInfo,
};
use symphony_ctl::{Client, ClientError};

use super::{
    Acknowledged, AgentOptions, AgentProcess, HarnessError, find_agent_binary, is_retryable,
    poll_until,
};

/// How a cluster's nodes are started and how long its waits may take.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The options of every node. `work_dir`, if given, is a base dir: node `i` gets
    /// `manager-<i+1>` under it; otherwise each node gets its own temp dir.
    pub agent: AgentOptions,
    /// How long an election, a membership change or a catch-up may take.
    pub timeout: Duration,
    /// How long [`Cluster::put_any`] keeps retrying a write.
    pub write_timeout: Duration,
    /// How long one control call may take before it is abandoned and retried.
    pub attempt_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            agent: AgentOptions::default(),
            // Generous: debug builds, several agents and parallel tests on two cores.
            timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl ClusterOptions {
    /// Default options with these extra agent flags, e.g. `["--snapshot-interval", "50"]`.
    pub fn with_agent_args(args: &[&str]) -> ClusterOptions {
        let mut options = ClusterOptions::default();
        options.agent.extra_args = args.iter().map(|arg| (*arg).to_string()).collect();
        options
    }
}

/// The number of voters a cluster of `managers` settles on when managers join one by one: the
/// largest odd number not above it (the others stay learners).
pub fn expected_voters(managers: usize) -> usize {
    if managers % 2 == 1 {
        managers
    } else {
        managers.saturating_sub(1)
    }
}

/// One node of the cluster and what the harness knows about it.
#[derive(Debug)]
struct Node {
    name: String,
    agent: AgentProcess,
    node_id: u64,
    raft_id: u64,
    /// Made a member by bootstrap or join, and not removed since (as far as the test said).
    member: bool,
    /// Not stopped by the harness.
    running: bool,
}

/// N manager processes. Dropping it kills them all.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Node>,
    options: ClusterOptions,
    acknowledged: Acknowledged,
    /// Where the next [`Cluster::put_any`] starts, so that writes spread over the members.
    next_target: AtomicUsize,
}

impl Cluster {
    /// Starts `count` uninitialised agents with default options.
    pub async fn start(count: usize) -> Result<Cluster, HarnessError> {
        Cluster::start_with(count, ClusterOptions::default()).await
    }

    /// Starts `count` uninitialised agents (all at once) and waits until each answers.
    pub async fn start_with(
        count: usize,
        options: ClusterOptions,
    ) -> Result<Cluster, HarnessError> {
        let mut options = options;
        if options.agent.bin.is_none() {
            options.agent.bin = Some(find_agent_binary()?);
        }
        let mut cluster = Cluster {
            nodes: Vec::with_capacity(count),
            options,
            acknowledged: Acknowledged::new(),
            next_target: AtomicUsize::new(0),
        };
        let mut spawned = Vec::with_capacity(count);
        for index in 0..count {
            spawned.push(cluster.spawn_node(index)?);
        }
        for (name, mut agent) in spawned {
            let status = agent.wait_ready().await?;
            cluster.push_node(name, agent, &status);
        }
        Ok(cluster)
    }

    fn spawn_node(&self, index: usize) -> Result<(String, AgentProcess), HarnessError> {
        let name = format!("manager-{:02}", index + 1);
        let mut options = self.options.agent.clone();
        options.work_dir = options.work_dir.map(|base| base.join(&name));
        Ok((name, AgentProcess::spawn(options)?))
    }

    fn push_node(&mut self, name: String, agent: AgentProcess, status: &StatusInfo) {
        self.nodes.push(Node {
            name,
            agent,
            node_id: status.node_id,
            raft_id: status.raft_node_id,
            member: false,
            running: true,
        });
    }

    /// Starts one more uninitialised agent and returns its index.
    pub async fn add_node(&mut self) -> Result<usize, HarnessError> {
        let index = self.nodes.len();
        let (name, mut agent) = self.spawn_node(index)?;
        let status = agent.wait_ready().await?;
        self.push_node(name, agent, &status);
        Ok(index)
    }

    /// How many nodes were started (members or not, running or not).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    fn node(&self, index: usize) -> Result<&Node, HarnessError> {
        self.nodes.get(index).ok_or(HarnessError::NoSuchNode {
            index,
            count: self.nodes.len(),
        })
    }

    fn node_mut(&mut self, index: usize) -> Result<&mut Node, HarnessError> {
        let count = self.nodes.len();
        self.nodes
            .get_mut(index)
            .ok_or(HarnessError::NoSuchNode { index, count })
    }

    /// The process of node `index`.
    pub fn agent(&self, index: usize) -> Result<&AgentProcess, HarnessError> {
        Ok(&self.node(index)?.agent)
    }

    /// `manager-01` for node 0, and so on.
    pub fn name(&self, index: usize) -> String {
        self.nodes
            .get(index)
            .map_or_else(|| format!("node {index}"), |node| node.name.clone())
    }

    /// The node id (`key.json`'s `node_id`) of node `index`: what `node ls` shows and what
    /// `node promote/demote/rm` take.
    pub fn node_id(&self, index: usize) -> Result<u64, HarnessError> {
        Ok(self.node(index)?.node_id)
    }

    /// The Raft node id of node `index`: what `status` shows as leader, voters and learners.
    pub fn raft_id(&self, index: usize) -> Result<u64, HarnessError> {
        Ok(self.node(index)?.raft_id)
    }

    pub fn index_of_raft_id(&self, raft_id: u64) -> Option<usize> {
        self.nodes.iter().position(|node| node.raft_id == raft_id)
    }

    pub fn index_of_node_id(&self, node_id: u64) -> Option<usize> {
        self.nodes.iter().position(|node| node.node_id == node_id)
    }

    pub fn raft_addr(&self, index: usize) -> Result<SocketAddr, HarnessError> {
        Ok(self.node(index)?.agent.raft_addr())
    }

    pub fn remote_addr(&self, index: usize) -> Result<SocketAddr, HarnessError> {
        Ok(self.node(index)?.agent.remote_addr())
    }

    pub fn socket_path(&self, index: usize) -> Result<PathBuf, HarnessError> {
        Ok(self.node(index)?.agent.socket_path())
    }

    pub fn is_member(&self, index: usize) -> bool {
        self.nodes.get(index).is_some_and(|node| node.member)
    }

    pub fn is_running(&self, index: usize) -> bool {
        self.nodes.get(index).is_some_and(|node| node.running)
    }

    /// Tells the harness that node `index` is (or, after `node rm`, `leave` or a recovery that
    /// dropped it, is no longer) a member of the cluster.
    pub fn set_member(&mut self, index: usize, member: bool) -> Result<(), HarnessError> {
        self.node_mut(index)?.member = member;
        Ok(())
    }

    /// The members the harness has not stopped, in index order.
    pub fn live_members(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|index| self.is_member(*index) && self.is_running(*index))
            .collect()
    }

    /// A new control connection to node `index`.
    pub async fn client(&self, index: usize) -> Result<Client, HarnessError> {
        self.node(index)?.agent.client().await
    }

    /// Node `index`'s `status`, in one call.
    pub async fn status(&self, index: usize) -> Result<StatusInfo, HarnessError> {
        let client = self.client(index).await?;
        Ok(client.status().await?)
    }

    /// Every acknowledged write made through the harness (and whatever a test recorded).
    pub fn acknowledged(&self) -> &Acknowledged {
        &self.acknowledged
    }

    // ----- forming the cluster ------------------------------------------------------------

    /// Static bootstrap of every started node: `init --peers <raft addrs of the others>` on
    /// node 0, then `init --join-addr <remote addr of node 0>` on each other node; waits until
    /// all of them are voters under one leader.
    pub async fn bootstrap_static(&mut self) -> Result<InitInfo, HarnessError> {
        let peers = self.nodes[1.min(self.nodes.len())..]
            .iter()
            .map(|node| format!("http://{}", node.agent.raft_addr()))
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
        self.node(0)?
            .agent
            .wait_leader(self.options.timeout)
            .await?;
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

    // ----- waiting for the cluster --------------------------------------------------------

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
            .find(|(index, _)| self.nodes[*index].raft_id == leader)
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
        poll_until(
            self.options.timeout,
            &format!("{voters} voters and {learners} learners"),
            async || {
                let (_, status) = self.leader_once().await?;
                let cluster = cluster_of("the leader", &status)?;
                if cluster.voters.len() == voters && cluster.learners.len() == learners {
                    Ok(status)
                } else {
                    Err(format!(
                        "voters {:?}, learners {:?}",
                        cluster.voters, cluster.learners
                    ))
                }
            },
        )
        .await
    }

    /// Waits until the leader's status shows `voters` voters (any number of learners).
    pub async fn wait_voters(&self, voters: usize) -> Result<StatusInfo, HarnessError> {
        poll_until(
            self.options.timeout,
            &format!("{voters} voters"),
            async || {
                let (_, status) = self.leader_once().await?;
                let cluster = cluster_of("the leader", &status)?;
                if cluster.voters.len() == voters {
                    Ok(status)
                } else {
                    Err(format!(
                        "voters {:?}, learners {:?}",
                        cluster.voters, cluster.learners
                    ))
                }
            },
        )
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

    /// Checks with a linearizable read through the current leader that every acknowledged
    /// write is there. Returns how many writes were checked.
    pub async fn verify_acknowledged(&self) -> Result<usize, HarnessError> {
        let leader = self.leader().await?;
        self.verify_acknowledged_on(leader, ReadConsistency::Linearizable)
            .await
    }

    /// Checks on node `index` that every acknowledged write is there.
    pub async fn verify_acknowledged_on(
        &self,
        index: usize,
        consistency: ReadConsistency,
    ) -> Result<usize, HarnessError> {
        let mut client = self.client(index).await?;
        self.acknowledged
            .verify(&mut client, "", consistency, &self.name(index))
            .await?;
        Ok(self.acknowledged.len())
    }

    // ----- faults ---------------------------------------------------------------------------

    /// SIGKILL to node `index`.
    pub fn kill9(&mut self, index: usize) -> Result<(), HarnessError> {
        let node = self.node_mut(index)?;
        node.running = false;
        node.agent.kill9()?;
        Ok(())
    }

    /// SIGTERM to node `index`, waiting up to `timeout` for it to exit; true if it exited 0.
    pub async fn terminate(
        &mut self,
        index: usize,
        timeout: Duration,
    ) -> Result<bool, HarnessError> {
        let node = self.node_mut(index)?;
        node.running = false;
        Ok(node.agent.terminate(timeout).await?.success())
    }

    /// Starts the stopped node `index` again on its dir and ports; waits until it answers.
    pub async fn restart(&mut self, index: usize) -> Result<StatusInfo, HarnessError> {
        let node = self.node_mut(index)?;
        let status = node.agent.restart().await?;
        node.running = true;
        Ok(status)
    }

    // ----- writes ---------------------------------------------------------------------------

    /// Puts `value` at `key` through the running members, starting with the next one in turn
    /// and moving on to the next on a retryable failure (no leader, unavailable, a dead or
    /// unreachable node, no answer in time), until the write is acknowledged or the write
    /// timeout passes. Records and returns the acknowledged revision; a non-retryable error is
    /// returned at once.
    pub async fn put_any(&self, key: &str, value: &[u8]) -> Result<u64, HarnessError> {
        let live = self.live_members();
        if live.is_empty() {
            return Err(HarnessError::NoLiveMember);
        }
        let start = self.next_target.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 0usize;
        let attempt_timeout = self.options.attempt_timeout;
        let outcome = poll_until(
            self.options.write_timeout,
            &format!("a write of {key} to be acknowledged by any member"),
            async || {
                let index = live[(start + attempt) % live.len()];
                attempt += 1;
                let socket = self.nodes[index].agent.socket_path();
                put_once(&socket, key, value, attempt_timeout)
                    .await
                    .map_err(|error| format!("{}: {error}", self.name(index)))
            },
        )
        .await?;
        let revision = outcome?;
        self.acknowledged.record(key, value, revision);
        Ok(revision)
    }

    /// Puts `value` at `key` through node `index` only, retrying there on retryable failures.
    /// Records and returns the acknowledged revision.
    pub async fn put_via(
        &self,
        index: usize,
        key: &str,
        value: &[u8],
    ) -> Result<u64, HarnessError> {
        let socket = self.socket_path(index)?;
        let attempt_timeout = self.options.attempt_timeout;
        let outcome = poll_until(
            self.options.write_timeout,
            &format!("a write of {key} through {}", self.name(index)),
            async || put_once(&socket, key, value, attempt_timeout).await,
        )
        .await?;
        let revision = outcome?;
        self.acknowledged.record(key, value, revision);
        Ok(revision)
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

/// One put on a fresh connection: `Ok(Ok(revision))` when acknowledged, `Ok(Err(_))` on an
/// answer that retrying will not change, `Err(_)` on a retryable failure.
async fn put_once(
    socket: &Path,
    key: &str,
    value: &[u8],
    attempt_timeout: Duration,
) -> Result<Result<u64, ClientError>, String> {
    let call = async {
        let client = Client::connect(socket).await?;
        client.kv_put(key, value, None).await
    };
    match tokio::time::timeout(attempt_timeout, call).await {
        Err(_) => Err(format!("no answer within {attempt_timeout:?}")),
        Ok(Ok(result)) => Ok(Ok(result.revision)),
        Ok(Err(error)) if is_retryable(&error) => Err(error.to_string()),
        Ok(Err(error)) => Ok(Err(error)),
    }
}

fn cluster_of<'a>(name: &str, status: &'a StatusInfo) -> Result<&'a ClusterStatus, String> {
    status
        .cluster
        .as_ref()
        .ok_or_else(|| format!("{name} is not in a cluster"))
}

/// The error code of a failed call, if the agent answered with one.
pub fn error_code(error: &ClientError) -> Option<ErrorCode> {
    error.remote().map(|error| error.code)
}

/// Finds a key's entry in a listing.
pub fn find_entry<'a>(entries: &'a [KvEntry], key: &str) -> Option<&'a KvEntry> {
    entries.iter().find(|entry| entry.key == key)
}

/// Seeds `config_dir` from a snapshot file with `symphony-agent snapshot restore FILE
/// --config-dir DIR` (offline), so that an agent started on it comes up as a one-manager
/// cluster with the snapshot's data.
pub fn restore_snapshot(
    bin: Option<&Path>,
    snapshot: &Path,
    config_dir: &Path,
) -> Result<String, HarnessError> {
    let bin = match bin {
        Some(bin) => bin.to_path_buf(),
        None => find_agent_binary()?,
    };
    let command = format!(
        "{} snapshot restore {} --config-dir {}",
        bin.display(),
        snapshot.display(),
        config_dir.display()
    );
    let output = std::process::Command::new(&bin)
        .arg("snapshot")
        .arg("restore")
        .arg(snapshot)
        .arg("--config-dir")
        .arg(config_dir)
        .output()
        .map_err(HarnessError::io(format!("cannot run {command}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(HarnessError::CommandFailed {
            command,
            status: output.status,
            output: text,
        })
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
