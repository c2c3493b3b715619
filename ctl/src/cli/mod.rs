//! The `symphony-ctl` command line: argument parsing, one call per command, and output as a
//! table for people or JSON for scripts (`--json`).

mod cluster;
mod debug;
mod events;
mod gossip;
mod kv;
mod parse;
mod service;
mod table;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::proto::{DoneInfo, NodeInfo, ReadConsistency, Role, StatusInfo};
use crate::{Client, ClientError};
pub use table::{Table, fields};

/// Drive a Symphony node through its control socket.
#[derive(Debug, Parser)]
#[command(
    name = "symphony-ctl",
    version = crate::VERSION_WITH_REVISION,
    about = "Drive a Symphony node through its control socket"
)]
pub struct Cli {
    /// The node's control socket. Default: control.sock in --config-dir when that is given,
    /// else .symphony/control.sock.
    #[arg(long, global = true, env = "SYMPHONY_SOCKET")]
    pub socket: Option<PathBuf>,

    /// The agent's config dir (its --config-dir, and the same environment variable): talk to
    /// the control socket in it. --socket, when given, wins.
    #[arg(long, global = true, env = "SYMPHONY_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Print JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    /// Give up after this long (e.g. 500ms, 10s, 2m), streams included (`kv watch`,
    /// `events`, `service logs --follow` end then). Default: as long as the command needs.
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse::duration_ms)]
    pub timeout: Option<u64>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The socket to talk to: `--socket` (or `SYMPHONY_SOCKET`), else the one in `--config-dir`
    /// (or `SYMPHONY_CONFIG_DIR`), else [`crate::DEFAULT_SOCKET`], where an agent started
    /// without `--config-dir` serves.
    pub fn socket_path(&self) -> PathBuf {
        match (&self.socket, &self.config_dir) {
            (Some(socket), _) => socket.clone(),
            (None, Some(dir)) => dir.join(crate::CONTROL_SOCKET),
            (None, None) => PathBuf::from(crate::DEFAULT_SOCKET),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new cluster with this node as its first manager, or join one that named it.
    Init {
        /// The other first managers' Raft addresses (`http://host:port` or `host:port`,
        /// comma-separated); they become voters at once and join with `init --join-addr`.
        #[arg(long, value_delimiter = ',', value_name = "ADDRS")]
        peers: Vec<String>,
        /// Join the cluster whose `init --peers` named this node, through any of its managers'
        /// remote address (`host:port`); no token needed.
        #[arg(long, value_name = "ADDR", conflicts_with = "peers")]
        join_addr: Option<String>,
        /// How long node certificates are valid (e.g. 90d, 12h, 45s; from 30s to 5 years;
        /// default 90d). Every node renews its own between half and four fifths of its life;
        /// `cluster update --cert-expiry` changes it later.
        #[arg(long, value_name = "DURATION", value_parser = parse::duration_ms, conflicts_with = "join_addr")]
        cert_expiry: Option<u64>,
    },
    /// Join a cluster through any of its managers; the token decides the role.
    Join {
        /// A join token (`symphony-ctl token show manager|worker` on a manager).
        #[arg(long)]
        token: String,
        /// The remote address (`host:port`) of a node of the cluster.
        addr: String,
    },
    /// Leave the cluster; a leader hands over leadership first.
    Leave,
    /// After losing quorum: make this manager a one-voter cluster, keeping all its state.
    Recover {
        /// Required: this discards the other managers from the Raft group.
        #[arg(long, required = true)]
        force_new_cluster: bool,
    },
    /// Save a consistent snapshot of the cluster state.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Show this node and its cluster: role, leader, term, commit and applied index.
    Status,
    /// Read and write the replicated key-value store.
    #[command(subcommand)]
    Kv(kv::KvCommand),
    /// Show or rotate the join tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Cluster-wide settings: `cluster update --cert-expiry`.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// The cluster CA: `ca status` (which root each node's certificate is from, and when it
    /// ends).
    #[command(subcommand)]
    Ca(cluster::CaCommand),
    /// The gossip pool's encryption keys: `gossip key install|use|remove|list`.
    #[command(subcommand)]
    Gossip(gossip::GossipCommand),
    /// List and manage the cluster's nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Declare services and see their tasks: the cluster keeps them running.
    #[command(subcommand)]
    Service(Box<service::ServiceCommand>),
    /// Stream the cluster's events (node status, tasks, services, leaders) as they happen.
    Events(events::EventsArgs),
    /// Diagnostics: `debug bundle` writes a support archive with no secret in it.
    #[command(subcommand)]
    Debug(debug::DebugCommand),
    /// Print shell completions for this command line, e.g.
    /// `symphony-ctl completions bash > /etc/bash_completion.d/symphony-ctl`; needs no agent.
    Completions {
        /// bash, zsh or fish (also elvish and powershell).
        shell: clap_complete::Shell,
    },
}

/// Writes `shell`'s completion script for `symphony-ctl`, generated from the [`Cli`] definition
/// itself so that it names every command and flag this binary has.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "symphony-ctl", out);
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print the join token for a role.
    Show { role: RoleArg },
    /// Replace the join token for a role; the old one stops working at once.
    Rotate { role: RoleArg },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List every node of the cluster.
    Ls {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Show one node in detail.
    Inspect {
        node_id: u64,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Change a node's availability and labels.
    Update {
        node_id: u64,
        /// `active` (schedulable), `pause` (keeps its work, gets no new) or `drain` (work moves
        /// elsewhere).
        #[arg(long, value_parser = ["active", "pause", "drain"])]
        availability: Option<String>,
        /// Add or replace a label, `key=value`; repeatable.
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
        label_add: Vec<(String, String)>,
        /// Remove a label by key; repeatable.
        #[arg(long, value_name = "KEY")]
        label_rm: Vec<String>,
    },
    /// Make a manager that is a Raft learner a voter.
    Promote { node_id: u64 },
    /// Make a voting manager a learner.
    Demote { node_id: u64 },
    /// Remove a node; refused when it would lose quorum.
    Rm {
        node_id: u64,
        /// Remove even if the remaining managers cannot form a quorum.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Write a consistent snapshot of the running cluster to FILE. To seed a new manager from
    /// it: `symphony-agent snapshot restore FILE --config-dir DIR`.
    Save { file: PathBuf },
}

#[derive(Debug, Clone, Copy, Args)]
pub struct ReadArgs {
    /// Answer from this node's replica without confirming with the leader (may be stale).
    #[arg(long)]
    pub stale: bool,
}

impl ReadArgs {
    fn consistency(self) -> ReadConsistency {
        if self.stale {
            ReadConsistency::Stale
        } else {
            ReadConsistency::Linearizable
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Worker,
    Manager,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Worker => Role::Worker,
            RoleArg::Manager => Role::Manager,
        }
    }
}

/// A failure worth one sentence on stderr and a non-zero exit.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Failed(String),
    #[error(
        "no answer within the --timeout of {after_ms} ms; a change asked for may or may not have been made: read the state before trying again"
    )]
    TimedOut { after_ms: u64 },
    #[error("cannot write {what} to standard output: {source}")]
    Output {
        what: &'static str,
        source: std::io::Error,
    },
}

/// Runs one command and prints its result, within `--timeout` if given.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.timeout {
        // A stream asked to run for a while ends well when its time is up.
        Some(after_ms) if is_stream(&cli.command) => {
            match tokio::time::timeout(Duration::from_millis(after_ms), run_command(cli)).await {
                Ok(result) => result,
                Err(_) => Ok(()),
            }
        }
        Some(after_ms) => tokio::time::timeout(Duration::from_millis(after_ms), run_command(cli))
            .await
            .unwrap_or(Err(CliError::TimedOut { after_ms })),
        None => run_command(cli).await,
    }
}

/// On a terminal, a command that takes more than a second says it is still waiting, on one
/// line of stderr that it clears when done (a snapshot, a recovery, a membership change, a
/// `--wait`); piped, it stays quiet.
struct Progress {
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(stream: bool) -> Progress {
        use std::io::IsTerminal;
        if stream || !std::io::stderr().is_terminal() {
            return Progress { ticker: None };
        }
        let ticker = tokio::spawn(async {
            let started = tokio::time::Instant::now();
            let mut ticks =
                tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
            loop {
                ticks.tick().await;
                eprint!(
                    "\rwaiting for the agent's answer... {}s",
                    started.elapsed().as_secs()
                );
                PROGRESS_SHOWN.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Progress {
            ticker: Some(ticker),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
            clear_progress();
        }
    }
}

/// Whether a progress line is on the terminal now.
static PROGRESS_SHOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Clears the progress line, if one is shown, before anything else is printed.
fn clear_progress() {
    if PROGRESS_SHOWN.swap(false, std::sync::atomic::Ordering::Relaxed) {
        eprint!("\r\x1b[K");
    }
}

/// A line of stderr about what a long command waits for (`ca rotate`), above the progress
/// line if one is shown.
pub(crate) fn progress_line(text: &str) {
    clear_progress();
    eprintln!("{text}");
}

/// Commands that print until interrupted.
fn is_stream(command: &Command) -> bool {
    match command {
        Command::Kv(kv::KvCommand::Watch { .. }) | Command::Events(_) => true,
        Command::Service(command) => service::is_follow(command),
        _ => false,
    }
}

async fn run_command(cli: Cli) -> Result<(), CliError> {
    let _progress = Progress::start(is_stream(&cli.command));
    // The only command that talks to no agent.
    if let Command::Completions { shell } = cli.command {
        // Generated into memory first: clap_complete panics on a failed write, and a reader
        // that stops early (`| head`) closes the pipe.
        let mut script = Vec::new();
        write_completions(shell, &mut script);
        return match std::io::Write::write_all(&mut std::io::stdout().lock(), &script) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(source) => Err(CliError::Output {
                what: "the completion script",
                source,
            }),
        };
    }
    let client = Client::connect(&cli.socket_path()).await?;
    let json = cli.json;
    match cli.command {
        Command::Init {
            peers,
            join_addr,
            cert_expiry,
        } => {
            let joining = join_addr.is_some();
            let info = client.init_request(peers, join_addr, cert_expiry).await?;
            emit(
                json,
                json!({"cluster_id": info.cluster_id, "node_id": info.node_id, "raft_node_id": info.raft_node_id}),
                || {
                    if joining {
                        return format!(
                            "This node ({}) joined cluster {} as one of its first managers.\n",
                            info.node_id, info.cluster_id
                        );
                    }
                    format!(
                        "Cluster {} initialised; this node ({}) is its first manager.\n\
                         The join tokens: symphony-ctl token show worker|manager\n",
                        info.cluster_id, info.node_id
                    )
                },
            );
        }
        Command::Status => {
            let status = client.status().await?;
            emit(json, status_json(&status), || status_text(&status));
        }
        Command::Kv(command) => kv::run(&client, json, command).await?,
        Command::Service(command) => service::run(&client, json, *command).await?,
        Command::Gossip(command) => gossip::run(&client, json, command).await?,
        Command::Cluster(command) => cluster::run_cluster(&client, json, command).await?,
        Command::Ca(command) => cluster::run_ca(&client, json, command).await?,
        Command::Events(args) => events::run(&client, json, args).await?,
        Command::Debug(command) => debug::run(&client, json, command).await?,
        // Answered above, before connecting.
        Command::Completions { .. } => {}
        Command::Token(TokenCommand::Show { role }) => {
            let token = client.token_show(role.into()).await?;
            emit(
                json,
                json!({"role": token.role, "token": token.token}),
                || format!("{}\n", token.token),
            );
        }
        Command::Token(TokenCommand::Rotate { role }) => {
            let token = client.token_rotate(role.into()).await?;
            emit(
                json,
                json!({"role": token.role, "token": token.token}),
                || {
                    format!(
                        "The {} token was rotated; the old one no longer admits nodes. New token:\n{}\n",
                        token.role, token.token
                    )
                },
            );
        }
        Command::Join { token, addr } => {
            let info = client.join(token, addr).await?;
            emit(json, json!(info), || {
                format!(
                    "This node ({}) joined cluster {} as a {}.\n",
                    info.node_id, info.cluster_id, info.role
                )
            });
        }
        Command::Leave => done(json, client.leave().await?),
        Command::Recover { .. } => done(json, client.recover_force_new_cluster().await?),
        Command::Snapshot(SnapshotCommand::Save { file }) => {
            // The agent writes the file, so it must get a path that means the same to it.
            let path = std::path::absolute(&file).map_err(|error| {
                CliError::Failed(format!("cannot resolve {}: {error}", file.display()))
            })?;
            let info = client.snapshot_save(path.display().to_string()).await?;
            emit(json, json!(info), || {
                format!(
                    "Saved a snapshot at log index {} to {} ({} bytes). It holds the cluster's secrets (the CA key, the join tokens, the gossip keys): it is readable by its owner only; keep it as safe as a manager's config dir.\n",
                    info.last_log_index
                        .map_or("-".to_string(), |i| i.to_string()),
                    info.path,
                    info.bytes
                )
            });
        }
        Command::Node(NodeCommand::Inspect { node_id, read }) => {
            let node = client.node_inspect(node_id, read.consistency()).await?;
            emit(json, node_json(&node), || node_text(&node));
        }
        Command::Node(NodeCommand::Update {
            node_id,
            availability,
            label_add,
            label_rm,
        }) => {
            let node = client
                .node_update(
                    node_id,
                    availability,
                    label_add.into_iter().collect(),
                    label_rm,
                )
                .await?;
            emit(json, node_json(&node), || node_text(&node));
        }
        Command::Node(NodeCommand::Promote { node_id }) => {
            done(json, client.node_promote(node_id).await?)
        }
        Command::Node(NodeCommand::Demote { node_id }) => {
            done(json, client.node_demote(node_id).await?)
        }
        Command::Node(NodeCommand::Rm { node_id, force }) => {
            done(json, client.node_remove(node_id, force).await?)
        }
        Command::Node(NodeCommand::Ls { read }) => {
            let nodes = client.node_list(read.consistency()).await?;
            emit(
                json,
                json!(nodes.iter().map(node_json).collect::<Vec<_>>()),
                || nodes_text(&nodes),
            );
        }
    }
    Ok(())
}

fn done(json: bool, info: DoneInfo) {
    emit(json, json!({"message": info.message}), || {
        format!("{}\n", info.message)
    });
}

/// Prints `value` as JSON, or the text `human` renders.
fn emit(json: bool, value: Value, human: impl FnOnce() -> String) {
    clear_progress();
    if json {
        println!("{value}");
    } else {
        print!("{}", human());
    }
}

fn status_json(status: &StatusInfo) -> Value {
    let mut value = json!({
        "node_id": status.node_id,
        "raft_node_id": status.raft_node_id,
        "agent_version": status.agent_version,
        "initialised": status.cluster.is_some(),
    });
    if let Some(cluster) = &status.cluster {
        value["cluster"] = json!(cluster);
    }
    value
}

fn status_text(status: &StatusInfo) -> String {
    let Some(cluster) = &status.cluster else {
        return format!(
            "Node {} is not initialised: it belongs to no cluster yet.\n\
             Run `symphony-ctl init` to start a new cluster here.\n",
            status.node_id
        );
    };
    if cluster.role == Role::Worker {
        return worker_status_text(status, cluster);
    }
    // The leader by node id (what `node ls` shows) when the records name it, else by Raft id.
    let leader = match (
        cluster.leader_node_id,
        &cluster.leader_raft_id,
        &cluster.leader_remote_addr,
    ) {
        (Some(node), Some(raft), Some(addr)) => format!("{node} ({addr}), Raft node {raft}"),
        (None, Some(raft), Some(addr)) => format!("Raft node {raft} ({addr})"),
        (_, Some(raft), None) => format!("Raft node {raft}"),
        _ => "none".to_string(),
    };
    let index = |value: Option<u64>| value.map_or("-".to_string(), |v| v.to_string());
    let gossip = gossip_text(cluster);
    fields([
        ("Cluster", cluster.cluster_id.clone()),
        ("Node", status.node_id.to_string()),
        ("Raft node", status.raft_node_id.to_string()),
        ("Role", cluster.role.to_string()),
        (
            "Raft state",
            match &cluster.store_error {
                Some(error) => format!(
                    "{} — the store stopped writing ({error}); it starts again by itself once the cause is gone",
                    cluster.raft_state
                ),
                None => cluster.raft_state.clone(),
            },
        ),
        ("Leader", leader),
        ("Term", cluster.term.to_string()),
        ("Last log", index(cluster.last_log_index)),
        ("Commit", index(cluster.commit_index)),
        ("Applied", index(cluster.applied_index)),
        ("Voters", join_ids(&cluster.voters)),
        ("Learners", join_ids(&cluster.learners)),
        ("Nodes", cluster.nodes.to_string()),
        ("KV revision", cluster.kv_revision.to_string()),
        ("Gossip", gossip),
        ("Agent", status.agent_version.clone()),
    ]) + &managers_text(&cluster.managers)
}

/// `status` on a worker: its cluster, the managers it knows and which one leads.
fn worker_status_text(status: &StatusInfo, cluster: &crate::proto::ClusterStatus) -> String {
    let leader = match (&cluster.leader_node_id, &cluster.leader_remote_addr) {
        (Some(id), Some(addr)) => format!("{id} ({addr})"),
        (Some(id), None) => id.to_string(),
        _ => "unknown (no manager has answered yet)".to_string(),
    };
    let session = match (
        cluster.managers.iter().find(|manager| manager.session),
        cluster.session_age_ms,
    ) {
        (Some(manager), Some(age)) => format!(
            "with {} ({}), last answer {age} ms ago",
            manager.node_id, manager.remote_addr
        ),
        _ => "none (no manager answers)".to_string(),
    };
    let gossip = gossip_text(cluster);
    fields([
        ("Cluster", cluster.cluster_id.clone()),
        ("Node", status.node_id.to_string()),
        ("Role", cluster.role.to_string()),
        ("Leader", leader),
        ("Session", session),
        ("Gossip", gossip),
        ("Agent", status.agent_version.clone()),
    ]) + &managers_text(&cluster.managers)
}

fn gossip_text(cluster: &crate::proto::ClusterStatus) -> String {
    let sealing = match cluster.gossip_drops.as_ref().map(|drops| drops.sealing_key) {
        Some(Some(id)) => format!(", sealed with key {id}"),
        Some(None) => ", in the clear".to_string(),
        None => String::new(),
    };
    match (cluster.gossip_members, cluster.gossip_dropped) {
        (Some(members), Some(dropped)) if dropped > 0 => {
            let reasons = cluster
                .gossip_drops
                .as_ref()
                .map(drop_reasons)
                .unwrap_or_default();
            format!("{members} members alive{sealing}, {dropped} packets dropped{reasons}")
        }
        (Some(members), _) => format!("{members} members alive{sealing}"),
        (None, _) => "not gossiping".to_string(),
    }
}

/// ` (3 unauthenticated, 1 replayed)`: the non-zero reasons.
fn drop_reasons(drops: &crate::proto::GossipDrops) -> String {
    let reasons: Vec<String> = [
        (drops.unauthenticated, "unauthenticated"),
        (drops.unknown_key, "unknown key"),
        (drops.replayed, "replayed"),
        (drops.unsealed, "unsealed"),
        (drops.foreign_cluster, "other cluster"),
        (
            drops.too_short + drops.bad_magic + drops.wrong_version + drops.bad_checksum,
            "malformed",
        ),
        (drops.by_foca, "refused by foca"),
    ]
    .into_iter()
    .filter(|(count, _)| *count > 0)
    .map(|(count, reason)| format!("{count} {reason}"))
    .collect();
    if reasons.is_empty() {
        return String::new();
    }
    format!(" ({})", reasons.join(", "))
}

fn managers_text(managers: &[crate::proto::ManagerStatus]) -> String {
    if managers.is_empty() {
        return String::new();
    }
    let mut table = Table::new(["MANAGER", "ADDRESS", "LEADER", "GOSSIP"]);
    for manager in managers {
        table.row([
            manager.node_id.to_string(),
            manager.remote_addr.clone(),
            if manager.leader { "yes" } else { "" }.to_string(),
            match manager.alive {
                Some(true) => "alive",
                Some(false) => "not seen",
                None => "-",
            }
            .to_string(),
        ]);
    }
    format!("\n{}", table.render())
}

fn join_ids(ids: &[u64]) -> String {
    if ids.is_empty() {
        return "-".to_string();
    }
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn node_json(node: &NodeInfo) -> Value {
    json!(node)
}

/// `key=value` for `--label-add`.
fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("'{text}' is not KEY=VALUE")),
    }
}

fn node_text(node: &NodeInfo) -> String {
    let show = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    let labels = if node.labels.is_empty() {
        "-".to_string()
    } else {
        node.labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    fields([
        ("ID", node.node_id.to_string()),
        ("Hostname", node.hostname.clone()),
        ("Role", node.role.to_string()),
        ("Status", node.status.clone()),
        ("Availability", node.availability.clone()),
        ("Labels", labels),
        (
            "Raft node",
            show(node.raft_node_id.map(|id| id.to_string())),
        ),
        ("Raft role", show(node.raft_role.clone())),
        ("Voter", show(node.voter.map(|v| v.to_string()))),
        (
            "Matched index",
            show(node.matched_index.map(|i| i.to_string())),
        ),
        ("Lag", show(node.lag.map(|i| i.to_string()))),
        ("Reachable", show(node.reachable.map(|v| v.to_string()))),
        ("Raft address", show(node.raft_addr.clone())),
        ("Address", node.remote_addr.clone()),
        ("CPUs", node.cpus.to_string()),
        ("Tasks", node.tasks.to_string()),
        (
            "Memory",
            format!("{} MiB", node.memory_bytes / (1024 * 1024)),
        ),
        (
            "Docker engine",
            node.docker.clone().unwrap_or_else(|| "none".to_string()),
        ),
        ("Agent", node.agent_version.clone()),
        ("Joined (ms since epoch)", node.joined_at_ms.to_string()),
        (
            "Status changed (ms since epoch)",
            node.status_changed_at_ms.to_string(),
        ),
    ])
}

fn nodes_text(nodes: &[NodeInfo]) -> String {
    let mut table = Table::new([
        "ID",
        "HOSTNAME",
        "ROLE",
        "STATUS",
        "AVAILABILITY",
        "RAFT",
        "VOTER",
        "MATCHED",
        "LAG",
        "REACHABLE",
        "RAFT ADDRESS",
        "ADDRESS",
        "VERSION",
        "CHANGED",
        "TASKS",
        "LABELS",
    ]);
    let show = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
    let now_ms = now_ms();
    for node in nodes {
        table.row([
            node.node_id.to_string(),
            node.hostname.clone(),
            node.role.to_string(),
            node.status.clone(),
            node.availability.clone(),
            show(node.raft_role.clone()),
            show(node.voter.map(|v| if v { "yes" } else { "no" }.to_string())),
            show(node.matched_index.map(|i| i.to_string())),
            show(node.lag.map(|i| i.to_string())),
            show(
                node.reachable
                    .map(|v| if v { "yes" } else { "no" }.to_string()),
            ),
            show(node.raft_addr.clone()),
            node.remote_addr.clone(),
            node.agent_version.clone(),
            ago(now_ms, node.status_changed_at_ms),
            node.tasks.to_string(),
            labels_text(&node.labels),
        ]);
    }
    table.render()
}

/// Milliseconds since the Unix epoch, to say how long ago things happened.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// How long ago a status change was, for people: `4s ago`, `12m ago`, `3h ago`, `2d ago`.
fn ago(now_ms: u64, then_ms: u64) -> String {
    if then_ms > now_ms.saturating_add(1_000) {
        return "-".to_string();
    }
    if then_ms == 0 {
        return "-".to_string();
    }
    let seconds = now_ms.saturating_sub(then_ms) / 1000;
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3_600 => format!("{}m ago", seconds / 60),
        3_600..86_400 => format!("{}h ago", seconds / 3_600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "-".to_string();
    }
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// A socket that accepts connections and never says anything.
    fn silent_socket(name: &str) -> (PathBuf, tokio::task::JoinHandle<()>) {
        let path =
            std::env::temp_dir().join(format!("symphony-ctl-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        (path, holder)
    }

    #[tokio::test]
    async fn timeout_bounds_every_command_and_ends_a_stream_well() {
        let (path, holder) = silent_socket("timeout");
        let socket = path.to_str().unwrap();
        let cli = Cli::try_parse_from([
            "symphony-ctl",
            "--socket",
            socket,
            "--timeout",
            "200ms",
            "kv",
            "get",
            "k",
        ])
        .unwrap();
        assert_eq!(cli.timeout, Some(200));
        let started = std::time::Instant::now();
        let error = run(cli).await.unwrap_err();
        assert!(
            matches!(error, CliError::TimedOut { after_ms: 200 }),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let watch = Cli::try_parse_from([
            "symphony-ctl",
            "--socket",
            socket,
            "kv",
            "watch",
            "a/",
            "--timeout",
            "200ms",
        ])
        .unwrap();
        assert!(is_stream(&watch.command));
        run(watch).await.unwrap();
        assert!(Cli::try_parse_from(["symphony-ctl", "--timeout", "soon", "status"]).is_err());
        holder.abort();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn status_changes_read_as_ages() {
        assert_eq!(ago(10_000, 0), "-");
        assert_eq!(ago(10_000, 6_000), "4s ago");
        assert_eq!(ago(3_600_000, 1), "59m ago");
        assert_eq!(ago(200_000_000, 1), "2d ago");
        assert_eq!(ago(1, 5), "0s ago");
    }

    #[test]
    fn completions_name_the_subcommands() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            write_completions(shell, &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("symphony-ctl"), "{shell}: {script}");
            for subcommand in ["status", "kv", "service", "node", "completions"] {
                assert!(script.contains(subcommand), "{shell} lacks {subcommand}");
            }
        }
    }

    #[test]
    fn version_names_the_git_revision() {
        use clap::CommandFactory;
        let version = Cli::command().render_version();
        assert!(
            version.contains(&format!("(git {})", crate::GIT_REVISION)),
            "{version}"
        );
        assert!(!crate::GIT_REVISION.is_empty());
    }

    #[test]
    fn parses_the_readme_commands() {
        let cli = Cli::try_parse_from([
            "symphony-ctl",
            "--socket",
            "x.sock",
            "kv",
            "put",
            "greeting",
            "hello",
            "--if-revision",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.socket_path(), PathBuf::from("x.sock"));
        // --config-dir names the agent's config dir, whose socket is used unless --socket
        // says otherwise; without either, the default agent's.
        let by_dir =
            Cli::try_parse_from(["symphony-ctl", "--config-dir", "/n1", "status"]).unwrap();
        assert_eq!(by_dir.socket_path(), PathBuf::from("/n1/control.sock"));
        let both = Cli::try_parse_from([
            "symphony-ctl",
            "--config-dir",
            "/n1",
            "--socket",
            "x.sock",
            "status",
        ])
        .unwrap();
        assert_eq!(both.socket_path(), PathBuf::from("x.sock"));
        assert!(matches!(
            cli.command,
            Command::Kv(kv::KvCommand::Put {
                if_revision: Some(0),
                ..
            })
        ));
        let cli =
            Cli::try_parse_from(["symphony-ctl", "token", "show", "worker", "--json"]).unwrap();
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Token(TokenCommand::Show {
                role: RoleArg::Worker
            })
        ));
    }

    #[test]
    fn node_update_takes_labels_and_availability() {
        let cli = Cli::try_parse_from([
            "symphony-ctl",
            "node",
            "update",
            "7",
            "--availability",
            "drain",
            "--label-add",
            "zone=a",
            "--label-add",
            "disk=ssd",
            "--label-rm",
            "old",
        ])
        .unwrap();
        let Command::Node(NodeCommand::Update {
            node_id,
            availability,
            label_add,
            label_rm,
        }) = cli.command
        else {
            panic!("parsed as something else");
        };
        assert_eq!(node_id, 7);
        assert_eq!(availability.as_deref(), Some("drain"));
        assert_eq!(
            label_add,
            vec![("zone".into(), "a".into()), ("disk".into(), "ssd".into())]
        );
        assert_eq!(label_rm, vec!["old".to_string()]);
        assert!(
            Cli::try_parse_from([
                "symphony-ctl",
                "node",
                "update",
                "7",
                "--availability",
                "gone"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "symphony-ctl",
                "node",
                "update",
                "7",
                "--label-add",
                "nokey"
            ])
            .is_err()
        );
    }

    #[test]
    fn uninitialised_status_says_so() {
        let status = StatusInfo {
            node_id: 5,
            raft_node_id: 6,
            agent_version: "0.1.0".into(),
            cluster: None,
        };
        assert!(status_text(&status).contains("not initialised"));
        assert_eq!(status_json(&status)["initialised"], json!(false));
    }
}
