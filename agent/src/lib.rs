//! The Symphony agent: one binary on every machine.
//!
//! Module map:
//! - [`config`]: the command line;
//! - [`identity`]: `key.json`, who this node is across restarts;
//! - [`logging`]: filters, text or JSON lines, the node id on every line;
//! - [`control`]: the control socket server (`symphony-ctl`'s side of the wire);
//! - [`node`]: [`node::Node`], which answers control and remote requests: KV, tokens, and
//!   forming and changing the manager group;
//! - [`pipeline`]: serving pipelined requests on a connection (control socket and remote API);
//! - [`remote`]: the node-to-node API (joins, requests forwarded to the leader);
//! - [`restore`]: `symphony-agent snapshot restore`, seeding a manager from a snapshot file;
//! - [`tokens`]: cluster ids, join tokens and secrets from a CSPRNG;
//! - [`worker`]: what only workers have: `worker.json` and the session with a manager;
//! - [`system`]: facts about the machine (host name, memory);
//! - [`run`]: start-up and shutdown of the whole agent.

pub mod config;
pub mod control;
pub mod identity;
pub mod logging;
pub mod node;
pub mod pipeline;
pub mod remote;
pub mod restore;
pub mod run;
pub mod system;
pub mod tokens;
pub mod worker;

/// This agent's version, reported in `status`, `node ls` and the control hello.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch, for timestamps proposers put into commands.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
