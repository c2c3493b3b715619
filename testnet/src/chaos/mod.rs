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

pub mod checker;
pub mod history;
pub mod model;

#[cfg(test)]
mod tests;

pub use checker::{
    CheckConfig, CheckResult, KeyResult, KeyVerdict, Verdict, ViolationReport, check,
};
pub use history::{
    ClientId, History, HistoryError, HistoryRecorder, Op, OpHandle, OpRecord, OpResult, Outcome,
    ReadValue,
};
