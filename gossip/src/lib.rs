//! Symphony's gossip layer: every node, manager or worker, is a member of one SWIM pool
//! (foca) that carries discovery and liveness.
//!
//! Module map:
//! - [`identity`]: [`GossipIdentity`], what a member is known by, and foca's rules for two
//!   lives of one node;
//! - [`packet`]: the plain UDP framing (magic, version, cluster tag, checksum) around foca's
//!   payload;
//! - [`seal`]: sealed packets (XChaCha20-Poly1305 under the cluster's [`Keyring`]);
//! - [`replay`]: the replay guard, a window per sender life and sequence number;
//! - [`framing`]: one member's framing, plain or sealed, for the driver and the simulator;
//! - [`config`]: [`GossipConfig`] and the timing [`Profile`]s;
//! - [`driver`]: the actor that owns foca, the socket and the timers, and its [`Gossip`] handle;
//! - `timers`: the driver's single ordered timer queue;
//! - `pacing`: holds foca's periodic gossip while there is nothing to send, so an idle member
//!   sleeps;
//! - [`event`]: [`MemberEvent`], membership changes derived from foca's notifications;
//! - [`stats`]: packet counters, read as [`GossipStats`];
//! - [`error`]: the handle's errors, [`GossipError`];
//! - [`testing`]: real foca messages from any identity, for other crates' tests of hostile
//!   packets;
//! - [`sim`]: an in-process simulator of N members on virtual time, for scale measurements.
//!
//! This crate knows nothing of Raft or of the control protocol: the agent turns member events
//! into cluster state.

pub mod config;
pub mod driver;
pub mod error;
pub mod event;
pub mod framing;
pub mod identity;
mod pacing;
pub mod packet;
pub mod replay;
pub mod seal;
pub mod sim;
pub mod stats;
pub mod testing;
mod timers;

pub use config::{GossipConfig, Profile};
pub use driver::{Gossip, MemberState};
pub use error::GossipError;
pub use event::MemberEvent;
pub use identity::{GossipIdentity, Role, next_incarnation};
pub use packet::PacketError;
pub use seal::{GossipKey, KeyId, Keyring, KeyringError};
pub use stats::GossipStats;

/// A member's state in a [`MemberState`] (alive, suspect, down), re-exported so callers can
/// read it without depending on foca.
pub use foca::State as MemberLiveness;
/// Re-exported so callers can build a [`Profile::Custom`] without depending on foca.
pub use foca::{Config as FocaConfig, PeriodicParams};
