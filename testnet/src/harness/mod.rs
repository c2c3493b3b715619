//! Running real agents: everything a test or a benchmark needs to drive `symphony-agent`
//! processes without sleeping to synchronise.
//!
//! - [`Cluster`]: the cluster tests and benchmarks form and drive — nodes of a [`crate::lab`]
//!   testnet on either backend, with waits, faults and writes that retry through any member
//!   (see its module docs for why it sits on the lab);
//! - [`Acknowledged`]: the acknowledged writes, to check at the end that none was lost;
//! - [`AgentProcess`]: one agent as a child process in its own work dir, on its own ports, for
//!   tests of a single node;
//! - [`AgentCommandLine`]: the flags every agent testnet starts is given;
//! - [`find_agent_binary`]: where the `symphony-agent` binary is;
//! - [`free_port`]: a TCP port the OS just handed out;
//! - [`FAST_GOSSIP_ARGS`]: gossip fast enough for tests of worker liveness;
//! - [`poll_until`]: retry a condition until it holds or a deadline passes;
//! - [`is_retryable`]: which control errors are worth retrying (no leader yet, restarting);
//! - [`lab_tests`]: what end-to-end tests of a lab testnet itself share (the down guard, waits
//!   for a status, the settled check, a write and a read with deadlines);
//! - [`log`]: reading an agent's log; [`error_code`], [`find_entry`]: reading replies;
//!   [`restore_snapshot`]: seeding a config dir offline;
//! - [`task_processes`] and [`kill_tasks`]: the processes agents run for tasks.
//!
//! The small pieces (polling, retries, ports, the binary, the command line) are what the lab
//! uses too; the lab in turn runs the nodes of a [`Cluster`].

mod acked;
mod agent;
mod binary;
mod cluster;
mod command_line;
mod error;
mod gossip;
pub mod lab_tests;
pub mod log;
mod poll;
mod ports;
mod replies;
mod retry;
mod snapshot;
mod tasks;

pub use acked::{AckedWrite, Acknowledged};
pub use agent::{AgentOptions, AgentProcess};
pub use binary::{AGENT_BIN_ENV, find_agent_binary};
pub use cluster::{Cluster, ClusterOptions, expected_voters};
pub use command_line::AgentCommandLine;
pub use error::HarnessError;
pub use gossip::{FAST_GOSSIP_ARGS, fast_gossip_args};
pub use poll::poll_until;
pub use ports::{free_addr, free_port};
pub use replies::{error_code, find_entry};
pub use retry::is_retryable;
pub use snapshot::restore_snapshot;
pub use tasks::{TaskProcess, kill_tasks, task_processes};
