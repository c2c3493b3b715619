//! The measurements `testnet bench gossip` reports, as steps over a [`Simulation`]: how long
//! a join and a crash take to reach the members, and what steady state costs and breaks.
//!
//! They are separate functions rather than one fixed script so that a caller can order them,
//! print progress between them, and a test can run one at a small size.

use std::ops::Sub;
use std::time::Duration;

use crate::sim::observer::{FalseDowns, Propagation};
use crate::sim::simulation::{SimError, Simulation};
use crate::sim::traffic::Traffic;

/// What steady state cost over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SteadyState {
    pub duration: Duration,
    /// Members running during the window.
    pub members: usize,
    pub traffic: Traffic,
    /// False downs that happened during the window.
    pub false_downs: FalseDowns,
}

impl SteadyState {
    fn per_member_per_sec(&self, count: u64) -> f64 {
        let member_seconds = self.members as f64 * self.duration.as_secs_f64();
        if member_seconds > 0.0 {
            count as f64 / member_seconds
        } else {
            0.0
        }
    }

    /// Packets each member sent per second, on average.
    pub fn messages_per_member_per_sec(&self) -> f64 {
        self.per_member_per_sec(self.traffic.sent)
    }

    /// Bytes (foca payload and packet header) each member sent per second, on average.
    pub fn bytes_per_member_per_sec(&self) -> f64 {
        self.per_member_per_sec(self.traffic.bytes)
    }
}

impl Sub for FalseDowns {
    type Output = FalseDowns;

    fn sub(self, earlier: FalseDowns) -> FalseDowns {
        FalseDowns {
            incidents: self.incidents.saturating_sub(earlier.incidents),
            notifications: self.notifications.saturating_sub(earlier.notifications),
            rejoins: self.rejoins.saturating_sub(earlier.rejoins),
            suspicions: self.suspicions.saturating_sub(earlier.suspicions),
        }
    }
}

/// Starts a new member and runs until every other member sees it up, or for `timeout`.
pub fn measure_join(sim: &mut Simulation, timeout: Duration) -> Result<Propagation, SimError> {
    sim.start_join()?;
    Ok(sim
        .run_until_noticed(timeout)
        .unwrap_or_else(nothing_watched))
}

/// Crashes a random member and runs until every other running member sees it down, or for
/// `timeout`.
pub fn measure_crash(sim: &mut Simulation, timeout: Duration) -> Propagation {
    if sim.crash_random().is_none() {
        return nothing_watched();
    }
    sim.run_until_noticed(timeout)
        .unwrap_or_else(nothing_watched)
}

/// Runs `duration` of steady state in slices of `slice`, calling `progress` after each, and
/// reports its traffic and false downs.
pub fn measure_steady(
    sim: &mut Simulation,
    duration: Duration,
    slice: Duration,
    mut progress: impl FnMut(&Simulation),
) -> SteadyState {
    let members = sim.running();
    let traffic_before = sim.traffic();
    let false_downs_before = sim.false_downs();
    let start = sim.now();
    let end = start + duration;
    let slice = if slice.is_zero() { duration } else { slice };
    while sim.now() < end {
        sim.run_for(slice.min(end - sim.now()));
        progress(sim);
    }
    SteadyState {
        duration: sim.now() - start,
        members,
        traffic: sim.traffic() - traffic_before,
        false_downs: sim.false_downs() - false_downs_before,
    }
}

fn nothing_watched() -> Propagation {
    Propagation {
        observers: 0,
        noticed: 0,
        to_half: None,
        to_999: None,
        to_all: None,
    }
}
