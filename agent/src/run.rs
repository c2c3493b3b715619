//! Start-up and shutdown: the order in which the agent's parts come up and go down.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use symphony_consensus::network::LocalIdentity;
use symphony_consensus::{Consensus, ConsensusConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{AgentArgs, AgentCommand, SnapshotCommand};
use crate::identity::Identity;
use crate::node::{Advertised, ConsensusSetup, Node};

/// The control socket's name inside the config dir.
pub const CONTROL_SOCKET: &str = "control.sock";
/// The Raft store's directory inside the config dir.
pub const RAFT_DIR: &str = "raft";

/// Why the agent could not start (or stop) cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot create the config dir {path}: {source}")]
    ConfigDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("{0}")]
    Logging(String),
    #[error(
        "cannot listen for Raft RPCs on {addr}: {source}; is another agent using that port? (--listen-raft-addr)"
    )]
    RaftListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Consensus(#[from] symphony_consensus::ConsensusError),
    #[error(transparent)]
    ControlSocket(#[from] crate::control::BindError),
    #[error("cannot install the signal handler: {0}")]
    Signals(std::io::Error),
    #[error(
        "cannot listen for the node-to-node API on {addr}: {source}; is another agent using that port? (--listen-remote-addr)"
    )]
    RemoteListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Restore(String),
}

/// Runs the agent until SIGTERM or SIGINT, or one of its offline commands.
pub async fn run(args: AgentArgs) -> Result<(), RunError> {
    let mut stop = StopSignals::install()?;
    prepare_config_dir(&args.config_dir)?;
    if let Some(AgentCommand::Snapshot(SnapshotCommand::Restore { file })) = &args.command {
        return crate::restore::restore(&args, file)
            .await
            .map_err(RunError::Restore);
    }
    let identity = Identity::load_or_create(&args.config_dir)?;
    crate::logging::init(args.log_level.as_deref(), args.log_format, identity.node_id)
        .map_err(RunError::Logging)?;

    let raft_listener = TcpListener::bind(args.listen_raft_addr)
        .await
        .map_err(|source| RunError::RaftListen {
            addr: args.listen_raft_addr,
            source,
        })?;
    let raft_addr = raft_listener
        .local_addr()
        .map_err(|source| RunError::RaftListen {
            addr: args.listen_raft_addr,
            source,
        })?;
    let remote_listener = TcpListener::bind(args.listen_remote_addr)
        .await
        .map_err(|source| RunError::RemoteListen {
            addr: args.listen_remote_addr,
            source,
        })?;
    let remote_addr = remote_listener
        .local_addr()
        .map_err(|source| RunError::RemoteListen {
            addr: args.listen_remote_addr,
            source,
        })?;
    let advertised = advertised(&args, raft_addr, remote_addr);

    let mut consensus_config =
        ConsensusConfig::new(identity.raft_node_id, args.config_dir.join(RAFT_DIR));
    consensus_config.snapshot_interval = args.snapshot_interval;
    consensus_config.heartbeat_interval = Duration::from_millis(args.heartbeat_interval_ms);
    consensus_config.election_timeout_min = Duration::from_millis(args.election_timeout_ms);
    consensus_config.election_timeout_max = Duration::from_millis(args.election_timeout_ms * 2);
    let local = LocalIdentity {
        node_id: identity.node_id,
        remote_addr: advertised.remote_addr.clone(),
    };
    let setup = ConsensusSetup {
        config: consensus_config.clone(),
        raft_listen_addr: raft_addr,
        local: local.clone(),
    };
    let consensus = Consensus::start(consensus_config, raft_listener, local).await?;

    let socket_path = args.config_dir.join(CONTROL_SOCKET);
    let control_listener = crate::control::bind(&socket_path)?;
    let node = Arc::new(Node::new(
        identity.clone(),
        advertised.clone(),
        consensus,
        setup,
    ));
    let shutdown = CancellationToken::new();
    let control = tokio::spawn(crate::control::serve(
        control_listener,
        node.clone(),
        shutdown.clone(),
    ));
    let remote = tokio::spawn(crate::remote::server::serve(
        remote_listener,
        node.clone(),
        shutdown.clone(),
    ));
    let promoter = tokio::spawn(crate::node::promoter::run(node.clone(), shutdown.clone()));

    tracing::info!(
        node_id = identity.node_id,
        raft_node_id = identity.raft_node_id,
        raft_addr = %advertised.raft_addr,
        remote_addr = %advertised.remote_addr,
        control_socket = %socket_path.display(),
        version = crate::VERSION,
        "agent started"
    );

    stop.wait().await;
    tracing::info!("stopping");
    shutdown.cancel();
    let _ = tokio::join!(control, remote, promoter);
    node.consensus().shutdown().await;
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped");
    Ok(())
}

/// The addresses other nodes use: the bound ones (so port 0 works), with `--advertise-addr`'s
/// IP when given.
pub fn advertised(args: &AgentArgs, raft_addr: SocketAddr, remote_addr: SocketAddr) -> Advertised {
    let ip = |bound: SocketAddr| args.advertise_addr.unwrap_or(bound.ip());
    Advertised {
        raft_addr: SocketAddr::new(ip(raft_addr), raft_addr.port()).to_string(),
        remote_addr: SocketAddr::new(ip(remote_addr), remote_addr.port()).to_string(),
        hostname: crate::system::hostname(),
    }
}

/// Creates the config dir, private to this user: it holds the node key and the control socket.
fn prepare_config_dir(dir: &Path) -> Result<(), RunError> {
    let error = |source| RunError::ConfigDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(error)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(error)
}

/// SIGTERM and SIGINT, caught from the moment this is created: a signal that arrives while the
/// agent is still starting is kept, not left to kill the process.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals, RunError> {
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate()).map_err(RunError::Signals)?,
            interrupt: signal(SignalKind::interrupt()).map_err(RunError::Signals)?,
        })
    }

    async fn wait(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
