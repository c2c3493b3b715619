//! Ports from the OS, so that tests run in parallel without a fixed port plan.
//!
//! An agent's Raft and remote addresses must be known before it starts (other nodes and the
//! harness's restarts need them), so passing port 0 to the agent is not enough: the harness
//! binds port 0 itself, reads the port the OS chose and releases it for the agent. Another
//! process could take it in between; the OS hands out ports round-robin, which makes that rare,
//! and this process never hands out the same port twice.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;

use super::HarnessError;

const ATTEMPTS: usize = 64;

/// Every port this process has handed out, so two agents of one test binary never share one.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not handed out.
pub fn free_port() -> Result<u16, HarnessError> {
    for _ in 0..ATTEMPTS {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(HarnessError::io("cannot bind a TCP port on 127.0.0.1"))?;
        let port = listener
            .local_addr()
            .map_err(HarnessError::io("cannot read a bound TCP port"))?
            .port();
        drop(listener);
        // A poisoned lock still holds a valid set: a panic elsewhere cannot corrupt it.
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(HarnessError::NoFreePort { attempts: ATTEMPTS })
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> Result<SocketAddr, HarnessError> {
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)))
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
}
