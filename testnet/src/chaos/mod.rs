//! `testnet chaos`: concurrent KV clients against a cluster under injected faults, and a check
//! that what they saw could have come from one correct, sequential KV store.
//!
//! Why a history checker rather than assertions in the clients: under faults an individual reply
//! proves little (a timed-out write may or may not have been applied, a read may legitimately see
//! either side of a concurrent write). Only the whole history, with each operation's invoke and
//! completion time, says whether the cluster kept its promise of linearizability. So clients only
//! record, and a checker judges afterwards:
//!
//! - [`history`]: operation records (who, what, when invoked, when completed, and what came back,
//!   including "failed" and "indeterminate") and a thread-safe [`HistoryRecorder`] for clients;
//!   histories serialise to JSON so a failing run can be kept and re-checked;
//! - [`model`]: the sequential specification of one KV key under Symphony's semantics (revisions
//!   from one global counter, compare-and-set on `mod_revision`);
//! - [`checker`]: a Wing–Gong / Lowe style search for a linearization, per key, with memoisation
//!   and a step budget, which also cuts a failing key's history down to a small failing part.
//!
//! The runner behind `testnet chaos`, which produces such histories from a real testnet:
//! - [`runner`]: one run from `up` to `down` (see its docs for the order of things), with
//!   [`options`] saying what it does and [`command`] the command-line glue;
//! - [`workload`]: the KV clients, and [`classify`], which decides from each error whether an
//!   operation failed for sure or may have taken effect;
//! - [`nemesis`]: the seeded fault schedule (with [`membership`] for leave/join and
//!   demote/promote), [`settle`] for "the cluster is whole again", and [`recovery`] for the
//!   end of the run;
//! - [`workers`] and [`sampler`]: the worker check (killed workers go down, recovered ones come
//!   back, healthy ones are never marked down), fed by `node ls` samples;
//! - [`replicas`]: at the end, every manager's own replica holds the same KV store (a replica
//!   that parted from the others passes the history check until it happens to lead);
//! - [`services`]: two services that run through the run; at the end each is back at its
//!   count and no slot of the `--on-isolation stop` one ran twice at once;
//! - [`board`]: what those tasks share while the run goes on; [`tasks`]: stop signals and
//!   blocking calls;
//! - [`report`]: the summary, the final JSON line and the report file; [`error`]: what can go
//!   wrong.

pub mod board;
pub mod ca_rotation;
pub mod checker;
pub mod classify;
pub mod command;
pub mod error;
pub mod history;
pub mod membership;
pub mod model;
pub mod nemesis;
pub mod options;
pub mod recovery;
pub mod replicas;
pub mod report;
pub mod runner;
pub mod sampler;
pub mod services;
pub mod settle;
pub mod tasks;
pub mod workers;
pub mod workload;

#[cfg(test)]
mod tests;

pub use checker::{
    CheckConfig, CheckResult, KeyResult, KeyVerdict, Verdict, ViolationReport, check,
};
pub use error::ChaosError;
pub use history::{
    ClientId, History, HistoryError, HistoryRecorder, Op, OpHandle, OpRecord, OpResult, Outcome,
    ReadValue,
};
pub use options::{ChaosOptions, FaultKind, parse_duration};
pub use report::ChaosRun;
pub use runner::SaveLogs;
