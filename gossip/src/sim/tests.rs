//! The simulator at 50 members: fast enough for debug builds, large enough to exercise
//! indirect probes, suspicion and dissemination.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::num::NonZeroU32;
use std::time::Duration;

use super::*;
use crate::config::Profile;

const MEMBERS: usize = 50;

fn lan() -> Profile {
    Profile::Lan {
        cluster_size: NonZeroU32::new(MEMBERS as u32).unwrap(),
    }
}

fn simulation(loss: f64, seed: u64) -> Simulation {
    Simulation::new(SimConfig::new(MEMBERS, loss, &lan(), seed)).unwrap()
}

#[test]
fn starts_converged_and_stays_so() {
    let mut sim = simulation(0.0, 1);
    sim.run_for(Duration::from_secs(10));
    for member in 0..MEMBERS as u32 {
        assert_eq!(sim.view_size(member), Some(MEMBERS - 1), "member {member}");
    }
    let traffic = sim.traffic();
    // Each member probes about once per probe period: a ping and an ack.
    assert!(traffic.sent >= MEMBERS as u64 * 10, "{traffic:?}");
    assert_eq!(traffic.lost, 0);
    assert_eq!(
        sim.false_downs(),
        FalseDowns::default(),
        "no loss, no suspicion"
    );
    assert_eq!(sim.timer_errors(), 0);
}

#[test]
fn a_join_is_seen_by_every_member() {
    let mut sim = simulation(0.01, 2);
    sim.run_for(Duration::from_secs(3));
    let join = measure_join(&mut sim, Duration::from_secs(30)).unwrap();
    assert_eq!(join.observers, MEMBERS);
    assert_eq!(join.noticed, MEMBERS, "{join:?}");
    assert!(join.to_all.unwrap() < Duration::from_secs(3), "{join:?}");
    // The joiner learns the cluster too (from the seeds' feeds, then gossip and announces).
    sim.run_for(Duration::from_secs(60));
    assert_eq!(sim.view_size(MEMBERS as u32), Some(MEMBERS));
}

#[test]
fn a_crash_is_seen_by_every_member() {
    let mut sim = simulation(0.01, 3);
    sim.run_for(Duration::from_secs(3));
    let crash = measure_crash(&mut sim, Duration::from_secs(60));
    assert_eq!(crash.observers, MEMBERS - 1);
    assert_eq!(crash.noticed, MEMBERS - 1, "{crash:?}");
    let bound = sim.foca_config().suspect_to_down_after + Duration::from_secs(8);
    assert!(crash.to_all.unwrap() < bound, "{crash:?}");
    assert_eq!(sim.running(), MEMBERS - 1);
}

#[test]
fn sealed_members_join_detect_a_crash_and_refuse_nothing() {
    let mut config = SimConfig::new(MEMBERS, 0.01, &lan(), 6);
    config.sealed = true;
    let mut sim = Simulation::new(config).unwrap();
    sim.run_for(Duration::from_secs(3));
    let join = measure_join(&mut sim, Duration::from_secs(30)).unwrap();
    assert_eq!(join.noticed, MEMBERS, "{join:?}");
    let crash = measure_crash(&mut sim, Duration::from_secs(60));
    assert_eq!(crash.noticed, crash.observers, "{crash:?}");
    let traffic = sim.traffic();
    assert_eq!(traffic.unsealed_drops, 0, "{traffic:?}");
    // Every packet carries the sealed overhead instead of the plain header.
    let plain_run = {
        let mut sim = simulation(0.01, 6);
        sim.run_for(Duration::from_secs(3));
        sim.traffic()
    };
    assert!(traffic.bytes / traffic.sent > plain_run.bytes / plain_run.sent);
}

#[test]
fn runs_are_deterministic_given_the_seed() {
    let run = |seed| {
        let mut sim = simulation(0.05, seed);
        let join = measure_join(&mut sim, Duration::from_secs(20)).unwrap();
        let crash = measure_crash(&mut sim, Duration::from_secs(40));
        (join, crash, sim.traffic(), sim.events())
    };
    let first = run(7);
    assert_eq!(first, run(7));
    assert_ne!(first.2, run(8).2);
}

#[test]
fn no_false_downs_at_five_percent_loss() {
    let mut sim = simulation(0.05, 4);
    let steady = measure_steady(
        &mut sim,
        Duration::from_secs(120),
        Duration::from_secs(30),
        |_| {},
    );
    assert_eq!(steady.false_downs.incidents, 0, "{steady:?}");
    assert_eq!(steady.false_downs.notifications, 0, "{steady:?}");
    assert_eq!(steady.false_downs.rejoins, 0, "{steady:?}");
    assert!(steady.traffic.lost > 0);
    assert!(steady.messages_per_member_per_sec() > 1.0, "{steady:?}");
    assert!(steady.bytes_per_member_per_sec() > 100.0, "{steady:?}");
}

#[test]
fn refuted_suspicions_neither_down_nor_renew_anyone() {
    // 15% loss makes probes fail all six indirect paths now and then.
    let mut sim = simulation(0.15, 5);
    let steady = measure_steady(&mut sim, Duration::from_secs(300), Duration::ZERO, |_| {});
    let false_downs = steady.false_downs;
    assert!(false_downs.suspicions > 0, "{steady:?}");
    // Before the driver skipped stale suspicion timers, each refuted suspicion made foca send
    // the healthy member `TurnUndead`, and it rejoined under a new identity.
    assert_eq!(false_downs.rejoins, false_downs.incidents, "{steady:?}");
}

#[test]
fn only_a_standing_suspicion_reaches_foca() {
    use foca::{Member, State, Timer};
    use rand_foca::SeedableRng;

    use crate::driver::{Swim, should_deliver};
    use crate::sim::addressing::identity_of;

    let me = identity_of(0, 1).unwrap();
    let other = identity_of(1, 1).unwrap();
    let mut foca = Swim::new(
        me,
        lan().foca_config(),
        rand_foca::rngs::SmallRng::seed_from_u64(1),
        foca::PostcardCodec,
    );
    let timer = |incarnation| Timer::ChangeSuspectToDown {
        member_id: other.clone(),
        incarnation,
        token: 0,
    };
    let mut io = runtime::Deferred::default();
    let mut apply = |foca: &mut Swim, incarnation, state| {
        let update = Member::new(other.clone(), incarnation, state);
        foca.apply_many(std::iter::once(update), false, &mut io)
            .unwrap();
    };
    apply(&mut foca, 0, State::Suspect);
    assert!(should_deliver(&foca, &timer(0)));
    // Refuted: the member is alive at a higher incarnation.
    apply(&mut foca, 1, State::Alive);
    assert!(!should_deliver(&foca, &timer(0)));
    // Down already (someone else's timer fired first).
    apply(&mut foca, 1, State::Down);
    assert!(!should_deliver(&foca, &timer(1)));
    assert!(should_deliver(&foca, &Timer::PeriodicGossip(0)));
}
