//! `testnet up`: start the nodes of a new testnet and form them into one cluster, the way an
//! operator would: `init` on manager-1, then every other manager joins through it with the
//! manager token and every worker with the worker token; then wait until the managers settle
//! on their voters and the leader's `node ls` shows every node ready.
//!
//! The state file is written before the first node starts and after every step, so that a
//! failed or interrupted `up` leaves nothing that `testnet down` cannot find and remove.

use std::path::PathBuf;
use std::time::Duration;

use symphony_ctl::proto::{ErrorCode, JoinInfo, Role};
use symphony_ctl::{Client, ClientError};

use super::handle::{Lab, absolute_dir, backend_for};
use super::plan::{Addressing, check_addresses_free, plan};
use super::rpc::call_retrying;
use super::state::{LabState, Lifetime, STATE_VERSION};
use super::status::LabStatus;
use super::{BackendKind, LabError, Subnet};
use crate::harness::{expected_voters, find_agent_binary, poll_until};

/// How long one control call may take before it is retried.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// What `testnet up` starts.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The state dir (created if missing).
    pub dir: PathBuf,
    pub managers: usize,
    pub workers: usize,
    pub backend: BackendKind,
    /// The agent binary; `None` means `$SYMPHONY_AGENT_BIN` or next to this executable.
    pub agent_bin: Option<PathBuf>,
    pub subnet: Subnet,
    /// How the local backend's nodes get their addresses (the docker backend's are on its
    /// network).
    pub addressing: Addressing,
    /// Whether the nodes outlive the process that starts them.
    pub lifetime: Lifetime,
    /// Passed to every agent as `--log-level`.
    pub log_level: String,
    /// More flags for every agent.
    pub agent_args: Vec<String>,
    /// How long one node may take to answer after a start.
    pub start_timeout: Duration,
    /// How long forming the cluster (elections, joins, promotions) may take.
    pub form_timeout: Duration,
    /// Each node's config dir on a tmpfs of this many MiB (local backend, as root), for
    /// disk-full faults.
    pub disk_mb: Option<u64>,
}

impl Default for UpOptions {
    fn default() -> Self {
        UpOptions {
            dir: PathBuf::from(".testnet"),
            managers: 3,
            workers: 0,
            backend: BackendKind::Local,
            agent_bin: None,
            subnet: Subnet::DEFAULT,
            addressing: Addressing::Subnet,
            lifetime: Lifetime::Detached,
            log_level: "info".to_string(),
            agent_args: Vec::new(),
            // Generous: debug builds on a loaded two-core machine start slowly.
            start_timeout: Duration::from_secs(30),
            form_timeout: Duration::from_secs(60),
            disk_mb: None,
        }
    }
}

/// Reports what `up` is doing, one sentence at a time.
pub type Progress<'a> = &'a mut (dyn FnMut(&str) + Send);

impl Lab {
    /// Starts a testnet and forms its cluster; returns once it is ready. On failure the nodes
    /// started so far keep running for inspection and the state file lists them, so that
    /// `testnet down` (or [`Lab::open`] + [`Lab::down`]) removes them.
    pub async fn up(options: UpOptions, progress: Progress<'_>) -> Result<Lab, LabError> {
        let (managers, form_timeout) = (options.managers, options.form_timeout);
        let mut lab = Lab::create(options, progress).await?;
        lab.form(form_timeout, progress).await?;
        let status = lab.settled(managers, form_timeout).await?;
        progress(&format!(
            "ready: {} node(s), leader {}",
            status.nodes.len(),
            status.leader.as_deref().unwrap_or("-")
        ));
        Ok(lab)
    }

    /// Starts the nodes of a new testnet and waits until each answers on its control socket,
    /// without forming a cluster: for whoever forms it another way (a static bootstrap, a
    /// benchmark that times the joins). Failures leave what [`Lab::up`]'s do.
    pub async fn create(options: UpOptions, progress: Progress<'_>) -> Result<Lab, LabError> {
        let backend = backend_for(options.backend)?;
        let dir = absolute_dir(&options.dir)?;
        if LabState::exists_in(&dir) {
            return Err(LabError::AlreadyUp { dir });
        }
        let agent_bin = match &options.agent_bin {
            Some(bin) if bin.is_file() => bin.clone(),
            Some(bin) => {
                return Err(LabError::InvalidArgument(format!(
                    "--agent-bin {} is not a file",
                    bin.display()
                )));
            }
            None => find_agent_binary()?,
        };
        let agent_bin = absolute_dir(&agent_bin)?;
        let nodes = plan(
            &dir,
            options.addressing,
            options.subnet,
            options.managers,
            options.workers,
        )?;
        // Only local nodes bind the planned subnet's addresses (containers get theirs in
        // `prepare`, OS ports are free by construction).
        if options.backend == BackendKind::Local && options.addressing == Addressing::Subnet {
            check_addresses_free(&nodes)?;
        }
        std::fs::create_dir_all(&dir)
            .map_err(LabError::io(format!("cannot create {}", dir.display())))?;
        let state = LabState {
            version: STATE_VERSION,
            backend: options.backend,
            dir,
            subnet: options.subnet,
            addressing: options.addressing,
            lifetime: options.lifetime,
            agent_bin,
            log_level: options.log_level.clone(),
            agent_args: options.agent_args.clone(),
            start_timeout_ms: u64::try_from(options.start_timeout.as_millis()).unwrap_or(u64::MAX),
            cluster_id: None,
            nodes,
            partition: None,
            disk_mb: options.disk_mb,
        };
        state.save()?;
        let mut lab = Lab { state, backend };
        lab.backend.prepare(&mut lab.state)?;
        lab.state.save()?;
        // A table left by a testnet on the same subnet that was never taken down would match
        // the new nodes' cgroups (same paths) and partition them from the start.
        lab.backend.heal(&lab.state)?;
        let on = match (options.backend, options.addressing) {
            (BackendKind::Local, Addressing::OsPorts) => "127.0.0.1".to_string(),
            _ => {
                let [a, b, c, _] = lab.state.nodes[0].ip.octets();
                format!("{a}.{b}.{c}.0/24")
            }
        };
        progress(&format!(
            "starting {} manager(s) and {} worker(s) on {on} ({} backend), state in {}",
            options.managers,
            options.workers,
            options.backend,
            lab.state.dir.display()
        ));
        lab.start_all(progress)?;
        for index in 0..lab.state.nodes.len() {
            lab.wait_answers(index).await?;
            progress(&format!("{}: answers", lab.state.nodes[index].name));
        }
        Ok(lab)
    }

    /// Starts every node without waiting: they come up in parallel.
    fn start_all(&mut self, progress: Progress<'_>) -> Result<(), LabError> {
        for index in 0..self.state.nodes.len() {
            let node = self.start(index)?;
            let at = node
                .handle
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            progress(&format!(
                "{}: started ({at}) on {}, log {}",
                node.name,
                node.ip,
                node.log_path.display()
            ));
        }
        Ok(())
    }

    /// `init` on manager-1, then joins every other node through it.
    async fn form(&mut self, timeout: Duration, progress: Progress<'_>) -> Result<(), LabError> {
        let first = self.state.nodes[0].clone();
        let info = call_retrying(
            &first.name,
            &first.socket_path(),
            "init",
            timeout,
            ATTEMPT_TIMEOUT,
            async |client: &mut Client| client.init().await,
        )
        .await?;
        self.state.cluster_id = Some(info.cluster_id.clone());
        self.state.save()?;
        progress(&format!(
            "{}: initialised cluster {}",
            first.name, info.cluster_id
        ));
        let manager_token = self.token(&first, Role::Manager, timeout).await?;
        let via = first.remote_addr.to_string();
        let mut worker_token = None;
        for index in 1..self.state.nodes.len() {
            let node = self.state.nodes[index].clone();
            let token = match node.role {
                Role::Manager => manager_token.clone(),
                Role::Worker => match &worker_token {
                    Some(token) => token,
                    None => worker_token.insert(self.token(&first, Role::Worker, timeout).await?),
                }
                .clone(),
            };
            let via = via.clone();
            let joined = call_retrying(
                &node.name,
                &node.socket_path(),
                &format!("join as a {} through {}", node.role, first.name),
                timeout,
                ATTEMPT_TIMEOUT,
                async move |client: &mut Client| join_once(client, &token, &via).await,
            )
            .await?;
            progress(&format!("{}: joined as a {}", node.name, joined.role));
        }
        Ok(())
    }

    /// The join token for `role`, as `node` shows it.
    async fn token(
        &self,
        node: &super::state::NodeRecord,
        role: Role,
        timeout: Duration,
    ) -> Result<String, LabError> {
        let info = call_retrying(
            &node.name,
            &node.socket_path(),
            &format!("token show {role}"),
            timeout,
            ATTEMPT_TIMEOUT,
            async move |client: &mut Client| client.token_show(role).await,
        )
        .await?;
        Ok(info.token)
    }

    /// Waits until one leader leads the expected number of voting managers and every node is
    /// ready in the leader's `node ls`.
    async fn settled(&self, managers: usize, timeout: Duration) -> Result<LabStatus, LabError> {
        let voters = expected_voters(managers);
        let total = self.state.nodes.len();
        let what = format!(
            "the cluster to settle: one leader, {voters} voting manager(s), {total} ready node(s)"
        );
        Ok(poll_until(timeout, &what, async || {
            let status = self.status().await;
            let Some(leader) = &status.leader else {
                return Err("no leader yet".to_string());
            };
            let voting = status
                .nodes
                .iter()
                .filter(|node| node.role == Role::Manager)
                .filter(|node| matches!(node.raft_state.as_deref(), Some("leader" | "follower")))
                .count();
            let ready = status.ready();
            if voting == voters && ready == total {
                Ok(status)
            } else {
                Err(format!(
                    "leader {leader}, {voting} voting manager(s), {ready} ready node(s)"
                ))
            }
        })
        .await?)
    }
}

/// Joins through `via`, as often as the lab retries: an attempt that timed out here may still
/// have gone through on the node, and its retry is then refused as "already belongs"; the
/// node's own status tells whether that is this join having succeeded.
async fn join_once(client: &mut Client, token: &str, via: &str) -> Result<JoinInfo, ClientError> {
    match client.join(token.to_string(), via.to_string()).await {
        Err(error)
            if error
                .remote()
                .is_some_and(|remote| remote.code == ErrorCode::AlreadyInitialised) =>
        {
            let status = client.status().await?;
            match status.cluster {
                Some(cluster) => Ok(JoinInfo {
                    cluster_id: cluster.cluster_id,
                    node_id: status.node_id,
                    role: cluster.role,
                    leader_raft_id: cluster.leader_raft_id,
                }),
                None => Err(error),
            }
        }
        outcome => outcome,
    }
}
