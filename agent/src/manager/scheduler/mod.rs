//! The scheduler: the leader's loop that places pending tasks on nodes.
//!
//! - [`filters`]: what a node must pass to take a task, and each failure with its shortfall;
//! - [`decide`]: the decision, a pure function of the state, and `explain`;
//! - this file: the loop that feeds it the leader's replica and proposes its placements as one
//!   Raft entry per decision.

pub mod decide;
pub mod filters;
