//! The nodes' image, assembled from this machine's files: nothing can be pulled (no registry is
//! reachable, and the engine may start with no image at all).
//!
//! The image holds exactly what the agent needs to run: the agent binary, the shared libraries
//! `ldd` says it loads (glibc, libgcc_s, the dynamic loader), `/bin/sh` and its libraries (the
//! entrypoint appends the agent's output to `/node/agent.log`, the node's log in the state dir,
//! as the local backend does), an empty `/tmp` and the `/node` mount point. The files go into
//! a tar written on the fly (see [`super::tar`]) and piped into `docker import`; the libraries
//! keep the paths `ldd` names and `LD_LIBRARY_PATH` lists their dirs, so the loader finds them
//! whatever its built-in search path.
//!
//! The tag is a hash of every byte that goes in (`symphony-testnet:<hash>`): an `up` with the
//! same binary finds the image and builds nothing, a rebuilt agent gets a new image. Images are
//! labelled, and building a new one prunes the testnet images that are over an hour old and
//! used by no container, so rebuilding the agent all day does not fill the disk.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::hash::Hasher;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::cli::Docker;
use super::tar::TarWriter;
use crate::lab::LabError;
use crate::lab::exec::{self, Feeder, os_args};

/// The repository part of every image's tag.
pub const REPOSITORY: &str = "symphony-testnet";
/// The label every image carries.
pub const IMAGE_LABEL: &str = "symphony-testnet.image";
/// Where the agent binary is in the image.
pub const AGENT_PATH: &str = "/usr/local/bin/symphony-agent";
/// Where the node's dir is mounted.
pub const NODE_MOUNT: &str = "/node";
/// Bumped when the image's layout changes, so that older images are not reused.
const LAYOUT: &str = "symphony-testnet image v1";
/// How long `docker import` of a (large, debug) agent may take.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `ldd` may take.
const LDD_TIMEOUT: Duration = Duration::from_secs(30);

/// One process builds one image at a time: parallel `up`s (tests) wait for the first build
/// instead of importing the same bytes side by side.
static BUILDING: Mutex<()> = Mutex::new(());

/// A file of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// Absolute path inside the image.
    pub(super) path: String,
    /// Where its bytes come from on this machine.
    pub(super) source: PathBuf,
    pub(super) mode: u32,
}

/// Makes sure the image for `agent_bin` exists; returns its tag.
pub fn ensure(docker: &Docker, agent_bin: &Path) -> Result<String, LabError> {
    let _building = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
    let entries = contents(agent_bin)?;
    let tag = format!("{REPOSITORY}:{}", hash(&entries)?);
    if docker
        .output(&["image", "inspect", "--format", "{{.Id}}", &tag])?
        .success
    {
        return Ok(tag);
    }
    import(docker, &tag, &entries)?;
    // Best effort: an image that cannot be removed now is removed by a later build.
    let _ = docker.output(&[
        "image",
        "prune",
        "--all",
        "--force",
        "--filter",
        &format!("label={IMAGE_LABEL}"),
        "--filter",
        "until=1h",
    ]);
    Ok(tag)
}

/// The image's files: the agent, `/bin/sh`, and the libraries both load.
fn contents(agent_bin: &Path) -> Result<Vec<Entry>, LabError> {
    let shell = PathBuf::from("/bin/sh");
    let mut entries = vec![
        Entry {
            path: AGENT_PATH.to_string(),
            source: agent_bin.to_path_buf(),
            mode: 0o755,
        },
        Entry {
            path: "/bin/sh".to_string(),
            source: shell.clone(),
            mode: 0o755,
        },
    ];
    let mut libraries = BTreeSet::new();
    for binary in [agent_bin, &shell] {
        libraries.extend(shared_libraries(binary)?);
    }
    for library in libraries {
        let path = library.to_string_lossy().into_owned();
        if entries.iter().any(|entry| entry.path == path) {
            continue;
        }
        entries.push(Entry {
            path,
            source: library,
            mode: 0o755,
        });
    }
    Ok(entries)
}

/// The shared libraries `binary` loads, as `ldd` lists them (none for a static binary).
pub(super) fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, LabError> {
    let Some(ldd) = exec::find_on_path("ldd") else {
        return Err(LabError::BackendUnavailable {
            backend: "docker",
            reason: "ldd is not installed here, and the nodes' image is assembled from the agent's shared libraries; install it (Debian: libc-bin)".to_string(),
        });
    };
    let args = vec![binary.as_os_str().to_os_string()];
    let output = exec::execute(&ldd, &args, None, LDD_TIMEOUT).map_err(LabError::io(format!(
        "cannot run {}",
        exec::show(&ldd, &args)
    )))?;
    let text = format!("{}{}", output.stdout, output.stderr);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !output.success {
        return Err(LabError::CommandFailed {
            command: exec::show(&ldd, &args),
            status: output.status.clone(),
            output: output.first_line(),
        });
    }
    parse_ldd(&output.stdout).map_err(|library| LabError::CommandFailed {
        command: exec::show(&ldd, &args),
        status: output.status,
        output: format!("{} needs {library}, which is not found", binary.display()),
    })
}

/// The absolute paths in `ldd` output; `Err(name)` for a library that is not found.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, `/lib64/ld-linux-x86-64.so.2
        // (0x...)`, or `linux-vdso.so.1 (0x...)` (in the kernel, not a file).
        let (name, target) = match line.split_once("=>") {
            Some((name, target)) => (name.trim(), target.trim()),
            None => (line, line),
        };
        if target.starts_with("not found") {
            return Err(name.to_string());
        }
        let path = target.split(" (").next().unwrap_or(target).trim();
        if path.starts_with('/') {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

/// The image's name: a hash of its layout and of every file's path, mode and bytes.
fn hash(entries: &[Entry]) -> Result<String, LabError> {
    // std's hasher: fast on a large debug binary, and the tag only has to be stable for as
    // long as the testnet binary is the same build (a rebuilt one at worst imports again).
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(LAYOUT.as_bytes());
    let mut buffer = vec![0u8; 1 << 20];
    for entry in entries {
        hasher.write(entry.path.as_bytes());
        hasher.write_u32(entry.mode);
        let mut file = File::open(&entry.source).map_err(LabError::io(format!(
            "cannot read {}",
            entry.source.display()
        )))?;
        loop {
            let read = file.read(&mut buffer).map_err(LabError::io(format!(
                "cannot read {}",
                entry.source.display()
            )))?;
            if read == 0 {
                break;
            }
            hasher.write(&buffer[..read]);
        }
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// `docker import` of the image's files as `tag`.
fn import(docker: &Docker, tag: &str, entries: &[Entry]) -> Result<(), LabError> {
    let entrypoint = serde_json::to_string(&[
        "/bin/sh",
        "-c",
        // `exec`, so the agent is the container's first process and `docker kill` reaches it.
        &format!("exec {AGENT_PATH} \"$@\" >>{NODE_MOUNT}/agent.log 2>&1"),
        "symphony-agent",
    ])
    .map_err(|error| {
        LabError::InvalidArgument(format!("cannot encode the image's entrypoint: {error}"))
    })?;
    let library_dirs: BTreeSet<&str> = entries
        .iter()
        .filter(|entry| entry.path != AGENT_PATH && entry.path != "/bin/sh")
        .filter_map(|entry| entry.path.rsplit_once('/').map(|(dir, _)| dir))
        .filter(|dir| !dir.is_empty())
        .collect();
    let mut args: Vec<OsString> = os_args(&[
        "import",
        "--change",
        &format!("ENTRYPOINT {entrypoint}"),
        "--change",
        &format!("LABEL {IMAGE_LABEL}=1"),
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
    let feed: Feeder<'_> = Box::new(move |pipe| write_tar(pipe, entries));
    docker.run_feeding(&args, feed, IMPORT_TIMEOUT)?;
    Ok(())
}

/// The image as a tar: every directory, then every file, in a fixed order.
pub(super) fn write_tar(out: &mut dyn std::io::Write, entries: &[Entry]) -> std::io::Result<()> {
    let mut tar = TarWriter::new(BufWriter::with_capacity(1 << 20, out));
    let mut dirs = BTreeSet::new();
    for entry in entries {
        let mut dir = Path::new(&entry.path).parent();
        while let Some(parent) = dir {
            let relative = parent.to_string_lossy().trim_start_matches('/').to_string();
            if !relative.is_empty() {
                dirs.insert(relative);
            }
            dir = parent.parent();
        }
    }
    // Parents sort before their children.
    for dir in &dirs {
        tar.dir(dir, 0o755)?;
    }
    tar.dir("tmp", 0o1777)?;
    tar.dir(NODE_MOUNT.trim_start_matches('/'), 0o755)?;
    for entry in entries {
        let mut file = File::open(&entry.source)?;
        let size = file.metadata()?.len();
        tar.file(
            entry.path.trim_start_matches('/'),
            entry.mode,
            size,
            &mut file,
        )?;
    }
    tar.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_ldd_output() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert_eq!(
            parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err(),
            "libfoo.so.1"
        );
    }

    #[test]
    fn the_tag_follows_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent");
        std::fs::write(&file, b"one").unwrap();
        let entries = vec![Entry {
            path: AGENT_PATH.to_string(),
            source: file.clone(),
            mode: 0o755,
        }];
        let first = hash(&entries).unwrap();
        assert_eq!(first, hash(&entries).unwrap());
        std::fs::write(&file, b"two").unwrap();
        assert_ne!(first, hash(&entries).unwrap());
    }
}
