//! Ports for agents, so that tests and testnets run in parallel without a fixed port plan.
//!
//! An agent's Raft and remote addresses must be known before it starts (other nodes and the
//! harness's restarts need them), so passing port 0 to the agent is not enough: the harness
//! picks a port, checks it is free and leaves it for the agent to bind. Two things could take it
//! in between, and both have happened in CI:
//!
//! - **an outgoing connection**: every `connect` takes a local port from the kernel's ephemeral
//!   range, so a port the OS handed out for `bind(0)` (which comes from that same range) can be
//!   the source port of some other agent's connection a moment later. Ports are therefore
//!   picked *below* the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), where the
//!   kernel never puts a connection of its own accord;
//! - **another process picking the same port**: a port is claimed with an exclusive lock on a
//!   file named after it under `$TMPDIR/symphony-ports/`, held for the rest of this process's
//!   life (the OS drops it when the process ends, however it ends), and a port whose file another
//!   process holds is skipped. Within this process, a port is never handed out twice.
//!
//! A port is taken only if both TCP and UDP on 127.0.0.1 bind: the remote address serves the
//! node-to-node API over TCP and gossip over UDP.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Mutex;

use super::HarnessError;

/// The lowest port picked: well above the registered services most machines run.
const LOWEST: u16 = 20_000;

/// Where the ephemeral range starts when the kernel does not say (Linux's default).
const DEFAULT_EPHEMERAL_LOW: u16 = 32_768;

/// How many candidates are tried before giving up.
const ATTEMPTS: usize = 512;

/// Ports this process has handed out, with the lock file that claims each one. The files stay
/// open (and locked) until the process exits.
static HANDED_OUT: Mutex<Claims> = Mutex::new(Claims {
    ports: BTreeSet::new(),
    locks: Vec::new(),
});

struct Claims {
    ports: BTreeSet<u16>,
    locks: Vec<File>,
}

/// A port on 127.0.0.1, free for TCP and UDP a moment ago, outside the kernel's ephemeral
/// range, claimed by no other process and not handed out before by this one.
pub fn free_port() -> Result<u16, HarnessError> {
    let (low, high) = pick_range();
    let lock_dir = lock_dir();
    std::fs::create_dir_all(&lock_dir).map_err(HarnessError::io(
        "cannot create the port lock directory under $TMPDIR",
    ))?;
    // A poisoned lock still holds a valid set: a panic elsewhere cannot corrupt it.
    let mut claims = HANDED_OUT
        .lock()
        .unwrap_or_else(|poison| poison.into_inner());
    for _ in 0..ATTEMPTS {
        // Random candidates, not a scan from the bottom: two processes starting together
        // would otherwise contend for the same few ports.
        let port: u16 = rand::random_range(low..high);
        if claims.ports.contains(&port) {
            continue;
        }
        let Some(lock) = claim(&lock_dir, port)? else {
            continue;
        };
        if !binds(port) {
            continue;
        }
        claims.ports.insert(port);
        claims.locks.push(lock);
        return Ok(port);
    }
    Err(HarnessError::NoFreePort { attempts: ATTEMPTS })
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> Result<SocketAddr, HarnessError> {
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)))
}

/// `[low, high)`: from [`LOWEST`] to where the kernel's ephemeral range starts. Where that
/// leaves too few ports (a kernel configured with a low ephemeral range), the ports above the
/// range are used instead, up to 65535.
fn pick_range() -> (u16, u16) {
    let (ephemeral_low, ephemeral_high) = ephemeral_range();
    if ephemeral_low >= LOWEST + 1_000 {
        (LOWEST, ephemeral_low)
    } else {
        (ephemeral_high.saturating_add(1).max(LOWEST), u16::MAX)
    }
}

/// The kernel's ephemeral port range, inclusive.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or((DEFAULT_EPHEMERAL_LOW, 60_999))
}

fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut fields = text.split_whitespace().map(str::parse::<u16>);
    match (fields.next(), fields.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
        _ => None,
    }
}

fn lock_dir() -> PathBuf {
    std::env::temp_dir().join("symphony-ports")
}

/// The lock on `port`'s file, or `None` if another process holds it.
fn claim(dir: &std::path::Path, port: u16) -> Result<Option<File>, HarnessError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(port.to_string()))
        .map_err(HarnessError::io("cannot open a port lock file"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(HarnessError::io("cannot lock a port lock file")(error))
        }
    }
}

/// Whether both TCP and UDP bind on 127.0.0.1:`port` right now.
fn binds(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ports_are_never_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let unique: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        assert!(ports.iter().all(|port| *port != 0));
    }

    #[test]
    fn ports_come_from_below_the_ephemeral_range() {
        let (low, high) = pick_range();
        let (ephemeral_low, ephemeral_high) = ephemeral_range();
        for _ in 0..20 {
            let port = free_port().unwrap();
            assert!((low..high).contains(&port), "{port} outside {low}..{high}");
            assert!(
                !(ephemeral_low..=ephemeral_high).contains(&port),
                "{port} is in the ephemeral range {ephemeral_low}-{ephemeral_high}"
            );
        }
    }

    #[test]
    fn a_port_another_process_claimed_is_skipped() {
        // Another process's claim is a lock on the port's file; a second open file description
        // in this process stands for it (flock locks belong to the open file, not the process).
        let port = free_port().unwrap();
        let other = std::fs::OpenOptions::new()
            .write(true)
            .open(lock_dir().join(port.to_string()))
            .unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        assert!(claim(&lock_dir(), port).unwrap().is_none());
    }

    #[test]
    fn the_kernel_range_is_parsed_and_garbage_is_not() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("60999 32768"), None);
        assert_eq!(parse_range("x y"), None);
        assert_eq!(parse_range(""), None);
    }
}
