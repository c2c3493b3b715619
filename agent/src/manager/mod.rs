//! What only managers do.
//!
//! - [`propose`]: proposing commands and reading the state, with the errors operators see;
//! - [`admission`]: on the leader, admitting a node that joins (manager or worker);
//! - [`membership`]: on the leader, changing the manager group (promote, demote, remove, a
//!   manager that leaves);
//! - [`sessions`]: workers' sessions (any manager) and leave notices (the leader);
//! - [`gossip_keys`]: on the leader, whether every node is ready for a key rotation's step;
//! - [`renewal`]: any manager renewing a node's certificate, for the node its certificate
//!   names;
//! - [`ca_rotation`]: a root rotation, started on request and ended by the leader once
//!   every node moved;
//! - [`trust`]: the removed nodes and the CA bundle, followed from the replica into the node's TLS;
//! - [`dispatcher`]: nodes' assignment streams (any manager) and their task reports (the
//!   leader);
//! - [`leader`]: the supervisor of the leader's loops, which start when this node becomes
//!   leader and stop when it no longer is:
//!   - [`promoter`]: learners that caught up become voters, keeping the count odd;
//!   - [`liveness`]: what gossip says about nodes, turned into node status;
//!   - [`orchestrator`]: every service kept at its tasks;
//!   - [`scheduler`]: pending tasks placed on nodes;
//!   - [`handover`]: short of disk space, leadership handed to another voter.

pub mod admission;
pub mod ca_rotation;
pub mod dispatcher;
pub mod gossip_keys;
pub mod handover;
pub mod leader;
pub mod liveness;
pub mod membership;
pub mod orchestrator;
pub mod promoter;
pub mod propose;
pub mod renewal;
pub mod scheduler;
pub mod sessions;
#[cfg(test)]
pub mod testing;
pub mod trust;
