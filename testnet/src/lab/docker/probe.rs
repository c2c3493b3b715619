//! A tiny image for docker-driver tests, assembled offline like the nodes' image (nothing can
//! be pulled): this machine's `/bin/sh`, `sleep` and `cat` and the shared libraries they load,
//! imported under a tag the test names (`symphony/probe:1`). A shell is all a test task needs:
//! it prints, loops, traps SIGTERM and exits with a chosen code.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::cli::Docker;
use super::image::{Entry, shared_libraries, write_tar};
use crate::lab::LabError;
use crate::lab::exec::{Feeder, find_on_path, os_args};

/// The programs the image holds, found on this machine's PATH.
const PROGRAMS: [&str; 3] = ["sh", "sleep", "cat"];
const IMPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// Tests in one process build the image once.
static BUILDING: Mutex<()> = Mutex::new(());

/// Makes sure the probe image `tag` exists on the engine; builds it when it does not.
pub fn ensure_probe_image(docker: &Docker, tag: &str) -> Result<(), LabError> {
    let _building = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
    if docker
        .output(&["image", "inspect", "--format", "{{.Id}}", tag])?
        .success
    {
        return Ok(());
    }
    let mut entries = Vec::new();
    let mut libraries = BTreeSet::new();
    for program in PROGRAMS {
        let source = find_on_path(program).ok_or_else(|| LabError::BackendUnavailable {
            backend: "docker",
            reason: format!("the probe image needs {program}, which is not on this machine's PATH"),
        })?;
        libraries.extend(shared_libraries(&source)?);
        entries.push(Entry {
            path: format!("/bin/{program}"),
            source,
            mode: 0o755,
        });
    }
    for library in libraries {
        let path = library.to_string_lossy().into_owned();
        if entries.iter().any(|entry| entry.path == path) {
            continue;
        }
        entries.push(Entry {
            path,
            source: PathBuf::from(&library),
            mode: 0o755,
        });
    }
    let library_dirs: BTreeSet<String> = entries
        .iter()
        .filter(|entry| !entry.path.starts_with("/bin/"))
        .filter_map(|entry| entry.path.rsplit_once('/').map(|(dir, _)| dir.to_string()))
        .filter(|dir| !dir.is_empty())
        .collect();
    let mut args: Vec<OsString> = os_args(&[
        "import",
        "--change",
        "ENV PATH=/bin",
        "--change",
        "WORKDIR /",
    ]);
    if !library_dirs.is_empty() {
        let joined = library_dirs.into_iter().collect::<Vec<_>>().join(":");
        args.extend(os_args(&[
            "--change",
            &format!("ENV LD_LIBRARY_PATH={joined}"),
        ]));
    }
    args.extend(os_args(&["-", tag]));
    let feed: Feeder<'_> = Box::new(move |pipe| write_tar(pipe, &entries));
    docker.run_feeding(&args, feed, IMPORT_TIMEOUT)?;
    Ok(())
}
