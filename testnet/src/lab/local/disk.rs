//! Small disks: each node's config dir on a tmpfs of its own, so that a disk-full fault can
//! fill exactly that node's disk (the Raft store, its gossip incarnation, its tasks' files)
//! and nothing else on the machine. Needs root (to mount); `down` unmounts.

use std::path::Path;

/// The file a fill writes, removed to free the space again.
const FILLER: &str = "filler";

/// Whether `dir` is a mount point: its device differs from its parent's.
fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(own), Some(Ok(parent))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata))
    else {
        return false;
    };
    own.dev() != parent.dev()
}

/// Mounts a tmpfs of `megabytes` at `dir` unless one is there already.
pub fn ensure(dir: &Path, megabytes: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let status = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={megabytes}m,mode=0700"),
            "tmpfs",
        ])
        .arg(dir)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "mount -t tmpfs at {} failed ({status}); small disks need root",
            dir.display()
        )))
    }
}

/// Unmounts the tmpfs at `dir` if there is one (lazily: a process may still hold a file).
pub fn release(dir: &Path) -> std::io::Result<()> {
    if !is_mount_point(dir) {
        return Ok(());
    }
    let status = std::process::Command::new("umount")
        .arg("-l")
        .arg(dir)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "umount {} failed ({status})",
            dir.display()
        )))
    }
}

/// Fills the file system of `dir` until a write fails for lack of space.
pub fn fill(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join(FILLER))?;
    let chunk = vec![0u8; 1 << 20];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(error)
                if rustix::io::Errno::from_io_error(&error) == Some(rustix::io::Errno::NOSPC) =>
            {
                break;
            }
            Err(error) => return Err(error),
        }
    }
    // What fits in less than a chunk, too.
    let mut small = vec![0u8; 4096];
    while file.write_all(&small).is_ok() {}
    small.clear();
    Ok(())
}

/// Frees what [`fill`] took.
pub fn free(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(FILLER)) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}
