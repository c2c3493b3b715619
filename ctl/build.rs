//! Bakes the git revision the binaries are built from into `SYMPHONY_GIT_REVISION`, for
//! `--version` on every binary (they all take it from this crate: see `symphony_ctl::version`).
//!
//! `git rev-parse --short HEAD`, or `unknown` when git or the repository is absent (a source
//! tarball, a vendored copy). `SYMPHONY_GIT_REVISION` in the environment wins, for packagers
//! who build outside a checkout but know the revision.
//!
//! Cargo reruns this only when HEAD moves: the files it watches are HEAD (a checkout or a
//! detached commit), the ref HEAD names (a commit on the branch) and packed-refs (a ref that
//! `git gc` packed). Watching nothing would rerun it on every change in the package; watching
//! the whole `.git` would rerun it on every `git status`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SYMPHONY_GIT_REVISION");
    let revision = match std::env::var("SYMPHONY_GIT_REVISION") {
        Ok(given) if !given.is_empty() => given,
        _ => {
            watch_head();
            git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    println!("cargo:rustc-env=SYMPHONY_GIT_REVISION={revision}");
}

/// Tells cargo which git files say where HEAD is. In a worktree HEAD lives in the worktree's
/// own git dir and the branch refs in the common one, so both are asked for.
fn watch_head() {
    let (Some(git_dir), Some(common_dir)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ) else {
        return;
    };
    let git_dir = PathBuf::from(git_dir);
    let common_dir = PathBuf::from(common_dir);
    let mut watched = vec![git_dir.join("HEAD"), common_dir.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common_dir.join(branch));
    }
    // Cargo reruns a script on every build while a watched file is missing, so only files
    // that exist are named (a loose ref appears when the branch first moves, which HEAD's or
    // packed-refs' change covers).
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// One git command's trimmed output, or `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}
