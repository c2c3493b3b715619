//! The one reader of Linux's `/proc` in testnet: a process's state, start time and CPU time
//! (`/proc/PID/stat`), its memory and threads (`/proc/PID/status`, `/proc/PID/task`), the
//! machine's busy CPU time and available memory (`/proc/stat`, `/proc/meminfo`), its IPv4
//! routes (`/proc/net/route`) and where cgroup2 is mounted (`/proc/self/mountinfo`).
//!
//! The lab's local backend uses it to tell a node's process from a recycled pid, to see
//! whether it runs, is stopped or is gone, and to find the cgroup2 hierarchy; the docker
//! backend to pick a network no route of the host overlaps; `bench fleet` to measure the
//! fleet's CPU and memory.
//! Each file is parsed by a pure function, tested on sample text.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Why a `/proc` file gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// Most often: the process is gone.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {}", path.display())]
    Parse { path: PathBuf },
}

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: `R`, `S`, `D` (running or sleeping), `T`, `t` (stopped), `Z`, `X`, `x` (dead),
    /// ...
    pub state: char,
    /// Fields 14 and 15: user and system CPU time of all its threads, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Field 22: when it started, in clock ticks since boot. With the pid it names one process
    /// for good: a recycled pid has another start time.
    pub start_ticks: u64,
}

impl Stat {
    /// utime + stime, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime + self.stime
    }

    /// A zombie or dead process (its main thread, at least).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }

    /// Stopped by a signal (SIGSTOP) or a tracer.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, 'T' | 't')
    }
}

/// `/proc/PID/stat`.
pub fn stat(pid: u32) -> Result<Stat, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let text = read(&path)?;
    parse_stat(&text).ok_or(ProcError::Parse { path })
}

/// Parses a `/proc/PID/stat` line. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after_name) = text.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name, field 3 (the state) comes first: field N is at N - 3.
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    Some(Stat {
        state: fields.first()?.chars().next()?,
        utime: field(14)?,
        stime: field(15)?,
        start_ticks: field(22)?,
    })
}

/// How many threads of process `pid` exist (`/proc/PID/task`), `None` if it is gone.
pub fn thread_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()
        .map(Iterator::count)
}

/// What `/proc/PID/status` says of a process's memory and threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// VmRSS: resident memory, in KiB.
    pub rss_kib: u64,
    /// RssAnon: its private part, in KiB (0 on kernels without the field).
    pub anon_kib: u64,
    pub threads: u64,
}

/// `/proc/PID/status`.
pub fn status(pid: u32) -> Result<Status, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = read(&path)?;
    parse_status(&text).ok_or(ProcError::Parse { path })
}

/// VmRSS, RssAnon (both in kB) and Threads of a `/proc/PID/status`.
pub fn parse_status(text: &str) -> Option<Status> {
    Some(Status {
        rss_kib: first_number_after(text, "VmRSS:")?,
        anon_kib: first_number_after(text, "RssAnon:").unwrap_or_default(),
        threads: first_number_after(text, "Threads:").unwrap_or_default(),
    })
}

/// Non-idle clock ticks of all CPUs since boot, from the first line of `/proc/stat`.
pub fn machine_busy_ticks() -> Result<u64, ProcError> {
    let path = PathBuf::from("/proc/stat");
    let text = read(&path)?;
    parse_machine_busy(&text).ok_or(ProcError::Parse { path })
}

/// user nice system idle iowait irq softirq steal (guest time is already in user): all but
/// idle and iowait are busy.
pub fn parse_machine_busy(text: &str) -> Option<u64> {
    let line = text.lines().next()?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 8 {
        return None;
    }
    Some(fields.iter().sum::<u64>() - fields[3] - fields[4])
}

/// MemAvailable of `/proc/meminfo`, in KiB.
pub fn mem_available_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

pub fn parse_mem_available(text: &str) -> Option<u64> {
    first_number_after(text, "MemAvailable:")
}

/// The kernel's clock ticks per second (USER_HZ), the unit of `/proc` CPU times: `getconf
/// CLK_TCK`, else the 100 every Linux architecture uses in practice.
pub fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .filter(|ticks: &f64| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// One IPv4 route of the host: destination and prefix mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Route {
    pub destination: u32,
    pub mask: u32,
}

impl Ipv4Route {
    /// Whether the route's network and `base/prefix` share any address. The default route
    /// (mask 0) overlaps nothing: it is where everything not otherwise routed goes.
    pub fn overlaps(self, base: Ipv4Addr, prefix: u32) -> bool {
        if self.mask == 0 {
            return false;
        }
        let other_mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
        let common = self.mask & other_mask;
        (self.destination & common) == (u32::from(base) & common)
    }
}

/// The host's IPv4 routes, from `/proc/net/route` (none if it cannot be read).
pub fn ipv4_routes() -> Vec<Ipv4Route> {
    std::fs::read_to_string("/proc/net/route")
        .map(|text| parse_routes(&text))
        .unwrap_or_default()
}

/// Parses `/proc/net/route`: destination in column 2 and mask in column 8, each the hex of the
/// address's network-order bytes read as a native-endian number.
pub fn parse_routes(text: &str) -> Vec<Ipv4Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            Some(Ipv4Route {
                destination: u32::from_be_bytes(destination.to_ne_bytes()),
                mask: u32::from_be_bytes(mask.to_ne_bytes()),
            })
        })
        .collect()
}

/// Where this process sees the cgroup2 hierarchy mounted (`/proc/self/mountinfo`); `None`
/// when it is not.
pub fn cgroup2_mount() -> Result<Option<PathBuf>, ProcError> {
    let path = PathBuf::from("/proc/self/mountinfo");
    Ok(parse_cgroup2_mount(&read(&path)?))
}

/// The mount point of the cgroup2 hierarchy in a `/proc/self/mountinfo` text.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (mount_fields, fs_fields) = line.split_once(" - ")?;
        if fs_fields.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        // Field 5 is the mount point (octal escapes such as \040 only for unusual paths).
        mount_fields.split_whitespace().nth(4).map(PathBuf::from)
    })
}

fn read(path: &std::path::Path) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The number that follows `name` at the start of a line (`VmRSS:   12345 kB`).
fn first_number_after(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reads_state_cpu_and_start_after_the_command_name() {
        let text = "4242 (symphony (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    123 45 0 0 20 0 9 0 5000 1276440576 16305 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!((stat.utime, stat.stime, stat.cpu_ticks()), (123, 45, 168));
        assert_eq!(stat.start_ticks, 5000);
        assert!(!stat.is_dead() && !stat.is_stopped());
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let stat = stat(std::process::id()).unwrap();
        assert!(stat.start_ticks > 0);
        assert!(thread_count(std::process::id()).unwrap() >= 1);
        assert!(status(std::process::id()).unwrap().rss_kib > 0);
    }

    #[test]
    fn reads_machine_busy_ticks() {
        let text = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 50 2 25 500 10 0 1 1 0 0\n";
        assert_eq!(parse_machine_busy(text), Some(161));
        assert_eq!(parse_machine_busy("cpu 1 2"), None);
    }

    #[test]
    fn reads_resident_memory_and_threads() {
        let text = "Name:\tsymphony-agent\nVmRSS:\t   12345 kB\nRssAnon:\t    8000 kB\n\
                    RssFile:\t    4345 kB\nThreads:\t3\n";
        assert_eq!(
            parse_status(text),
            Some(Status {
                rss_kib: 12345,
                anon_kib: 8000,
                threads: 3,
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn reads_available_memory() {
        let meminfo =
            "MemTotal:       24684000 kB\nMemFree:  100 kB\nMemAvailable:   19330000 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(19_330_000));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn reads_routes_and_finds_overlaps() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let routes = parse_routes(text);
        assert_eq!(routes.len(), 3);
        assert_eq!(
            Ipv4Addr::from(routes[1].destination),
            Ipv4Addr::new(172, 17, 0, 0)
        );
        assert_eq!(
            Ipv4Addr::from(routes[1].mask),
            Ipv4Addr::new(255, 255, 0, 0)
        );
        let overlapping = |a, b, c| {
            routes
                .iter()
                .any(|route| route.overlaps(Ipv4Addr::new(a, b, c, 0), 24))
        };
        assert!(overlapping(172, 17, 5), "inside docker0's /16");
        assert!(overlapping(192, 0, 2), "the host's own /24");
        assert!(
            !overlapping(172, 31, 5),
            "the default route overlaps nothing"
        );
    }

    #[test]
    fn finds_the_cgroup2_mount() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu\n\
                      36 25 0:31 / /sys/fs/cgroup/unified rw,relatime shared:13 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parse_cgroup2_mount(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            parse_cgroup2_mount("1 0 0:1 / / rw - ext4 /dev/sda rw\n"),
            None
        );
    }
}
