//! The orchestrator: the leader's loop that keeps every service at its tasks.
//!
//! - [`decide`]: the decision, a pure function of the state and of what this leader observed;
//! - this file: the loop that keeps those observations and proposes each decision.

pub mod decide;
