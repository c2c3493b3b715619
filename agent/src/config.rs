//! The agent's command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// One Symphony agent: runs on every machine, as a manager or a worker.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "symphony-agent",
    version = symphony_ctl::VERSION_WITH_REVISION,
    about = "The Symphony agent: one binary on every machine, manager or worker"
)]
pub struct AgentArgs {
    /// Everything this node owns: key.json, the Raft store, the control socket.
    #[arg(
        long,
        global = true,
        env = "SYMPHONY_CONFIG_DIR",
        default_value = symphony_ctl::DEFAULT_CONFIG_DIR
    )]
    pub config_dir: PathBuf,

    /// Where this node serves Raft RPCs to the other managers (TCP).
    #[arg(long, global = true, default_value = "127.0.0.1:15760")]
    pub listen_raft_addr: SocketAddr,

    /// Where this node serves the node-to-node API: joins, forwarded writes (TCP).
    #[arg(long, global = true, default_value = "127.0.0.1:27242")]
    pub listen_remote_addr: SocketAddr,

    /// Where this node gossips membership and liveness (UDP); defaults to the remote
    /// address's ip:port (UDP and TCP ports do not collide).
    #[arg(long, global = true)]
    pub listen_gossip_addr: Option<SocketAddr>,

    /// The IP other nodes use to reach this one (for NAT and containers); defaults to the
    /// listen IP.
    #[arg(long, global = true)]
    pub advertise_addr: Option<std::net::IpAddr>,

    /// Gossip timings: `lan` for one data centre, `wan` across regions. The
    /// `--gossip-*-ms` flags override single timings of the profile.
    #[arg(long, value_enum, default_value_t = GossipProfile::Lan)]
    pub gossip_profile: GossipProfile,

    /// How often each node probes one other member, in milliseconds.
    #[arg(long)]
    pub gossip_probe_period_ms: Option<u64>,

    /// How long a direct probe may take before indirect probes are tried, in milliseconds
    /// (less than the probe period).
    #[arg(long)]
    pub gossip_probe_rtt_ms: Option<u64>,

    /// How long a suspected member has to refute the suspicion before it is declared down,
    /// in milliseconds.
    #[arg(long)]
    pub gossip_suspect_ms: Option<u64>,

    /// On the leader: how long gossip must have said a node is down before the cluster state
    /// says so, in milliseconds (absorbs flaps).
    #[arg(long, default_value_t = 1_000)]
    pub liveness_grace_ms: u64,

    /// On the leader: how long a node must be down before its tasks are replaced on other
    /// nodes, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub node_loss_grace_ms: u64,

    /// How long a worker that reaches no manager keeps running the tasks of services created
    /// with `--on-isolation stop`, in milliseconds; the leader replaces such a worker's tasks
    /// only after this (and a margin) has passed, so one slot never runs twice. Give every
    /// node the same value.
    #[arg(long, default_value_t = 10_000)]
    pub isolation_lease_ms: u64,

    /// The Docker engine's socket, for tasks of the docker driver. A node where no engine
    /// answers there at start-up reports that it has none and is given no docker tasks.
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,

    /// Each task's output is kept under this many bytes (and as much again in the rotated
    /// file).
    #[arg(long, default_value_t = 4 << 20)]
    pub task_log_max_bytes: u64,

    /// A label this node reports when it joins, as key=value; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Serve Prometheus metrics (text format) on `GET /metrics` at this address, e.g.
    /// `127.0.0.1:9100` (port 0: one the OS picks, logged at start-up); none by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Log filter, e.g. `info` or `symphony_agent=debug,openraft=warn`; `RUST_LOG` is used when
    /// this is not given.
    #[arg(long)]
    pub log_level: Option<String>,

    /// `text` for people, `json` (one object per line) for machines.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Take a snapshot and purge the Raft log every this many entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_interval: u64,

    /// Cluster events a manager keeps in memory for `symphony-ctl events --since`.
    #[arg(long, default_value_t = symphony_consensus::events::DEFAULT_CAPACITY)]
    pub events_kept: usize,

    /// How often the Raft leader sends heartbeats, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub heartbeat_interval_ms: u64,

    /// A follower that hears no leader for a random time between this and twice this (in
    /// milliseconds) starts an election. Lower means faster failover, higher tolerates slower
    /// networks and machines: raise it (e.g. 1000) across data centres.
    #[arg(long, default_value_t = 150)]
    pub election_timeout_ms: u64,

    /// Failpoints to read at every check (see `symphony_consensus::failpoint`); for tests and
    /// chaos runs, and only in debug builds.
    #[arg(long, hide = true)]
    pub failpoints_file: Option<PathBuf>,

    /// Without a command the agent runs; the commands are offline tools for its config dir.
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AgentCommand {
    /// Offline snapshot tools (the agent must not be running on the config dir).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// The lease guard of one docker task of an `--on-isolation stop` service; the agent starts
    /// it, never an operator.
    #[command(hide = true)]
    ContainerGuard {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        docker_socket: PathBuf,
        #[arg(long)]
        container: String,
        #[arg(long, default_value_t = 10_000)]
        stop_grace_ms: u64,
    },
    /// The supervisor of one task's process; the agent starts it, never an operator.
    #[command(hide = true)]
    TaskShim {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 4 << 20)]
        log_max_bytes: u64,
        /// How long the task has between SIGTERM and SIGKILL when its lease runs out.
        #[arg(long, default_value_t = 10_000)]
        stop_grace_ms: u64,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotCommand {
    /// Seed a fresh manager in --config-dir from a file written by `symphony-ctl snapshot
    /// save`; then start the agent on that dir: it is a one-manager cluster with that state.
    Restore { file: PathBuf },
}

/// A node label given as `key=value`.
fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("a label is key=value, not {text:?}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GossipProfile {
    Lan,
    Wan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn defaults_match_the_design() {
        AgentArgs::command().debug_assert();
        let args = AgentArgs::try_parse_from(["symphony-agent", "--config-dir", "x"]).unwrap();
        assert_eq!(args.listen_raft_addr.to_string(), "127.0.0.1:15760");
        assert_eq!(args.listen_remote_addr.to_string(), "127.0.0.1:27242");
        assert_eq!(args.snapshot_interval, 10_000);
        assert!(args.heartbeat_interval_ms * 3 <= args.election_timeout_ms);
        assert_eq!(args.log_format, LogFormat::Text);
        assert_eq!(args.gossip_profile, GossipProfile::Lan);
        assert_eq!(args.listen_gossip_addr, None);
    }

    #[test]
    fn the_default_socket_is_where_symphony_ctl_looks() {
        let args = AgentArgs::try_parse_from(["symphony-agent"]).unwrap();
        assert_eq!(
            args.config_dir.join(crate::run::CONTROL_SOCKET),
            std::path::PathBuf::from(symphony_ctl::DEFAULT_SOCKET)
        );
    }

    #[test]
    fn labels_are_key_value_pairs() {
        let args =
            AgentArgs::try_parse_from(["symphony-agent", "--label", "zone=a", "--label", "disk="])
                .unwrap();
        assert_eq!(
            args.labels,
            vec![("zone".into(), "a".into()), ("disk".into(), String::new())]
        );
        assert!(AgentArgs::try_parse_from(["symphony-agent", "--label", "=x"]).is_err());
        assert!(AgentArgs::try_parse_from(["symphony-agent", "--label", "zone"]).is_err());
    }
}
