//! The Symphony agent: one binary on every machine, manager or worker.
//!
//! Module map:
//! - [`config`]: the command line;
//! - [`identity`]: `key.json`, who this node is across restarts;
//! - [`incarnation`]: which life of the node gossip runs under, strictly rising across restarts;
//! - [`durable`]: small files replaced atomically and durably;
//! - [`logging`]: filters, text or JSON lines, the node id on every line;
//! - [`run`]: start-up and shutdown: which tasks run, and in what order they stop;
//! - [`node`]: who this node is — the role supervisor (fresh, manager or worker), the one task
//!   that owns the Raft node, the Raft port and `worker.json`, and the [`node::NodeHandle`]
//!   everyone else reads it through;
//! - [`context`]: the handles request handlers draw on;
//! - [`control`]: the control socket (`symphony-ctl`'s side of the wire);
//! - [`serving`]: the one set-up of the agent's request servers (control socket, node-to-node
//!   API): connection cap, hello deadline, requests and connections counted;
//! - [`api`]: control requests, routed by their declared route, one handler file per resource;
//! - [`remote`]: the node-to-node API (joins, requests forwarded to the leader, sessions);
//! - [`manager`]: what only managers do — admission, membership changes, workers' sessions,
//!   and the leader's loops (promoter, liveness) under one supervisor;
//! - [`worker`]: what only workers do — joining, leaving, the session with a manager;
//! - [`exec`]: what runs tasks on this node (manager or worker): the executor, its feed of
//!   assignments and its reports, the process driver and the task shim, task logs;
//! - [`gossip`]: the keeper of the node's gossip driver;
//! - [`metrics`]: the Prometheus metrics on `--metrics-addr` — the request and Raft
//!   instruments, the readings of the other tasks' published state at each scrape, the HTTP
//!   endpoint;
//! - [`keyring`]: the node's gossip keys, kept in `gossip-keys.json`;
//! - [`tls`]: the node's key, certificate and CA bundle, and the live TLS of its links;
//! - [`renew`]: the node renewing its own certificate between half and four fifths of its life;
//! - [`errors`]: the errors many handlers share;
//! - [`restore`]: `symphony-agent snapshot restore`, seeding a manager from a snapshot file;
//! - [`tokens`]: cluster ids, join tokens and secrets from a CSPRNG;
//! - [`system`]: facts about the machine (host name, memory, CPUs).

pub mod api;
pub mod config;
pub mod context;
pub mod control;
pub mod durable;
pub mod errors;
pub mod exec;
pub mod gossip;
pub mod identity;
pub mod incarnation;
pub mod keyring;
pub mod logging;
pub mod manager;
pub mod metrics;
pub mod node;
pub mod remote;
pub mod renew;
pub mod restore;
pub mod run;
pub mod serving;
pub mod system;
pub mod tls;
pub mod tokens;
pub mod worker;

/// This agent's version, reported in `status`, `node ls` and the hellos.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Milliseconds since the Unix epoch, for timestamps proposers put into commands.
pub fn now_ms() -> u64 {
    millis_since_epoch(std::time::SystemTime::now())
}

/// `at` in milliseconds since the epoch (0 before it).
pub fn millis_since_epoch(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
