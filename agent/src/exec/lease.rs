//! The isolation lease of an `--on-isolation stop` task, held by its shim as well as by the
//! agent.
//!
//! The agent stops such a task once it has heard no manager for the lease, and the leader
//! replaces it only after that lease, so the slot never runs twice. But tasks outlive their
//! agent: an agent that is killed or frozen stops nothing, and its tasks would run on while the
//! leader starts their replacements. So the agent also writes each such task's deadline into
//! its directory (`lease`), moving it forward only while it is in touch with the cluster, and
//! the shim stops the task itself when the deadline passes with nobody moving it. The deadline
//! is on `CLOCK_BOOTTIME`, which every process of the machine shares and no one can set.

use std::path::Path;
use std::time::Duration;

/// The file in a task's directory: the deadline, in milliseconds of `CLOCK_BOOTTIME`.
pub const LEASE_FILE: &str = "lease";

/// Now on `CLOCK_BOOTTIME`, in milliseconds.
pub fn now_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000_000)
}

/// The deadline of a lease of `lease` whose last contact was `since_contact` ago.
pub fn deadline(lease: Duration, since_contact: Duration) -> u64 {
    let left = lease.saturating_sub(since_contact);
    now_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
}

/// Writes the task's deadline (atomically; not synced: a deadline does not outlive a reboot).
pub fn write(dir: &Path, deadline_ms: u64) -> std::io::Result<()> {
    let path = dir.join(LEASE_FILE);
    let temporary = dir.join(format!("{LEASE_FILE}.tmp"));
    std::fs::write(&temporary, deadline_ms.to_string())?;
    std::fs::rename(&temporary, path)
}

/// The task's deadline, if it has one.
pub fn read(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(LEASE_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether a lease whose deadline on disk is `deadline_ms` (none: unreadable or never written)
/// has run out by `now_ms`, or will within `within`: a task whose lease cannot be renewed is
/// stopped by its shim then.
pub fn runs_out(deadline_ms: Option<u64>, now_ms: u64, within: Duration) -> bool {
    let within = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
    deadline_ms.is_none_or(|deadline| deadline <= now_ms.saturating_add(within))
}

/// Whether the task in `dir` has a lease that ran out.
pub fn expired(dir: &Path) -> bool {
    read(dir).is_some_and(|deadline| now_ms() > deadline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unrenewed_lease_runs_out_at_its_deadline_or_without_one() {
        let within = Duration::from_secs(1);
        assert!(!runs_out(Some(10_000), 5_000, within));
        assert!(!runs_out(Some(10_000), 8_999, within));
        assert!(runs_out(Some(10_000), 9_000, within), "within the margin");
        assert!(runs_out(Some(10_000), 20_000, within), "past it");
        assert!(
            runs_out(None, 0, within),
            "a lease nobody can read holds nothing"
        );
    }

    #[test]
    fn a_deadline_runs_from_the_last_contact() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!expired(dir.path()), "no lease, nothing expires");
        write(
            dir.path(),
            deadline(Duration::from_secs(5), Duration::from_secs(1)),
        )
        .unwrap();
        assert!(!expired(dir.path()));
        let left = read(dir.path()).unwrap() - now_ms();
        assert!((3_900..=4_000).contains(&left), "{left}");
        write(
            dir.path(),
            deadline(Duration::from_secs(5), Duration::from_secs(6)),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(expired(dir.path()));
    }
}
