//! What only workers have and do.
//!
//! - [`state`]: `worker.json`, the worker's membership across restarts;
//! - [`join`] and [`leave`]: becoming and ceasing to be a worker (carried out by the node's
//!   supervisor);
//! - [`session`]: the loop that keeps a session with one manager and switches to another when
//!   that one stops answering;
//! - [`relay`]: passing a join that reached this worker on to a manager.
//!
//! The managers' side of the same conversations is in [`crate::manager::sessions`] and
//! [`crate::manager::admission`].

pub mod join;
pub mod leave;
pub mod relay;
pub mod session;
pub mod state;
