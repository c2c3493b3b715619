//! An in-process simulator for scale: N real foca members on virtual time over a lossy
//! virtual network, to measure what cannot be measured with real processes on one machine —
//! how fast a join and a crash reach 99.9% of 10,000 members, what gossip costs per member,
//! and whether a lossy network makes healthy members look dead.
//!
//! What is real: every member is the driver's foca type, with the driver's identity type
//! and codec, the timings of a [`Profile`](crate::Profile), and the driver's re-announce
//! behaviour when joining. What is modelled: time (a discrete-event queue, [`clock`]), the
//! network (independent loss and uniform latency, [`network`]), crashes (a member stops
//! sending and receiving). What is left out: CPU time and scheduling delays of real nodes,
//! bandwidth, correlated loss and partitions. Runs are deterministic from their seed.
//!
//! - [`simulation`]: [`Simulation`] and [`SimConfig`], the members and the event loop;
//! - [`scenario`]: the join, crash and steady-state measurements;
//! - [`observer`]: turns the members' notifications into [`Propagation`]s and [`FalseDowns`];
//! - [`traffic`]: packet and byte counters, [`Traffic`];
//! - [`network`]: [`NetworkModel`], loss and latency;
//! - [`clock`]: [`SimTime`] and the event queue;
//! - [`addressing`]: the members' synthetic identities and addresses;
//! - `world`, `runtime`: what one member's foca acts on, and the [`foca::Runtime`] over it.

pub mod addressing;
pub mod clock;
pub mod network;
pub mod observer;
mod runtime;
pub mod scenario;
pub mod simulation;
pub mod traffic;
mod world;

#[cfg(test)]
mod tests;

pub use clock::SimTime;
pub use network::NetworkModel;
pub use observer::{FalseDowns, Propagation};
pub use scenario::{SteadyState, measure_crash, measure_join, measure_steady};
pub use simulation::{SimConfig, SimError, Simulation};
pub use traffic::Traffic;
