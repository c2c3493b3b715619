//! The `testnet` command line: it parses, and converts what it parsed into the options each
//! library module owns ([`KvOptions`], [`UpOptions`], [`ChaosCommand`], ...). Nothing outside
//! this file sees a clap type.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::bench::failover::FailoverOptions;
use crate::bench::fleet::FleetOptions;
use crate::bench::gossip::{GossipOptions, ProfileKind};
use crate::bench::kv::{KvOptions, Op, Target};
use crate::bench::schedule::ScheduleOptions;
use crate::bench::start::StartOptions;
use crate::bench::update::UpdateOptions;
use crate::bench::watch::WatchOptions;
use crate::chaos::ChaosOptions;
use crate::chaos::command::ChaosCommand;
use crate::lab::command::{Action, NodeOp};
use crate::lab::{Addressing, LabError, Lifetime, UpOptions};

/// Local Symphony clusters, end-to-end checks and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "testnet", version = symphony_ctl::VERSION_WITH_REVISION, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmarks: each prints human lines and, as its last line, one JSON object.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// A cluster that outlives the command: up, status, faults, partitions, down.
    #[command(flatten)]
    Lab(LabCommand),
    /// Concurrent KV clients against a fresh testnet while faults are injected, then a
    /// linearizability check of everything they saw; the last line is one JSON object, and a
    /// failing run exits non-zero.
    Chaos(ChaosArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// How long the clients run and faults are injected (e.g. 60s, 2m); recovery and the check
    /// come after.
    #[arg(long, default_value = "60s", value_parser = crate::chaos::parse_duration)]
    pub duration: std::time::Duration,

    /// The seed of every random choice; the same seed repeats a run as far as timing allows
    /// (default: from the clock, and printed).
    #[arg(long)]
    pub seed: Option<u64>,

    /// The faults to inject, comma-separated. Every kind by default; those this machine
    /// cannot make (disk-full without root, clock without libfaketime or on docker) are
    /// skipped with a note.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kill,pause,partition,restart,membership,disk-full,clock,slow-disk,failpoint"
    )]
    pub faults: Vec<crate::chaos::FaultKind>,

    /// How nodes run: `local` processes or `docker` containers.
    #[arg(long, value_enum, default_value_t = crate::lab::BackendKind::Local)]
    pub backend: crate::lab::BackendKind,

    #[arg(long, default_value_t = 3)]
    pub managers: usize,

    #[arg(long, default_value_t = 2)]
    pub workers: usize,

    /// Concurrent KV clients.
    #[arg(long, default_value_t = 5)]
    pub clients: u32,

    /// Keys the clients share (fresh ones, unique to the run).
    #[arg(long, default_value_t = 8)]
    pub keys: usize,

    /// How long one operation may take before it counts as indeterminate.
    #[arg(long, default_value_t = 2_000)]
    pub op_timeout_ms: u64,

    /// Keep the artifacts here: the report (report.json) and the agents' logs (logs/); the
    /// testnet itself runs in DIR/lab and is taken down at the end. Default: a temp dir.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Where the report goes when the run fails (default: DIR/report.json with --dir, else
    /// ./chaos-seed<SEED>.json, with the agents' logs in ./chaos-seed<SEED>.logs/).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,

    /// The local backend's addresses, 127.A.B.1, 127.A.B.2, ... (the docker backend picks a
    /// free private /24 for its network instead).
    #[arg(long, default_value = crate::chaos::options::DEFAULT_SUBNET)]
    pub subnet: String,

    /// One more flag for every agent; repeatable. Fast gossip and liveness timings are added
    /// unless given here (see `chaos::options::FAST_LIVENESS_FLAGS`).
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    pub agent_arg: Vec<String>,

    /// Passed to every agent as --log-level.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Seconds a killed, paused or cut-off worker may take to be marked down.
    #[arg(long, default_value_t = 20)]
    pub worker_down_timeout_s: u64,

    /// Seconds the cluster may take to be whole again after a fault, and after the run.
    #[arg(long, default_value_t = 60)]
    pub recovery_timeout_s: u64,
}

/// The cluster-lab commands (see `symphony_testnet::lab`).
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Start managers and workers as detached agents and form one cluster; prints a table and
    /// how to reach each node. Builds nothing: runs the built symphony-agent.
    Up(UpArgs),
    /// Each node: role, process (running/paused/killed), pid, address, Raft state, leader,
    /// status in the cluster.
    Status(LabStatusArgs),
    /// SIGKILL a node.
    Kill(LabNodeArgs),
    /// SIGSTOP a node: it stops answering anything.
    Pause(LabNodeArgs),
    /// SIGCONT a paused node.
    Resume(LabNodeArgs),
    /// Kill a node (if it runs) and start it again on the same config dir.
    Restart(LabNodeArgs),
    /// Cut links: `partition manager-1` isolates one node; `partition manager-1,worker-1 /
    /// manager-2,manager-3` splits into sides. Replaces any earlier partition. Needs root and
    /// nft.
    Partition(PartitionArgs),
    /// Remove the partition.
    Heal(LabDirArgs),
    /// Stop every node, heal, and remove everything `up` created.
    Down(LabDirArgs),
}

/// Where a testnet's state lives.
#[derive(Debug, Clone, Args)]
pub struct LabDirArgs {
    /// The state dir: state.json and one dir per node.
    #[arg(long, env = "SYMPHONY_TESTNET_DIR", default_value = ".testnet")]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub dir: LabDirArgs,

    /// Managers (Raft voters; an even count keeps one as a learner).
    #[arg(long, default_value_t = 3)]
    pub managers: usize,

    /// Workers.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,

    /// How nodes run: `local` processes on loopback addresses, or `docker` containers.
    #[arg(long, value_enum, default_value_t = crate::lab::BackendKind::Local)]
    pub backend: crate::lab::BackendKind,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,

    /// The local backend's node addresses: 127.A.B.1, 127.A.B.2, ... (use another for a second
    /// testnet). The docker backend ignores it: it picks a free private /24 for its network.
    #[arg(long, default_value = "127.77.0")]
    pub subnet: String,

    /// Passed to every agent as --log-level.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// One more flag for every agent, e.g. --agent-arg=--snapshot-interval=100; repeatable.
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    pub agent_arg: Vec<String>,

    /// Seconds a node may take to answer, and the cluster to form.
    #[arg(long, default_value_t = 60)]
    pub timeout_s: u64,

    /// Print the final status as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LabStatusArgs {
    #[command(flatten)]
    pub dir: LabDirArgs,

    /// JSON for scripts instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LabNodeArgs {
    #[command(flatten)]
    pub dir: LabDirArgs,

    /// The node, e.g. manager-2 or worker-3.
    pub node: String,
}

#[derive(Debug, Clone, Args)]
pub struct PartitionArgs {
    #[command(flatten)]
    pub dir: LabDirArgs,

    /// Sides separated by `/`, nodes on a side by `,`; one side means "against all others".
    #[arg(required = true, num_args = 1..)]
    pub sides: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Replicated KV writes: concurrent clients issue puts until OPS writes were attempted.
    Kv(KvBenchArgs),
    /// Leader failover: kill -9 the leader of three under a steady write load and measure how
    /// long writes are unavailable.
    Failover(FailoverBenchArgs),
    /// Gossip at scale: N foca members simulated in this process on virtual time over a lossy
    /// virtual network (join and crash spread, traffic, false downs).
    Gossip(GossipBenchArgs),
    /// A real fleet on loopback: three managers and N worker agents; times to form, to see a
    /// join and a kill -9 everywhere, worker memory and the fleet's idle CPU.
    Fleet(FleetBenchArgs),
    /// A rolling update of a service of many process tasks: how long it takes and how far and
    /// how long the running count dips below the service's count.
    Update(UpdateBenchArgs),
    /// New services' tasks on real agents: p50/p99 from `service create` to each task running.
    Start(StartBenchArgs),
    /// Many tasks placed by three real managers on simulated workers in this process (they
    /// join, hold sessions and report every assigned task running at once): placements per
    /// second, time until all run, the leader's CPU and memory.
    Schedule(ScheduleBenchArgs),
    /// `kv watch` at many watchers: p50/p99 from a put to its delivery, and the managers'
    /// memory.
    Watch(WatchBenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct WatchBenchArgs {
    /// Managers, each serving its share of the watchers.
    #[arg(long, default_value_t = 3)]
    pub managers: usize,

    /// Watch streams on the prefix `bench/`.
    #[arg(long, default_value_t = 1_000)]
    pub watchers: usize,

    /// Control connections the watchers share, spread over the managers.
    #[arg(long, default_value_t = 20)]
    pub connections: usize,

    /// Puts, one after the other, through the leader.
    #[arg(long, default_value_t = 200)]
    pub puts: usize,

    /// Bytes of each put's value.
    #[arg(long, default_value_t = 100)]
    pub value_bytes: usize,

    /// Seconds forming, opening the watches and delivering may each take.
    #[arg(long, default_value_t = 120)]
    pub timeout_s: u64,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
}

impl From<WatchBenchArgs> for WatchOptions {
    fn from(args: WatchBenchArgs) -> WatchOptions {
        WatchOptions {
            managers: args.managers,
            watchers: args.watchers,
            connections: args.connections,
            puts: args.puts,
            value_bytes: args.value_bytes,
            timeout_s: args.timeout_s,
            agent_bin: args.agent_bin,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ScheduleBenchArgs {
    /// Simulated workers, in this process.
    #[arg(long, default_value_t = 1_000)]
    pub workers: usize,

    /// Replicas of the one service.
    #[arg(long, default_value_t = 100_000)]
    pub tasks: u32,

    /// Real managers (agent processes).
    #[arg(long, default_value_t = 3)]
    pub managers: usize,

    /// Joins in flight at once.
    #[arg(long, default_value_t = 64)]
    pub join_concurrency: usize,

    /// Seconds forming, joining and the run may each take.
    #[arg(long, default_value_t = 600)]
    pub timeout_s: u64,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,

    /// Passed to every manager as --log-level.
    #[arg(long, default_value = "warn")]
    pub log_level: String,

    /// Keep the managers' dirs (and logs) under this dir instead of in a temp dir removed at
    /// the end.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

impl From<ScheduleBenchArgs> for ScheduleOptions {
    fn from(args: ScheduleBenchArgs) -> ScheduleOptions {
        ScheduleOptions {
            workers: args.workers,
            tasks: args.tasks,
            managers: args.managers,
            join_concurrency: args.join_concurrency,
            timeout_s: args.timeout_s,
            agent_bin: args.agent_bin,
            log_level: args.log_level,
            work_dir: args.work_dir,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct StartBenchArgs {
    /// Workers beside the one manager.
    #[arg(long, default_value_t = 10)]
    pub workers: usize,

    /// Tasks of each trial's service.
    #[arg(long, default_value_t = 100)]
    pub tasks: u32,

    /// Services created one after the other.
    #[arg(long, default_value_t = 3)]
    pub trials: usize,

    /// Seconds forming and each trial may take.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
}

impl From<StartBenchArgs> for StartOptions {
    fn from(args: StartBenchArgs) -> StartOptions {
        StartOptions {
            workers: args.workers,
            tasks: args.tasks,
            trials: args.trials,
            timeout_s: args.timeout_s,
            agent_bin: args.agent_bin,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct UpdateBenchArgs {
    /// Tasks of the service.
    #[arg(long, default_value_t = 100)]
    pub tasks: u32,

    /// Workers beside the one manager (which runs tasks too).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,

    /// Slots replaced at once.
    #[arg(long, default_value_t = 10)]
    pub parallelism: u32,

    /// How long a new task must run before its slot counts as done, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub monitor_ms: u64,

    /// stop-first or start-first.
    #[arg(long, default_value = "stop-first")]
    pub order: String,

    /// How often the tasks are polled during the update, in milliseconds.
    #[arg(long, default_value_t = 50)]
    pub poll_ms: u64,

    /// Seconds forming, starting the tasks and the update may each take.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
}

impl From<UpdateBenchArgs> for UpdateOptions {
    fn from(args: UpdateBenchArgs) -> UpdateOptions {
        UpdateOptions {
            tasks: args.tasks,
            workers: args.workers,
            parallelism: args.parallelism,
            monitor_ms: args.monitor_ms,
            order: args.order,
            poll_ms: args.poll_ms,
            timeout_s: args.timeout_s,
            agent_bin: args.agent_bin,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct KvBenchArgs {
    /// How many managers the cluster has; more than one are formed with a static bootstrap
    /// (`init --peers`).
    #[arg(long, default_value_t = 1)]
    pub managers: usize,

    /// Which managers the clients write through: `all` spreads them round-robin over every
    /// manager's control socket (followers forward to the leader), `leader` puts them all on
    /// the leader.
    #[arg(long, value_enum, default_value_t = Target::All)]
    pub target: Target,

    /// How nodes run: `local` processes on 127.0.0.1, or `docker` containers.
    #[arg(long, value_enum, default_value_t = crate::lab::BackendKind::Local)]
    pub backend: crate::lab::BackendKind,

    /// Concurrent clients, each with its own control connection.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,

    /// Measured operations, in total over all clients.
    #[arg(long, default_value_t = 10_000)]
    pub ops: u64,

    /// What the clients do: `put` (a new key each), `get` (linearizable reads of keys
    /// written before the measurement, as etcd's benchmark reads), or `mixed` (each
    /// operation a get with probability `--read-ratio`, else a put).
    #[arg(long, value_enum, default_value_t = Op::Put)]
    pub op: Op,

    /// For `--op get` and `mixed`: how many keys are written first and read at random.
    #[arg(long, default_value_t = 2_000)]
    pub keys: u64,

    /// For `--op mixed`: the share of operations that are reads, from 0 to 1.
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,

    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,

    /// Unmeasured writes before the measurement, to warm up the agent and its store.
    #[arg(long, default_value_t = 200)]
    pub warmup: u64,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,

    /// Passed to the agent: take a snapshot every this many entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_interval: u64,
}

#[derive(Debug, Clone, Args)]
pub struct FailoverBenchArgs {
    /// How many times the leader is killed (and restarted).
    #[arg(long, default_value_t = 5)]
    pub trials: usize,

    /// How nodes run: `local` processes on 127.0.0.1, or `docker` containers.
    #[arg(long, value_enum, default_value_t = crate::lab::BackendKind::Local)]
    pub backend: crate::lab::BackendKind,

    /// Concurrent writers, spread over the two followers; after a kill each retries through the
    /// surviving managers.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,

    /// Bytes per value.
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,

    /// Acknowledged writes of the load in each trial before the leader is killed.
    #[arg(long, default_value_t = 200)]
    pub writes_before_kill: u64,

    /// How long, in seconds, writes may stay unavailable after a kill before the benchmark
    /// gives up.
    #[arg(long, default_value_t = 30)]
    pub recovery_timeout_s: u64,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,

    /// Passed to the agents: take a snapshot every this many entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_interval: u64,
}

#[derive(Debug, Clone, Args)]
pub struct GossipBenchArgs {
    /// Members of the simulated cluster (also the profile's expected cluster size).
    #[arg(long, default_value_t = 1_000)]
    pub members: usize,

    /// Probability that the virtual network drops a packet, in [0, 1).
    #[arg(long, default_value_t = 0.05)]
    pub loss: f64,

    /// Seed of everything random in the run; the same seed gives the same figures.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Simulated minutes of steady state over which traffic and false downs are measured.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,

    /// The timing profile under test.
    #[arg(long, value_enum, default_value_t = ProfileKind::Lan)]
    pub profile: ProfileKind,

    /// How many joins and crashes are timed (one after the other, before the steady state);
    /// each is one sample of a random process, so the worst of a few is reported too.
    #[arg(long, default_value_t = 3)]
    pub trials: usize,

    /// Threads that fill the members' views before the run (default: every core); the run
    /// itself is sequential and the figures do not depend on this.
    #[arg(long)]
    pub threads: Option<usize>,

    /// Seal every packet as agents do (XChaCha20-Poly1305 and the replay guard): the bytes
    /// include the sealed overhead, and the run costs the CPU sealing costs.
    #[arg(long)]
    pub sealed: bool,
}

#[derive(Debug, Clone, Args)]
pub struct FleetBenchArgs {
    /// Worker agents of the fleet.
    #[arg(long, default_value_t = 150)]
    pub workers: usize,

    /// Managers, formed with a static bootstrap before the workers start.
    #[arg(long, default_value_t = 3)]
    pub managers: usize,

    /// Joins in flight at once while the fleet forms.
    #[arg(long, default_value_t = 32)]
    pub join_concurrency: usize,

    /// Join-then-kill trials after the idle measurement; each kills one original worker.
    #[arg(long, default_value_t = 3)]
    pub trials: usize,

    /// Pause between two rounds of `status` calls to every agent, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub poll_ms: u64,

    /// Seconds the formed fleet is left alone before the idle measurement.
    #[arg(long, default_value_t = 10)]
    pub settle_s: u64,

    /// Seconds over which the fleet's idle CPU is measured (nothing polls meanwhile).
    #[arg(long, default_value_t = 20)]
    pub idle_window_s: u64,

    /// Seconds any one phase (forming, a join, a kill) may take before the benchmark gives up.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,

    /// Seconds the formed fleet's gossip may take to converge (every agent sees every member);
    /// agents still short of the full view afterwards are left out of the join and kill
    /// measurements, and the benchmark goes on.
    #[arg(long, default_value_t = 300)]
    pub converge_timeout_s: u64,

    /// Stop the fleet (and fail) when the machine has less than this much available memory,
    /// in MiB, before the OOM killer picks a victim.
    #[arg(long, default_value_t = 2048)]
    pub min_available_mib: u64,

    /// The symphony-agent binary (default: $SYMPHONY_AGENT_BIN, or next to this binary).
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,

    /// One more flag for every agent, e.g. --agent-arg=--liveness-grace-ms=500; repeatable.
    /// Without it the agents run with production defaults.
    #[arg(long, value_name = "FLAG", allow_hyphen_values = true)]
    pub agent_arg: Vec<String>,

    /// Passed to every agent as --log-level.
    #[arg(long, default_value = "warn")]
    pub log_level: String,

    /// Keep every agent's dir (and log) under this dir instead of in temp dirs removed at the
    /// end.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

// ----- into the library's options ---------------------------------------------------------

impl From<KvBenchArgs> for KvOptions {
    fn from(args: KvBenchArgs) -> KvOptions {
        KvOptions {
            managers: args.managers,
            backend: args.backend,
            target: args.target,
            clients: args.clients,
            ops: args.ops,
            op: args.op,
            keys: args.keys,
            read_ratio: args.read_ratio,
            value_size: args.value_size,
            warmup: args.warmup,
            agent_bin: args.agent_bin,
            snapshot_interval: args.snapshot_interval,
        }
    }
}

impl From<FailoverBenchArgs> for FailoverOptions {
    fn from(args: FailoverBenchArgs) -> FailoverOptions {
        FailoverOptions {
            trials: args.trials,
            backend: args.backend,
            clients: args.clients,
            value_size: args.value_size,
            writes_before_kill: args.writes_before_kill,
            recovery_timeout_s: args.recovery_timeout_s,
            agent_bin: args.agent_bin,
            snapshot_interval: args.snapshot_interval,
        }
    }
}

impl From<GossipBenchArgs> for GossipOptions {
    fn from(args: GossipBenchArgs) -> GossipOptions {
        GossipOptions {
            members: args.members,
            loss: args.loss,
            seed: args.seed,
            minutes: args.minutes,
            profile: args.profile,
            trials: args.trials,
            threads: args.threads,
            sealed: args.sealed,
        }
    }
}

impl From<FleetBenchArgs> for FleetOptions {
    fn from(args: FleetBenchArgs) -> FleetOptions {
        FleetOptions {
            workers: args.workers,
            managers: args.managers,
            join_concurrency: args.join_concurrency,
            trials: args.trials,
            poll_ms: args.poll_ms,
            settle_s: args.settle_s,
            idle_window_s: args.idle_window_s,
            timeout_s: args.timeout_s,
            converge_timeout_s: args.converge_timeout_s,
            min_available_mib: args.min_available_mib,
            agent_bin: args.agent_bin,
            agent_args: args.agent_arg,
            log_level: args.log_level,
            work_dir: args.work_dir,
        }
    }
}

impl TryFrom<UpArgs> for UpOptions {
    type Error = LabError;

    fn try_from(args: UpArgs) -> Result<UpOptions, LabError> {
        Ok(UpOptions {
            dir: args.dir.dir,
            managers: args.managers,
            workers: args.workers,
            backend: args.backend,
            agent_bin: args.agent_bin,
            subnet: args.subnet.parse()?,
            // Nodes on addresses of their own (partitions need that) that outlive `up`.
            addressing: Addressing::Subnet,
            lifetime: Lifetime::Detached,
            log_level: args.log_level,
            agent_args: args.agent_arg,
            start_timeout: Duration::from_secs(args.timeout_s),
            form_timeout: Duration::from_secs(args.timeout_s),
            disk_mb: None,
        })
    }
}

impl LabNodeArgs {
    fn into_action(self, op: NodeOp) -> Action {
        Action::Node {
            dir: self.dir.dir,
            node: self.node,
            op,
        }
    }
}

impl TryFrom<LabCommand> for Action {
    type Error = LabError;

    fn try_from(command: LabCommand) -> Result<Action, LabError> {
        Ok(match command {
            LabCommand::Up(args) => Action::Up {
                json: args.json,
                options: args.try_into()?,
            },
            LabCommand::Status(args) => Action::Status {
                dir: args.dir.dir,
                json: args.json,
            },
            LabCommand::Kill(args) => args.into_action(NodeOp::Kill),
            LabCommand::Pause(args) => args.into_action(NodeOp::Pause),
            LabCommand::Resume(args) => args.into_action(NodeOp::Resume),
            LabCommand::Restart(args) => args.into_action(NodeOp::Restart),
            LabCommand::Partition(args) => Action::Partition {
                dir: args.dir.dir,
                sides: args.sides,
            },
            LabCommand::Heal(args) => Action::Heal { dir: args.dir },
            LabCommand::Down(args) => Action::Down { dir: args.dir },
        })
    }
}

impl TryFrom<ChaosArgs> for ChaosCommand {
    type Error = LabError;

    fn try_from(args: ChaosArgs) -> Result<ChaosCommand, LabError> {
        let run = ChaosOptions {
            duration: args.duration,
            faults: args.faults,
            backend: args.backend,
            managers: args.managers,
            workers: args.workers,
            clients: args.clients,
            keys: args.keys,
            agent_bin: args.agent_bin,
            subnet: args.subnet.parse()?,
            agent_args: crate::chaos::options::agent_args(&args.agent_arg),
            log_level: args.log_level,
            op_timeout: Duration::from_millis(args.op_timeout_ms),
            worker_down_timeout: Duration::from_secs(args.worker_down_timeout_s),
            recovery_timeout: Duration::from_secs(args.recovery_timeout_s),
            // The seed and the lab dir are the command's to settle (see ChaosCommand); the
            // rest has no flag.
            ..ChaosOptions::new(args.seed.unwrap_or_default(), PathBuf::new())
        };
        Ok(ChaosCommand {
            seed: args.seed,
            dir: args.dir,
            out: args.out,
            run,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Without flags, each benchmark gets its library defaults: the two lists agree.
    #[test]
    fn bench_flags_default_to_the_library_defaults() {
        let bench = |name: &str| match Cli::try_parse_from(["testnet", "bench", name])
            .unwrap()
            .command
        {
            Command::Bench(bench) => bench,
            other => panic!("parsed as {other:?}"),
        };
        match bench("kv") {
            BenchCommand::Kv(args) => assert_eq!(KvOptions::from(args), KvOptions::default()),
            other => panic!("parsed as {other:?}"),
        }
        match bench("failover") {
            BenchCommand::Failover(args) => {
                assert_eq!(FailoverOptions::from(args), FailoverOptions::default());
            }
            other => panic!("parsed as {other:?}"),
        }
        match bench("gossip") {
            BenchCommand::Gossip(args) => {
                assert_eq!(GossipOptions::from(args), GossipOptions::default());
            }
            other => panic!("parsed as {other:?}"),
        }
        match bench("fleet") {
            BenchCommand::Fleet(args) => {
                assert_eq!(FleetOptions::from(args), FleetOptions::default());
            }
            other => panic!("parsed as {other:?}"),
        }
        match bench("start") {
            BenchCommand::Start(args) => {
                assert_eq!(StartOptions::from(args), StartOptions::default());
            }
            other => panic!("parsed as {other:?}"),
        }
        match bench("schedule") {
            BenchCommand::Schedule(args) => {
                assert_eq!(ScheduleOptions::from(args), ScheduleOptions::default());
            }
            other => panic!("parsed as {other:?}"),
        }
        match bench("watch") {
            BenchCommand::Watch(args) => {
                assert_eq!(WatchOptions::from(args), WatchOptions::default());
            }
            other => panic!("parsed as {other:?}"),
        }
        match bench("update") {
            BenchCommand::Update(args) => {
                assert_eq!(UpdateOptions::from(args), UpdateOptions::default());
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn lab_and_chaos_commands_convert() {
        let cli = Cli::try_parse_from(["testnet", "up", "--subnet", "127.77.9"]).unwrap();
        let Command::Lab(command) = cli.command else {
            panic!("not a lab command");
        };
        match Action::try_from(command).unwrap() {
            Action::Up { options, json } => {
                assert_eq!(options.subnet.to_string(), "127.77.9");
                assert_eq!(options.addressing, Addressing::Subnet);
                assert_eq!(options.lifetime, Lifetime::Detached);
                assert!(!json);
            }
            other => panic!("converted to {other:?}"),
        }
        let cli = Cli::try_parse_from(["testnet", "up", "--subnet", "10.0.0"]).unwrap();
        let Command::Lab(command) = cli.command else {
            panic!("not a lab command");
        };
        assert!(Action::try_from(command).is_err(), "a subnet off loopback");
        let cli =
            Cli::try_parse_from(["testnet", "chaos", "--seed", "7", "--clients", "2"]).unwrap();
        let Command::Chaos(args) = cli.command else {
            panic!("not chaos");
        };
        let command = ChaosCommand::try_from(args).unwrap();
        assert_eq!((command.seed, command.run.clients), (Some(7), 2));
        let defaults = ChaosOptions::new(7, PathBuf::new());
        assert_eq!(command.run.agent_args, defaults.agent_args);
        assert_eq!(command.run.subnet, defaults.subnet);
        assert_eq!(command.run.duration, defaults.duration);
    }

    #[test]
    fn parses_the_fleet_bench() {
        let cli = Cli::try_parse_from([
            "testnet",
            "bench",
            "fleet",
            "--workers",
            "500",
            "--agent-arg=--liveness-grace-ms=500",
            "--agent-arg",
            "--gossip-probe-period-ms=200",
        ])
        .unwrap();
        match cli.command {
            Command::Bench(BenchCommand::Fleet(args)) => {
                assert_eq!((args.workers, args.managers), (500, 3));
                assert_eq!((args.join_concurrency, args.trials), (32, 3));
                assert_eq!(
                    args.agent_arg,
                    ["--liveness-grace-ms=500", "--gossip-probe-period-ms=200"]
                );
                assert_eq!(args.log_level, "warn");
                assert_eq!(args.work_dir, None);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["testnet", "bench", "fleet"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Bench(BenchCommand::Fleet(FleetBenchArgs {
                workers: 150,
                idle_window_s: 20,
                ..
            }))
        ));
    }

    #[test]
    fn parses_the_bench_commands() {
        let cli = Cli::try_parse_from(["testnet", "bench", "kv", "--managers", "3"]).unwrap();
        match cli.command {
            Command::Bench(BenchCommand::Kv(args)) => {
                assert_eq!(args.managers, 3);
                assert_eq!(args.target, Target::All);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["testnet", "bench", "kv", "--target", "leader"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Bench(BenchCommand::Kv(KvBenchArgs {
                target: Target::Leader,
                ..
            }))
        ));
        let cli = Cli::try_parse_from(["testnet", "bench", "failover", "--trials", "5"]).unwrap();
        match cli.command {
            Command::Bench(BenchCommand::Failover(args)) => {
                assert_eq!((args.trials, args.clients), (5, 8));
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "testnet",
            "bench",
            "gossip",
            "--members",
            "10000",
            "--loss",
            "0.05",
            "--seed",
            "9",
            "--minutes",
            "2.5",
            "--profile",
            "wan",
        ])
        .unwrap();
        match cli.command {
            Command::Bench(BenchCommand::Gossip(args)) => {
                assert_eq!((args.members, args.seed, args.threads), (10_000, 9, None));
                assert_eq!(args.trials, 3);
                assert_eq!((args.loss, args.minutes), (0.05, 2.5));
                assert_eq!(args.profile, ProfileKind::Wan);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["testnet", "bench", "gossip"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Bench(BenchCommand::Gossip(GossipBenchArgs {
                members: 1_000,
                profile: ProfileKind::Lan,
                ..
            }))
        ));
    }
}

#[cfg(test)]
mod chaos_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;
    use crate::chaos::FaultKind;

    #[test]
    fn parses_the_chaos_command() {
        let cli = Cli::try_parse_from([
            "testnet",
            "chaos",
            "--duration",
            "60s",
            "--seed",
            "1",
            "--faults",
            "kill,pause,partition,restart,membership,disk-full,clock,slow-disk,failpoint,ca-rotate",
        ])
        .unwrap();
        match cli.command {
            Command::Chaos(args) => {
                assert_eq!(args.duration, std::time::Duration::from_secs(60));
                assert_eq!(args.seed, Some(1));
                assert_eq!(args.faults, FaultKind::ALL);
                assert_eq!((args.managers, args.workers, args.clients), (3, 2, 5));
                assert_eq!(args.backend, crate::lab::BackendKind::Local);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "testnet",
            "chaos",
            "--faults",
            "kill",
            "--backend",
            "docker",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Chaos(ChaosArgs { ref faults, seed: None, .. }) if faults == &[FaultKind::Kill]
        ));
        assert!(Cli::try_parse_from(["testnet", "chaos", "--faults", "flood"]).is_err());
        assert!(Cli::try_parse_from(["testnet", "chaos", "--duration", "soon"]).is_err());
    }
}

#[cfg(test)]
mod lab_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    #[test]
    fn parses_the_lab_commands() {
        let cli =
            Cli::try_parse_from(["testnet", "up", "--managers", "3", "--workers", "5"]).unwrap();
        match cli.command {
            Command::Lab(LabCommand::Up(args)) => {
                assert_eq!((args.managers, args.workers), (3, 5));
                assert_eq!(args.dir.dir, PathBuf::from(".testnet"));
                assert_eq!(args.backend, crate::lab::BackendKind::Local);
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "testnet",
            "partition",
            "--dir",
            "x",
            "manager-1,worker-1",
            "/",
            "manager-2",
        ])
        .unwrap();
        match cli.command {
            Command::Lab(LabCommand::Partition(args)) => {
                assert_eq!(args.sides, ["manager-1,worker-1", "/", "manager-2"]);
                assert_eq!(args.dir.dir, PathBuf::from("x"));
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["testnet", "kill", "manager-2"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Lab(LabCommand::Kill(LabNodeArgs { ref node, .. })) if node == "manager-2"
        ));
        let cli = Cli::try_parse_from(["testnet", "up", "--backend", "docker"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Lab(LabCommand::Up(UpArgs {
                backend: crate::lab::BackendKind::Docker,
                ..
            }))
        ));
    }
}
