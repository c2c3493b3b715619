//! `testnet bench gossip`: gossip at scale, measured in the in-process simulator
//! (`symphony_gossip::sim`) rather than with processes, since one machine cannot run
//! thousands of agents.
//!
//! `--members` real foca instances with the chosen profile's timings start converged (each
//! knows every other as alive) on virtual time, over a virtual network that drops each packet
//! with probability `--loss` and delivers the rest after 0.2–2 ms. After 10 simulated seconds
//! of warm-up, in this order:
//! 1. `--trials` times: a new member announces itself to three random members (time until
//!    99.9% and all of the others have it up), then a random member crashes (time until 99.9%
//!    and all of the others have it down); the median and the worst trial are reported;
//! 2. `--minutes` of steady state: packets and bytes each member sends per second, and false
//!    downs (members declared down while running).
//!
//! Everything derives from `--seed`: a run can be repeated exactly.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use symphony_gossip::Profile;
use symphony_gossip::sim::{
    Propagation, SimConfig, Simulation, measure_crash, measure_join, measure_steady,
};

use super::figures::millis;
use super::latency::Latencies;

/// Simulated time before the first measurement, for the staggered starts to settle.
const WARMUP: Duration = Duration::from_secs(10);
/// How long a join or a crash may take to reach everyone before the benchmark moves on.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
const CRASH_TIMEOUT: Duration = Duration::from_secs(120);
/// Progress is printed (to stderr) after each slice of steady state.
const PROGRESS_SLICE: Duration = Duration::from_secs(30);

/// What `testnet bench gossip` simulates.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipOptions {
    /// Members of the simulated cluster (also the profile's expected cluster size).
    pub members: usize,
    /// Probability that the virtual network drops a packet, in [0, 1).
    pub loss: f64,
    /// Seed of everything random in the run; the same seed gives the same figures.
    pub seed: u64,
    /// Simulated minutes of steady state over which traffic and false downs are measured.
    pub minutes: f64,
    /// The timing profile under test.
    pub profile: ProfileKind,
    /// How many joins and crashes are timed, one after the other, before the steady state.
    pub trials: usize,
    /// Threads that fill the members' views before the run (`None`: every core).
    pub threads: Option<usize>,
    /// Whether members seal their packets as agents do.
    pub sealed: bool,
}

impl Default for GossipOptions {
    fn default() -> Self {
        GossipOptions {
            members: 1_000,
            loss: 0.05,
            seed: 1,
            minutes: 10.0,
            profile: ProfileKind::Lan,
            trials: 3,
            threads: None,
            sealed: false,
        }
    }
}

/// The gossip timing profile a gossip benchmark simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileKind {
    Lan,
    Wan,
}

pub async fn run(options: GossipOptions) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || simulate(&options))
        .await
        .context("the simulation thread failed")?
}

fn ms(duration: Option<Duration>) -> Value {
    duration.map_or(Value::Null, |duration| json!(millis(duration)))
}

fn describe(duration: Option<Duration>) -> String {
    duration.map_or_else(
        || "not reached".to_string(),
        |duration| format!("{:.2} s", duration.as_secs_f64()),
    )
}

fn print_spread(what: &str, spread: &Propagation, wall: Duration) {
    println!(
        "{what}: seen by 99.9% after {}, by all after {} ({} of {} observers; half after {}) \
         [{:.1} s wall]",
        describe(spread.to_999),
        describe(spread.to_all),
        spread.noticed,
        spread.observers,
        describe(spread.to_half),
        wall.as_secs_f64()
    );
}

/// The 99.9% times of several trials, summarised as every benchmark does (nearest-rank, see
/// [`super::latency`]). A trial that never reached 99.9% (or everyone) ranks as the worst, and
/// a figure that falls on it is "not reached".
struct Summary {
    median_999: Option<Duration>,
    worst_999: Option<Duration>,
    all_999: Vec<Option<Duration>>,
    worst_all: Option<Duration>,
}

impl Summary {
    fn of(spreads: &[Propagation]) -> Summary {
        let all_999: Vec<_> = spreads.iter().map(|spread| spread.to_999).collect();
        let to_999 = Latencies::with_unreached(all_999.iter().copied());
        let to_all = Latencies::with_unreached(spreads.iter().map(|spread| spread.to_all));
        Summary {
            median_999: to_999.median(),
            worst_999: to_999.max(),
            all_999,
            worst_all: to_all.max(),
        }
    }
}

fn simulate(options: &GossipOptions) -> anyhow::Result<()> {
    if options.members < 2 {
        bail!("--members must be at least 2");
    }
    if !(0.0..1.0).contains(&options.loss) {
        bail!("--loss must be in [0, 1)");
    }
    if !(options.minutes.is_finite() && options.minutes >= 0.0) {
        bail!("--minutes must be a non-negative number");
    }
    let cluster_size = NonZeroU32::new(u32::try_from(options.members).unwrap_or(u32::MAX))
        .context("--members must be at least 1")?;
    let (profile, profile_name) = match options.profile {
        ProfileKind::Lan => (Profile::Lan { cluster_size }, "lan"),
        ProfileKind::Wan => (Profile::Wan { cluster_size }, "wan"),
    };
    let mut config = SimConfig::new(options.members, options.loss, &profile, options.seed);
    if let Some(threads) = options.threads {
        config.threads = threads.max(1);
    }
    config.sealed = options.sealed;
    let foca = config.foca.clone();
    let gossip = foca.periodic_gossip.as_ref();
    println!(
        "gossip simulation: {} members, {:.1}% loss, seed {}, profile {profile_name}: probe every \
         {} ms (rtt {} ms, {} indirect), suspect to down after {} ms, gossip every {} ms to {}, \
         {} transmissions",
        options.members,
        options.loss * 100.0,
        options.seed,
        foca.probe_period.as_millis(),
        foca.probe_rtt.as_millis(),
        foca.num_indirect_probes,
        foca.suspect_to_down_after.as_millis(),
        gossip.map_or(0, |params| params.frequency.as_millis()),
        gossip.map_or(0, |params| params.num_members.get()),
        foca.max_transmissions,
    );

    let started = Instant::now();
    let mut sim = Simulation::new(config).context("cannot set up the simulation")?;
    let converge_wall = started.elapsed();
    println!(
        "converged: {} members know each other [{:.1} s wall]",
        sim.len(),
        converge_wall.as_secs_f64()
    );

    let phase = Instant::now();
    sim.run_for(WARMUP);
    let warmup_wall = phase.elapsed();

    let mut joins = Vec::new();
    let mut crashes = Vec::new();
    let phase = Instant::now();
    for trial in 1..=options.trials.max(1) {
        let started = Instant::now();
        let join = measure_join(&mut sim, JOIN_TIMEOUT).context("cannot add a member")?;
        print_spread(&format!("join {trial}"), &join, started.elapsed());
        joins.push(join);
        let started = Instant::now();
        let crash = measure_crash(&mut sim, CRASH_TIMEOUT);
        print_spread(&format!("crash {trial}"), &crash, started.elapsed());
        crashes.push(crash);
    }
    let trials_wall = phase.elapsed();
    let join = Summary::of(&joins);
    let crash = Summary::of(&crashes);
    println!(
        "over {} trials: join seen by 99.9% after {} (median) / {} (worst); crash seen down by \
         99.9% after {} (median) / {} (worst)",
        joins.len(),
        describe(join.median_999),
        describe(join.worst_999),
        describe(crash.median_999),
        describe(crash.worst_999),
    );

    let phase = Instant::now();
    let total = Duration::from_secs_f64(options.minutes * 60.0);
    let steady_start = sim.now();
    let steady = measure_steady(&mut sim, total, PROGRESS_SLICE, |sim| {
        eprintln!(
            "  steady state: {:.1} of {:.1} simulated min, {} false downs so far [{:.0} s wall]",
            (sim.now().saturating_sub(steady_start)).as_secs_f64() / 60.0,
            options.minutes,
            sim.false_downs().incidents,
            started.elapsed().as_secs_f64()
        );
    });
    let steady_wall = phase.elapsed();
    let all_false = sim.false_downs();
    println!(
        "steady state over {:.1} simulated min: {:.2} packets and {:.0} bytes sent per member per \
         second; {} suspicions, {} false downs ({} notifications), {} rejoins [{:.1} s wall]",
        steady.duration.as_secs_f64() / 60.0,
        steady.messages_per_member_per_sec(),
        steady.bytes_per_member_per_sec(),
        steady.false_downs.suspicions,
        steady.false_downs.incidents,
        steady.false_downs.notifications,
        steady.false_downs.rejoins,
        steady_wall.as_secs_f64()
    );
    let wall = started.elapsed();
    println!(
        "whole run: {:.1} simulated s, {} events, {} false downs, {:.1} s wall",
        sim.now().as_secs_f64(),
        sim.events(),
        all_false.incidents,
        wall.as_secs_f64()
    );

    let report = json!({
        "bench": "gossip",
        "members": options.members,
        "loss": options.loss,
        "seed": options.seed,
        "sealed": options.sealed,
        "profile": profile_name,
        "probe_period_ms": foca.probe_period.as_millis(),
        "probe_rtt_ms": foca.probe_rtt.as_millis(),
        "suspect_to_down_ms": foca.suspect_to_down_after.as_millis(),
        "indirect_probes": foca.num_indirect_probes.get(),
        "max_transmissions": foca.max_transmissions.get(),
        "gossip_every_ms": gossip.map(|params| params.frequency.as_millis()),
        "gossip_fanout": gossip.map(|params| params.num_members.get()),
        "trials": joins.len(),
        "join_p999_ms": ms(join.median_999),
        "join_p999_worst_ms": ms(join.worst_999),
        "join_all_worst_ms": ms(join.worst_all),
        "join_p999_trials_ms": join.all_999.iter().map(|time| ms(*time)).collect::<Vec<_>>(),
        "crash_p999_ms": ms(crash.median_999),
        "crash_p999_worst_ms": ms(crash.worst_999),
        "crash_all_worst_ms": ms(crash.worst_all),
        "crash_p999_trials_ms": crash.all_999.iter().map(|time| ms(*time)).collect::<Vec<_>>(),
        "steady_minutes": steady.duration.as_secs_f64() / 60.0,
        "msgs_per_member_per_s": steady.messages_per_member_per_sec(),
        "bytes_per_member_per_s": steady.bytes_per_member_per_sec(),
        "false_downs": steady.false_downs.incidents,
        "false_down_notifications": steady.false_downs.notifications,
        "rejoins": steady.false_downs.rejoins,
        "suspicions": steady.false_downs.suspicions,
        "false_downs_whole_run": all_false.incidents,
        "events": sim.events(),
        "wall_converge_s": converge_wall.as_secs_f64(),
        "wall_warmup_s": warmup_wall.as_secs_f64(),
        "wall_trials_s": trials_wall.as_secs_f64(),
        "wall_steady_s": steady_wall.as_secs_f64(),
        "wall_total_s": wall.as_secs_f64(),
    });
    println!("{report}");
    Ok(())
}
