//! Running real agents: everything a test or a benchmark needs to drive `symphony-agent`
//! processes without sleeping to synchronise.
//!
//! - [`AgentProcess`]: one agent process in its own work dir, on its own ports;
//! - [`AgentCommandLine`]: the flags every agent testnet starts is given;
//! - [`find_agent_binary`]: where the `symphony-agent` binary is;
//! - [`free_port`]: a TCP port the OS just handed out;
//! - [`poll_until`]: retry a condition until it holds or a deadline passes;
//! - [`is_retryable`]: which control errors are worth retrying (no leader yet, restarting);
//! - [`Cluster`]: N managers formed into one Raft group, with waits, faults and writes that
//!   retry through any member;
//! - [`Acknowledged`]: the acknowledged writes, to check at the end that none was lost.

mod acked;
mod agent;
mod binary;
mod cluster;
mod command_line;
mod error;
mod poll;
mod ports;
mod retry;

pub use acked::{AckedWrite, Acknowledged};
pub use agent::{AgentOptions, AgentProcess};
pub use binary::{AGENT_BIN_ENV, find_agent_binary};
pub use cluster::{
    Cluster, ClusterOptions, error_code, expected_voters, find_entry, restore_snapshot,
};
pub use command_line::AgentCommandLine;
pub use error::HarnessError;
pub use poll::poll_until;
pub use ports::{free_addr, free_port};
pub use retry::is_retryable;
