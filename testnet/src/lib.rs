//! Symphony's testnet: real `symphony-agent` processes on one machine, for end-to-end tests,
//! fault injection and benchmarks.
//!
//! Module map:
//! - [`lab`]: the one cluster model — a testnet's nodes on a backend (local processes or
//!   docker containers), its state in one dir, its faults — and the `testnet
//!   up|status|kill|pause|resume|restart|partition|heal|down` commands over it;
//! - [`harness`]: what tests and benchmarks drive: [`harness::Cluster`], a lab testnet they
//!   form themselves, with waits and writes that retry; a single agent process; polling with
//!   deadlines;
//! - [`bench`]: the `testnet bench ...` commands, which print a final machine-readable line;
//! - [`chaos`]: operation histories of concurrent KV clients and a linearizability checker for
//!   them, and `testnet chaos`, which runs them on a lab testnet under faults;
//! - [`procfs`]: what `/proc` says of a process (state, start time, CPU, memory) and of the
//!   machine;
//! - [`splitmix`]: the seeded generator of random-looking values that benchmarks and tests
//!   repeat from a seed;
//! - [`cli`]: the `testnet` command line.
//!
//! The end-to-end tests live in `tests/` and use [`harness`] (and, for the lab's commands,
//! [`lab`]) directly.

pub mod bench;
pub mod chaos;
pub mod cli;
pub mod harness;
pub mod lab;
pub mod procfs;
pub mod splitmix;
