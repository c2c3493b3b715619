//! Seeding a config dir from a snapshot, offline, as an operator restoring a backup would.

use std::path::Path;

use super::{HarnessError, find_agent_binary};

/// Seeds `config_dir` from a snapshot file with `symphony-agent snapshot restore FILE
/// --config-dir DIR` (offline), so that an agent started on it comes up as a one-manager
/// cluster with the snapshot's data.
pub fn restore_snapshot(
    bin: Option<&Path>,
    snapshot: &Path,
    config_dir: &Path,
) -> Result<String, HarnessError> {
    let bin = match bin {
        Some(bin) => bin.to_path_buf(),
        None => find_agent_binary()?,
    };
    let command = format!(
        "{} snapshot restore {} --config-dir {}",
        bin.display(),
        snapshot.display(),
        config_dir.display()
    );
    let output = std::process::Command::new(&bin)
        .arg("snapshot")
        .arg("restore")
        .arg(snapshot)
        .arg("--config-dir")
        .arg(config_dir)
        .output()
        .map_err(HarnessError::io(format!("cannot run {command}")))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(HarnessError::CommandFailed {
            command,
            status: output.status,
            output: text,
        })
    }
}
