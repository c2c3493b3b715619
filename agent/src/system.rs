//! Facts about the machine the agent runs on.

/// The machine's host name, as the kernel knows it.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Total memory in bytes, from /proc/meminfo; 0 when unknown.
pub fn total_memory_bytes() -> u64 {
    let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") else {
        return 0;
    };
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// The CPUs this process may use.
pub fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// Raises this process's limit on open files to the most it may have, and returns it: an
/// agent holds a connection per peer and per worker, and a limit of 1024 would let a flood of
/// idle connections starve it before any listener's cap applies.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(maximum) = limit.maximum
        && limit.current != Some(maximum)
    {
        let raised = rustix::process::Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return maximum;
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

/// Connections one listener may hold at once, given `open_files` for the whole process: a
/// quarter each for the Raft port, the node-to-node API and the control socket, the rest for
/// files and outgoing connections; never more than 16,384.
pub fn connection_cap(open_files: u64) -> usize {
    usize::try_from((open_files / 4).clamp(64, 16_384)).unwrap_or(16_384)
}

/// The bytes free for this user on the file system of `path`, and its size.
pub fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    let stat = rustix::fs::statvfs(path).ok()?;
    let unit = stat.f_frsize.max(1);
    Some((
        stat.f_bavail.saturating_mul(unit),
        stat.f_blocks.saturating_mul(unit),
    ))
}

/// The free space a file system of `total` bytes keeps for the Raft store's own writes (votes,
/// truncations, compaction, the state rows of internal decisions) once client writes stop: a
/// twentieth of it, between 4 and 256 MiB.
pub fn space_floor(total: u64) -> u64 {
    (total / 20).clamp(4 << 20, 256 << 20)
}
