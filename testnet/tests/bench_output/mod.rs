//! Running a `testnet bench` command for a test: it must succeed, and its last line must be
//! one JSON object, the figures the test then checks.

use std::process::Command;

use serde_json::Value;

/// Runs `testnet bench ARGS...`; returns the JSON of its last line and its whole stdout.
pub fn run(args: &[&str]) -> (Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_testnet"))
        .arg("bench")
        .args(args)
        .output()
        .expect("cannot run testnet");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let last = stdout.lines().last().expect("no output");
    let figures: Value = serde_json::from_str(last)
        .unwrap_or_else(|error| panic!("the last line is not JSON ({error}): {last}"));
    (figures, stdout)
}

/// The number `field` of `figures`, or a failure that shows them.
pub fn number(figures: &Value, field: &str) -> f64 {
    figures[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number: {figures}"))
}
