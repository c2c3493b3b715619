//! Counters the driver keeps, readable from any handle without a round trip to the actor.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::packet::PacketError;

/// A snapshot of the driver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// Every datagram read from the socket, including those later dropped.
    pub packets_received: u64,
    pub packets_sent: u64,
    pub dropped_too_short: u64,
    pub dropped_bad_magic: u64,
    pub dropped_wrong_version: u64,
    pub dropped_foreign_cluster: u64,
    pub dropped_bad_checksum: u64,
    /// Plain packets reaching a node that accepts only sealed ones.
    pub dropped_unsealed: u64,
    /// Sealed with a key id this node does not hold (removed, or never installed here).
    pub dropped_unknown_key: u64,
    /// Failed authentication: forged, sealed with a foreign key, or corrupted.
    pub dropped_unauthenticated: u64,
    /// Authentic, but received before (a replay) or from an earlier life of its sender.
    pub dropped_replayed: u64,
    /// Framed correctly but rejected by foca (undecodable, stale, not addressed to us).
    pub dropped_by_foca: u64,
    /// Outgoing packets lost because the writer's queue was full or the send failed.
    pub send_failures: u64,
}

impl GossipStats {
    /// Every packet dropped before or by foca.
    pub fn dropped(&self) -> u64 {
        self.dropped_too_short
            + self.dropped_bad_magic
            + self.dropped_wrong_version
            + self.dropped_foreign_cluster
            + self.dropped_bad_checksum
            + self.dropped_unsealed
            + self.dropped_unknown_key
            + self.dropped_unauthenticated
            + self.dropped_replayed
            + self.dropped_by_foca
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    packets_received: AtomicU64,
    packets_sent: AtomicU64,
    too_short: AtomicU64,
    bad_magic: AtomicU64,
    wrong_version: AtomicU64,
    foreign_cluster: AtomicU64,
    bad_checksum: AtomicU64,
    unsealed: AtomicU64,
    unknown_key: AtomicU64,
    unauthenticated: AtomicU64,
    replayed: AtomicU64,
    by_foca: AtomicU64,
    send_failures: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn received(&self) {
        bump(&self.packets_received);
    }

    pub(crate) fn sent(&self) {
        bump(&self.packets_sent);
    }

    pub(crate) fn send_failed(&self) {
        bump(&self.send_failures);
    }

    pub(crate) fn dropped_by_foca(&self) {
        bump(&self.by_foca);
    }

    pub(crate) fn dropped(&self, reason: PacketError) {
        bump(match reason {
            PacketError::TooShort(_) => &self.too_short,
            PacketError::BadMagic => &self.bad_magic,
            PacketError::WrongVersion(_) => &self.wrong_version,
            PacketError::ForeignCluster(_) => &self.foreign_cluster,
            PacketError::BadChecksum => &self.bad_checksum,
            PacketError::Unsealed => &self.unsealed,
            PacketError::UnknownKey(_) => &self.unknown_key,
            PacketError::Unauthenticated => &self.unauthenticated,
            PacketError::Replayed => &self.replayed,
        });
    }

    pub(crate) fn snapshot(&self) -> GossipStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        GossipStats {
            packets_received: read(&self.packets_received),
            packets_sent: read(&self.packets_sent),
            dropped_too_short: read(&self.too_short),
            dropped_bad_magic: read(&self.bad_magic),
            dropped_wrong_version: read(&self.wrong_version),
            dropped_foreign_cluster: read(&self.foreign_cluster),
            dropped_bad_checksum: read(&self.bad_checksum),
            dropped_unsealed: read(&self.unsealed),
            dropped_unknown_key: read(&self.unknown_key),
            dropped_unauthenticated: read(&self.unauthenticated),
            dropped_replayed: read(&self.replayed),
            dropped_by_foca: read(&self.by_foca),
            send_failures: read(&self.send_failures),
        }
    }
}
