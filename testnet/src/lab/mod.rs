//! The cluster lab: `testnet up --managers 3 --workers 5` starts a whole cluster on this
//! machine that outlives the command, and later commands — from any shell — look at it
//! (`status`), break it (`kill`, `pause`, `resume`, `restart`, `partition`, `heal`) and remove
//! it (`down`). Such a lab's nodes are detached and everything about them is in one state dir
//! (default `.testnet/`, see [`state`]).
//!
//! The lab is also the cluster model under everything else testnet runs: `testnet chaos` drives
//! a lab it brings up, and the tests and benchmarks drive [`crate::harness::Cluster`], a thin
//! layer over a lab they own (nodes on OS-given ports, stopped with their owner; see
//! [`Addressing`] and [`Lifetime`]).
//!
//! Module map:
//! - [`backend`]: the [`Backend`] interface (start, kill, pause, resume, restart, partition,
//!   heal, down) that a way of running nodes implements;
//! - [`local`]: the local backend — agent processes on their own loopback addresses, cgroups
//!   and nftables for partitions;
//! - [`docker`]: the docker backend — one container per node on a private bridge network,
//!   nftables bridge rules for partitions;
//! - [`subnet`] and [`plan`]: node names, addresses (by subnet or by OS ports) and dirs;
//! - [`state`]: the state file;
//! - [`handle`]: [`Lab`], one testnet opened from its state dir, the nodes added to it, and
//!   the faults;
//! - [`up`]: starting nodes ([`Lab::create`]) and forming the cluster ([`Lab::up`]);
//! - [`partition`]: partitions as users write them, and the links they cut;
//! - [`status`] and [`table`]: what `testnet status` gathers and prints;
//! - [`nft`]: a testnet's own nftables table, which both backends' partitions are made of;
//! - [`exec`]: running host tools (`docker`, `nft`, `ldd`) with deadlines;
//! - [`rpc`]: control calls with deadlines;
//! - [`command`]: the command-line glue.

pub mod backend;
pub mod command;
pub mod docker;
mod error;
pub mod exec;
pub mod handle;
pub mod local;
pub mod nft;
pub mod partition;
pub mod plan;
pub mod rpc;
pub mod state;
pub mod status;
pub mod subnet;
pub mod table;
pub mod up;

pub use backend::{Backend, BackendKind, NodeHandle, ProcessState};
pub use error::LabError;
pub use handle::Lab;
pub use nft::Nft;
pub use partition::{Cut, Partition};
pub use plan::Addressing;
pub use state::{Intent, LabState, Lifetime, NodeRecord};
pub use status::{LabStatus, NodeRow};
pub use subnet::Subnet;
pub use up::UpOptions;
