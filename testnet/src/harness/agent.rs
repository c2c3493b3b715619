//! One `symphony-agent` process, driven the way an operator would: start it, talk to its
//! control socket, kill it, restart it on the same dir and ports.
//!
//! Layout of an agent's work dir (a fresh temp dir unless one is given):
//! - `config/`: the agent's `--config-dir`, created by the agent itself on first start, so
//!   that the first start really is a first start;
//! - `agent.log`: the agent's stdout and stderr, appended across restarts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use symphony_ctl::Client;
use symphony_ctl::proto::StatusInfo;
use tempfile::TempDir;
use tokio::time::Instant;

use super::{AgentCommandLine, HarnessError, find_agent_binary, free_addr, log, poll_until};

const POLL_PAUSE: Duration = Duration::from_millis(20);
const LOG_TAIL_LINES: usize = 40;

/// How to start an agent. `Default` finds the binary, uses a temp dir and OS-given ports.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The agent binary; `None` means [`find_agent_binary`].
    pub bin: Option<PathBuf>,
    /// The work dir (see the module docs); `None` means a temp dir removed on drop.
    pub work_dir: Option<PathBuf>,
    /// Passed as `--log-level`.
    pub log_level: String,
    /// How long a start may take until `status` answers on the control socket.
    pub ready_timeout: Duration,
    /// More flags for the agent, e.g. `--snapshot-interval 100`.
    pub extra_args: Vec<String>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            bin: None,
            work_dir: None,
            log_level: "info".to_string(),
            // Generous: debug builds on a loaded two-core machine start slowly.
            ready_timeout: Duration::from_secs(30),
            extra_args: Vec::new(),
        }
    }
}

/// Keeps a temp work dir alive for as long as the agent, or remembers a given one.
#[derive(Debug)]
enum WorkDir {
    Temp(TempDir),
    Given(PathBuf),
}

impl WorkDir {
    fn path(&self) -> &Path {
        match self {
            WorkDir::Temp(dir) => dir.path(),
            WorkDir::Given(path) => path,
        }
    }
}

/// A running (or stopped) agent process. Dropping it kills the process.
#[derive(Debug)]
pub struct AgentProcess {
    bin: PathBuf,
    work_dir: WorkDir,
    config_dir: PathBuf,
    log_path: PathBuf,
    raft_addr: SocketAddr,
    remote_addr: SocketAddr,
    log_level: String,
    ready_timeout: Duration,
    extra_args: Vec<String>,
    child: Option<Child>,
    last_exit: Option<ExitStatus>,
    /// Where the current run's output starts in `agent.log`.
    run_log_offset: u64,
}

impl AgentProcess {
    /// Starts an agent with default options and waits until its control socket answers.
    pub async fn start() -> Result<AgentProcess, HarnessError> {
        AgentProcess::start_with(AgentOptions::default()).await
    }

    /// Starts an agent and waits until its control socket answers `status`.
    pub async fn start_with(options: AgentOptions) -> Result<AgentProcess, HarnessError> {
        let mut agent = AgentProcess::spawn(options)?;
        agent.wait_ready().await?;
        Ok(agent)
    }

    /// Starts an agent without waiting for it: for tests that expect it to fail at start.
    pub fn spawn(options: AgentOptions) -> Result<AgentProcess, HarnessError> {
        let bin = match options.bin {
            Some(bin) => bin,
            None => find_agent_binary()?,
        };
        let work_dir = match options.work_dir {
            Some(path) => {
                std::fs::create_dir_all(&path).map_err(HarnessError::io(format!(
                    "cannot create the work dir {}",
                    path.display()
                )))?;
                WorkDir::Given(path)
            }
            None => WorkDir::Temp(
                tempfile::Builder::new()
                    .prefix("symphony-testnet-")
                    .tempdir()
                    .map_err(HarnessError::io("cannot create a temp dir for an agent"))?,
            ),
        };
        let config_dir = work_dir.path().join("config");
        let log_path = work_dir.path().join("agent.log");
        let mut agent = AgentProcess {
            bin,
            work_dir,
            config_dir,
            log_path,
            raft_addr: free_addr()?,
            remote_addr: free_addr()?,
            log_level: options.log_level,
            ready_timeout: options.ready_timeout,
            extra_args: options.extra_args,
            child: None,
            last_exit: None,
            run_log_offset: 0,
        };
        agent.launch()?;
        Ok(agent)
    }

    /// Starts the stopped agent again on the same dir and ports, without waiting for it.
    pub fn respawn(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Err(HarnessError::StillRunning {
                dir: self.config_dir.clone(),
            });
        }
        self.launch()
    }

    /// Changes the extra arguments the agent gets from its next start on.
    pub fn set_extra_args(&mut self, args: Vec<String>) {
        self.extra_args = args;
    }

    /// Starts the stopped agent again on the same dir and ports and waits until it answers.
    pub async fn restart(&mut self) -> Result<StatusInfo, HarnessError> {
        self.respawn()?;
        self.wait_ready().await
    }

    fn launch(&mut self) -> Result<(), HarnessError> {
        let log_file = log::append(&self.log_path).map_err(HarnessError::io(format!(
            "cannot open the agent log {}",
            self.log_path.display()
        )))?;
        self.run_log_offset = log_file
            .metadata()
            .map_err(HarnessError::io("cannot read the agent log's length"))?
            .len();
        let stderr = log_file.try_clone().map_err(HarnessError::io(
            "cannot share the agent log between stdout and stderr",
        ))?;
        let command_line = AgentCommandLine {
            config_dir: self.config_dir.clone(),
            raft_addr: self.raft_addr,
            remote_addr: self.remote_addr,
            advertise_ip: None,
            log_level: self.log_level.clone(),
            extra: self.extra_args.clone(),
        };
        let child = Command::new(&self.bin)
            .args(command_line.args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file))
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(HarnessError::io(format!(
                "cannot start {}",
                self.bin.display()
            )))?;
        self.child = Some(child);
        self.last_exit = None;
        Ok(())
    }

    /// Waits until the control socket accepts a connection and answers `status`, failing early
    /// (with the log's tail) if the process exits first.
    pub async fn wait_ready(&mut self) -> Result<StatusInfo, HarnessError> {
        let started = Instant::now();
        let deadline = started + self.ready_timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Err(HarnessError::ExitedEarly {
                    dir: self.config_dir.clone(),
                    status,
                    log_tail: self.log_tail(),
                });
            }
            let attempt = async {
                let client = Client::connect(self.socket_path()).await?;
                client.status().await
            };
            let last = match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(status)) => return Ok(status),
                Ok(Err(error)) => error.to_string(),
                Err(_) => "a status call was still running at the deadline".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(HarnessError::NotReady {
                    dir: self.config_dir.clone(),
                    waited: started.elapsed(),
                    last,
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }

    /// Waits until this node is the Raft leader of its cluster (as its own `status` says).
    pub async fn wait_leader(&self, timeout: Duration) -> Result<StatusInfo, HarnessError> {
        let socket = self.socket_path();
        poll_until(timeout, "the node to be leader", async || {
            let client = Client::connect(&socket).await.map_err(|e| e.to_string())?;
            let status = client.status().await.map_err(|e| e.to_string())?;
            match &status.cluster {
                Some(cluster)
                    if cluster.leader_raft_id == Some(status.raft_node_id)
                        && cluster.raft_state.eq_ignore_ascii_case("leader") =>
                {
                    Ok(status)
                }
                Some(cluster) => Err(format!(
                    "raft_state {}, leader {:?}, own raft id {}",
                    cluster.raft_state, cluster.leader_raft_id, status.raft_node_id
                )),
                None => Err("the node is not initialised".to_string()),
            }
        })
        .await
    }

    /// A new control connection to this agent.
    pub async fn client(&self) -> Result<Client, HarnessError> {
        Ok(Client::connect(self.socket_path()).await?)
    }

    /// SIGKILL: the process dies at once, with no chance to flush or clean up.
    pub fn kill9(&mut self) -> Result<ExitStatus, HarnessError> {
        let dir = self.config_dir.clone();
        let child = self
            .child
            .as_mut()
            .ok_or(HarnessError::NotRunning { dir })?;
        // Killing a process that already exited fails with InvalidInput; wait() still reaps it.
        let _ = child.kill();
        let status = child
            .wait()
            .map_err(HarnessError::io("cannot wait for the killed agent"))?;
        self.child = None;
        self.last_exit = Some(status);
        Ok(status)
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let pid = self
            .pid()
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(rustix::process::Pid::from_raw)
            .ok_or(HarnessError::NotRunning {
                dir: self.config_dir.clone(),
            })?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).map_err(|errno| {
            HarnessError::Io {
                context: "cannot send SIGTERM to the agent".to_string(),
                source: errno.into(),
            }
        })?;
        self.wait_exit(timeout).await
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, HarnessError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(status);
            }
            if started.elapsed() >= timeout {
                return Err(HarnessError::Timeout {
                    what: format!("the agent in {} to exit", self.config_dir.display()),
                    waited: started.elapsed(),
                    last: "still running".to_string(),
                });
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>, HarnessError> {
        if let Some(child) = self.child.as_mut() {
            let exited = child
                .try_wait()
                .map_err(HarnessError::io("cannot check whether the agent exited"))?;
            if let Some(status) = exited {
                self.child = None;
                self.last_exit = Some(status);
            }
        }
        Ok(self.last_exit)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_exit_status(), Ok(None)) && self.child.is_some()
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The agent's `--config-dir`.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// The dir holding the config dir and the log.
    pub fn work_dir(&self) -> &Path {
        self.work_dir.path()
    }

    pub fn socket_path(&self) -> PathBuf {
        self.config_dir.join("control.sock")
    }

    pub fn key_path(&self) -> PathBuf {
        self.config_dir.join("key.json")
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// Everything the agent wrote to stdout and stderr, across restarts.
    pub fn log(&self) -> String {
        log::read_from(&self.log_path, 0)
    }

    /// What the current (or last) run wrote, without earlier runs.
    pub fn run_log(&self) -> String {
        log::read_from(&self.log_path, self.run_log_offset)
    }

    /// The last lines of the current run's log, for error messages.
    pub fn log_tail(&self) -> String {
        log::tail(&self.run_log(), LOG_TAIL_LINES)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Tasks outlive their agent (a restarted agent adopts them); the test is over.
        super::tasks::kill_tasks(&self.config_dir);
        // The temp dir goes away with us; show a failing test what the agent said.
        if std::thread::panicking() {
            eprintln!(
                "--- log of the agent in {} ---\n{}\n--- end of agent log ---",
                self.config_dir.display(),
                self.log_tail()
            );
        }
    }
}
