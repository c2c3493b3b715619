//! Symphony's testnet: real `symphony-agent` processes on one machine, for end-to-end tests,
//! fault injection and benchmarks.
//!
//! Module map:
//! - [`harness`]: start, stop, kill and restart agent processes in temp dirs on OS-given
//!   ports, talk to them through the control socket, and poll conditions with deadlines;
//! - [`bench`]: the `testnet bench ...` commands, which print a final machine-readable line;
//! - [`chaos`]: operation histories of concurrent KV clients and a linearizability checker for
//!   them, for `testnet chaos`;
//! - [`lab`]: `testnet up|status|kill|pause|resume|restart|partition|heal|down`, a cluster
//!   of detached agents that outlives the command, with its state in one dir;
//! - [`procfs`]: what `/proc` says of a process (state, start time, CPU, memory) and of the
//!   machine;
//! - [`splitmix`]: the seeded generator of random-looking values that benchmarks and tests
//!   repeat from a seed;
//! - [`cli`]: the `testnet` command line.
//!
//! The end-to-end tests live in `tests/` and use [`harness`] directly.

pub mod bench;
pub mod chaos;
pub mod cli;
pub mod harness;
pub mod lab;
pub mod procfs;
pub mod splitmix;
