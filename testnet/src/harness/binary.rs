//! Finding the `symphony-agent` binary to run.
//!
//! Cargo does not build another package's binaries for this crate's tests, so the tests run
//! whatever `cargo build -p symphony-agent` left in the same target dir. Integration tests run
//! from `target/<profile>/deps/`, the `testnet` binary from `target/<profile>/`: the agent is
//! next to the current executable or one level up.

use std::path::PathBuf;

use super::HarnessError;

/// Set this to an agent binary's path to run that one instead of the one in the target dir.
pub const AGENT_BIN_ENV: &str = "SYMPHONY_AGENT_BIN";

const AGENT_BIN_NAME: &str = "symphony-agent";

/// The agent binary: `$SYMPHONY_AGENT_BIN` if set, else `symphony-agent` next to the current
/// executable or in its parent dir.
pub fn find_agent_binary() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os(AGENT_BIN_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(HarnessError::AgentBinaryNotFound {
                searched: vec![path],
            })
        };
    }
    let exe =
        std::env::current_exe().map_err(HarnessError::io("cannot find the current executable"))?;
    let searched: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(AGENT_BIN_NAME))
        .collect();
    match searched.iter().find(|candidate| candidate.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(HarnessError::AgentBinaryNotFound { searched }),
    }
}
