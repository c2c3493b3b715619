//! `--version` on the binaries: each prints its version and the git revision it was built from,
//! so a bug report or a `node ls` row can be matched to the code.
//!
//! Needs the agent binary: `cargo build -p symphony-agent` (or set SYMPHONY_AGENT_BIN).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use symphony_testnet::harness::find_agent_binary;

/// Runs `binary --version` and checks it names the binary, the version and the revision.
fn assert_version(binary: &Path, name: &str) {
    let output = Command::new(binary).arg("--version").output().unwrap();
    assert!(
        output.status.success(),
        "{name} --version failed: {output:?}"
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.trim(),
        format!("{name} {}", symphony_ctl::VERSION_WITH_REVISION),
        "{name} --version (if only the revision differs, {} is older than this test: cargo build -p symphony-agent)",
        binary.display()
    );
    assert!(printed.contains(&format!("(git {})", symphony_ctl::GIT_REVISION)));
}

#[test]
fn the_agent_prints_its_revision() {
    assert_version(&find_agent_binary().unwrap(), "symphony-agent");
}

#[test]
fn testnet_prints_its_revision() {
    assert_version(Path::new(env!("CARGO_BIN_EXE_testnet")), "testnet");
}

/// Built in a checkout, the revision is the short hash git knows, not the fallback.
#[test]
fn the_revision_is_heads_when_built_in_a_checkout() {
    if std::env::var_os("SYMPHONY_GIT_REVISION").is_some() {
        println!("skipped: the revision was given by SYMPHONY_GIT_REVISION");
        return;
    }
    let Ok(output) = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
    else {
        println!("skipped: no git here");
        return;
    };
    if !output.status.success() {
        println!("skipped: not built in a git checkout");
        return;
    }
    let head = String::from_utf8(output.stdout).unwrap();
    assert_eq!(symphony_ctl::GIT_REVISION, head.trim());
}
