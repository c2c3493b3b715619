//! [`Traffic`]: what the simulated members sent and what became of it.
//!
//! Bytes are what would cross the wire in a UDP payload: foca's encoded message plus what the
//! driver's framing adds — a [`packet`](crate::packet) header for plain framing (the simulation does not
//! build that header, since it cannot corrupt packets, but counts it), or the whole sealed
//! packet when the simulation seals. IP and UDP headers are not counted.

use std::ops::Sub;

/// Cumulative packet counters of a simulation. Subtract two snapshots for a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Packets members handed to the network.
    pub sent: u64,
    /// Their bytes, header included.
    pub bytes: u64,
    /// Packets the network dropped (the loss probability).
    pub lost: u64,
    /// Packets that arrived at a crashed member, or at an address that is nobody's.
    pub undeliverable: u64,
    /// Packets handed to a live member's foca.
    pub delivered: u64,
    /// Of those, packets foca rejected (stale, not for this identity, from a declared-down
    /// member's old self...). Normal in small numbers.
    pub rejected: u64,
    /// Packets a sealing member refused before foca (failed authentication, replays): should
    /// stay zero, since the simulated network neither forges nor duplicates.
    pub unsealed_drops: u64,
}

impl Traffic {
    /// A packet of `wire_len` bytes, framing included, was sent.
    pub(crate) fn record_send(&mut self, wire_len: usize) {
        self.sent += 1;
        self.bytes += u64::try_from(wire_len).unwrap_or(u64::MAX);
    }
}

impl Sub for Traffic {
    type Output = Traffic;

    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            sent: self.sent.saturating_sub(earlier.sent),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            lost: self.lost.saturating_sub(earlier.lost),
            undeliverable: self.undeliverable.saturating_sub(earlier.undeliverable),
            delivered: self.delivered.saturating_sub(earlier.delivered),
            rejected: self.rejected.saturating_sub(earlier.rejected),
            unsealed_drops: self.unsealed_drops.saturating_sub(earlier.unsealed_drops),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet;

    #[test]
    fn windows_subtract() {
        let mut traffic = Traffic::default();
        traffic.record_send(100 + packet::HEADER_LEN);
        let before = traffic;
        traffic.record_send(10 + packet::HEADER_LEN);
        let window = traffic - before;
        assert_eq!(window.sent, 1);
        assert_eq!(window.bytes, (10 + packet::HEADER_LEN) as u64);
    }
}
