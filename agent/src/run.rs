//! Start-up and shutdown: the order in which the agent's parts come up and go down.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use symphony_consensus::network::LocalIdentity;
use symphony_consensus::{Consensus, ConsensusConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{AgentArgs, AgentCommand, SnapshotCommand};
use crate::context::Context;
use crate::gossip::GossipSettings;
use crate::identity::Identity;
use crate::node::raft_port::RaftPort;
use crate::node::supervisor::{self, Owner};
use crate::node::{Advertised, ConsensusSetup, NodeConfig, NodeSettings, NodeState};
use crate::remote::RemotePool;
use crate::worker::state::{WorkerState, WorkerStateError};

/// The control socket's name inside the config dir (defined with the CLI, which finds it
/// there from `--config-dir`).
pub const CONTROL_SOCKET: &str = symphony_ctl::CONTROL_SOCKET;
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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsStoreError),
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
    #[error(transparent)]
    Worker(#[from] WorkerStateError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
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
    if let Some(path) = &args.failpoints_file {
        symphony_consensus::failpoint::use_file(path.clone());
    }
    let identity = Identity::load_or_create(&args.config_dir)?;
    crate::logging::init(args.log_level.as_deref(), args.log_format, identity.node_id)
        .map_err(RunError::Logging)?;

    let worker = WorkerState::load(&args.config_dir)?;
    let tls = Arc::new(crate::tls::TlsStore::open(&args.config_dir)?);
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
    let gossip_addr = gossip_listen_addr(&args, remote_addr);
    // Bound with the other listeners, so that a bad --metrics-addr stops the start at once.
    let metrics_listener = match args.metrics_addr {
        Some(addr) => Some(crate::metrics::server::bind(addr).await?),
        None => None,
    };

    let mut consensus_config =
        ConsensusConfig::new(identity.raft_node_id, args.config_dir.join(RAFT_DIR));
    consensus_config.snapshot_interval = args.snapshot_interval;
    consensus_config.events_kept = args.events_kept;
    let metrics = crate::metrics::Metrics::default();
    consensus_config.commit_timings = metrics.commits.clone();
    consensus_config.heartbeat_interval = Duration::from_millis(args.heartbeat_interval_ms);
    consensus_config.election_timeout_min = Duration::from_millis(args.election_timeout_ms);
    consensus_config.election_timeout_max = Duration::from_millis(args.election_timeout_ms * 2);
    consensus_config.transport = tls.raft_transport();
    let remote_advertised = advertised(&args, args.listen_raft_addr, remote_addr, gossip_addr);
    let local = LocalIdentity {
        node_id: identity.node_id,
        remote_addr: remote_advertised.remote_addr.clone(),
    };
    // Only a node with a Raft store may be a manager and starts its Raft node now; a worker
    // never needs one, and a fresh node starts one when it first does (see `node`).
    let consensus = if worker.is_none() && consensus_config.data_dir.exists() {
        Some(Consensus::start(consensus_config.clone(), local.clone()).await?)
    } else {
        None
    };
    let raft_listener = bind_raft(&args, consensus.as_ref(), worker.is_some()).await?;
    let raft_addr = raft_listener
        .as_ref()
        .and_then(|listener| listener.local_addr().ok())
        .unwrap_or(args.listen_raft_addr);
    let advertised = advertised(&args, raft_addr, remote_addr, gossip_addr);
    let open_files = crate::system::raise_open_files_limit();
    let docker = crate::exec::docker::Engine::connect(&args.docker_socket).await;
    match &docker {
        Ok(engine) => {
            tracing::info!(version = %engine.version, api = %engine.api_version, socket = %args.docker_socket.display(), "the Docker engine answers: docker tasks can run here")
        }
        Err(error) => tracing::info!(%error, "no Docker engine: this node takes no docker tasks"),
    }
    let docker = docker.ok();
    let config = Arc::new(NodeConfig {
        connection_cap: crate::system::connection_cap(open_files),
        raft_transport: tls.raft_transport(),
        remote_transport: tls.remote_transport(),
        advertised: advertised.clone(),
        settings: NodeSettings {
            config_dir: args.config_dir.clone(),
            gossip: GossipSettings {
                bind_addr: gossip_addr,
                advertised_addr: advertised_socket(&args, gossip_addr),
                profile: args.gossip_profile,
                probe_period: args.gossip_probe_period_ms.map(Duration::from_millis),
                probe_rtt: args.gossip_probe_rtt_ms.map(Duration::from_millis),
                suspect: args.gossip_suspect_ms.map(Duration::from_millis),
            },
            labels: args.labels.iter().cloned().collect(),
            docker: docker.as_ref().map(|engine| engine.version.clone()),
            liveness_grace: Duration::from_millis(args.liveness_grace_ms),
            orchestrator: crate::manager::orchestrator::decide::Settings {
                node_loss_grace: Duration::from_millis(args.node_loss_grace_ms),
                isolation_lease: Duration::from_millis(args.isolation_lease_ms),
                ..crate::manager::orchestrator::default_settings()
            },
            isolation_lease: Duration::from_millis(args.isolation_lease_ms),
        },
        setup: ConsensusSetup {
            config: consensus_config,
            raft_listen_addr: raft_addr,
            local,
        },
    });

    let socket_path = args.config_dir.join(CONTROL_SOCKET);
    let control_listener = crate::control::bind(&socket_path)?;
    let role = if worker.is_some() {
        "worker"
    } else {
        "manager or fresh"
    };
    let initial = NodeState {
        identity: identity.clone(),
        consensus,
        worker,
        generation: 0,
    };
    let (state, commands, node) = supervisor::channels(initial, config);
    let (gossip_publish, gossip) = crate::gossip::channel();
    let (session_loop, session) = crate::worker::session::channel();
    let ctx = Context {
        node: node.clone(),
        gossip: gossip.clone(),
        session,
        remote: Arc::new(RemotePool::new(
            identity.node_id,
            tls.remote_transport(),
            tls.remote_changes(),
        )),
        keys: Arc::new(crate::keyring::KeyringStore::load(&args.config_dir)),
        tls,
        metrics: metrics.clone(),
    };
    let mut owner = Owner::new(state, RaftPort::new(raft_addr), ctx.clone());
    if let Some(listener) = raft_listener {
        owner.open_raft_port_with(listener);
    }

    let shutdown = CancellationToken::new();
    let supervisor = tokio::spawn(supervisor::run(owner, commands, shutdown.clone()));
    let control = tokio::spawn(crate::control::serve(
        control_listener,
        ctx.clone(),
        metrics.requests.clone(),
        shutdown.clone(),
    ));
    let remote = tokio::spawn(crate::remote::server::serve(
        remote_listener,
        ctx.clone(),
        metrics.requests.clone(),
        shutdown.clone(),
    ));
    let raft_watch = tokio::spawn(crate::metrics::raft::watch(
        node.clone(),
        metrics.raft.clone(),
        shutdown.clone(),
    ));
    let status_watch = tokio::spawn(crate::metrics::liveness::watch(
        node.clone(),
        metrics.status_changes.clone(),
        shutdown.clone(),
    ));
    let removed_watch = tokio::spawn(crate::manager::trust::watch(
        node.clone(),
        ctx.tls.clone(),
        shutdown.clone(),
    ));
    let renewer = tokio::spawn(crate::renew::run(ctx.clone(), shutdown.clone()));
    let placement_watch = tokio::spawn(crate::metrics::placements::watch(
        node.clone(),
        metrics.placements.clone(),
        shutdown.clone(),
    ));
    let metrics_addr = metrics_listener.as_ref().map(|(_, bound)| *bound);
    let metrics_server = metrics_listener.map(|(listener, _)| {
        tokio::spawn(crate::metrics::server::serve(
            listener,
            crate::metrics::scrape::Sources {
                metrics: metrics.clone(),
                node: node.clone(),
                gossip: gossip.clone(),
            },
            shutdown.clone(),
        ))
    });
    let gossip_keeper = tokio::spawn(crate::gossip::keep(
        node.clone(),
        ctx.keys.clone(),
        gossip_publish,
        shutdown.clone(),
    ));
    let leader = tokio::spawn(crate::manager::leader::run(
        node.clone(),
        gossip.clone(),
        shutdown.clone(),
    ));
    let session = tokio::spawn(crate::worker::session::run(
        session_loop,
        node.clone(),
        gossip,
        ctx.remote.clone(),
        ctx.keys.clone(),
        shutdown.clone(),
    ));
    let (assigned, assigned_rx) = tokio::sync::watch::channel(Default::default());
    let (contact, contact_rx) = tokio::sync::watch::channel(None);
    let (reports, reports_rx) = tokio::sync::mpsc::unbounded_channel();
    let feed = tokio::spawn(crate::exec::feed::run(
        ctx.clone(),
        assigned,
        contact,
        shutdown.clone(),
    ));
    let executor = tokio::spawn(crate::exec::run(
        crate::exec::Settings {
            config_dir: args.config_dir.clone(),
            max_log_bytes: args.task_log_max_bytes,
            isolation_lease: Duration::from_millis(args.isolation_lease_ms),
            node_id: identity.node_id,
            docker,
        },
        assigned_rx,
        contact_rx,
        reports,
        shutdown.clone(),
    ));
    let reporter = tokio::spawn(crate::exec::report::run(
        ctx.clone(),
        reports_rx,
        shutdown.clone(),
    ));

    tracing::info!(
        node_id = identity.node_id,
        raft_node_id = identity.raft_node_id,
        raft_addr = %advertised.raft_addr,
        remote_addr = %advertised.remote_addr,
        gossip_addr = %advertised.gossip_addr,
        role,
        control_socket = %socket_path.display(),
        metrics_addr = metrics_addr.map(|addr| addr.to_string()),
        version = crate::VERSION,
        "agent started"
    );

    stop.wait().await;
    tracing::info!("stopping");
    shutdown.cancel();
    // The gossip keeper leaves the pool on its way out, so the others see this node go now;
    // the supervisor stops the Raft port and the Raft node.
    let _ = tokio::join!(
        control,
        remote,
        gossip_keeper,
        leader,
        session,
        feed,
        executor,
        reporter,
        raft_watch,
        status_watch,
        removed_watch,
        renewer,
        placement_watch,
        supervisor
    );
    if let Some(metrics_server) = metrics_server {
        let _ = metrics_server.await;
    }
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped");
    Ok(())
}

/// The addresses other nodes use: the bound ones (so port 0 works), with `--advertise-addr`'s
/// IP when given.
pub fn advertised(
    args: &AgentArgs,
    raft_addr: SocketAddr,
    remote_addr: SocketAddr,
    gossip_addr: SocketAddr,
) -> Advertised {
    Advertised {
        raft_addr: advertised_socket(args, raft_addr).to_string(),
        remote_addr: advertised_socket(args, remote_addr).to_string(),
        gossip_addr: advertised_socket(args, gossip_addr).to_string(),
        hostname: crate::system::hostname(),
    }
}

fn advertised_socket(args: &AgentArgs, bound: SocketAddr) -> SocketAddr {
    SocketAddr::new(args.advertise_addr.unwrap_or(bound.ip()), bound.port())
}

/// Where gossip listens: `--listen-gossip-addr`, or the remote API's ip:port over UDP.
pub fn gossip_listen_addr(args: &AgentArgs, remote_addr: SocketAddr) -> SocketAddr {
    args.listen_gossip_addr.unwrap_or(remote_addr)
}

/// Binds the Raft port when this node is or may become a manager.
///
/// A manager (its store holds a Raft group) must serve, or it is no manager. A worker never
/// does. A fresh node listens if it can, since `init --peers` reaches peers on their Raft
/// port; if another agent on this machine holds the port it runs without, and can still join
/// as a worker (or serve later, when it inits or joins as a manager).
async fn bind_raft(
    args: &AgentArgs,
    consensus: Option<&Consensus>,
    worker: bool,
) -> Result<Option<TcpListener>, RunError> {
    let addr = args.listen_raft_addr;
    if worker {
        return Ok(None);
    }
    let manager = match consensus {
        Some(consensus) => consensus.is_initialised().await?,
        None => false,
    };
    match TcpListener::bind(addr).await {
        Ok(listener) => Ok(Some(listener)),
        Err(source) if manager => Err(RunError::RaftListen { addr, source }),
        Err(error) => {
            tracing::warn!(%addr, %error, "the Raft port is taken; this node can join as a worker, or give it --listen-raft-addr to be a manager");
            Ok(None)
        }
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
