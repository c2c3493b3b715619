//! What only workers have.
//!
//! - [`state`]: `worker.json`, the worker's membership across restarts;
//! - [`session`]: the loop that keeps a session with one manager and switches to another when
//!   that one stops answering.
//!
//! The requests themselves (join, session, leave) are answered in
//! [`crate::node`], beside the managers' side of the same conversation.

pub mod session;
pub mod state;
