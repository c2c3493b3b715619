//! Synthetic identities: member `i` of a simulation gossips at `10.a.b.c:7946`, where
//! `a.b.c` is `i + 1` in base 256.
//!
//! The address is the only thing the simulation needs to route a packet (foca addresses
//! members by [`Identity::addr`](foca::Identity::addr)), and encoding the member's index in
//! it makes routing a few shifts instead of a map lookup per packet. Nothing is ever sent on a
//! socket. The other fields are shaped like a real node's (a random 64-bit node id, a
//! millisecond-clock incarnation, a remote address string) so that the encoded packets, and
//! so the byte counts, are the sizes the real driver sends.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::identity::{GossipIdentity, Role};

/// The gossip port of every simulated member.
pub const GOSSIP_PORT: u16 = 7946;
/// The remote (node-to-node API) port in the identities' `remote_addr`.
const REMOTE_PORT: u16 = 27242;
/// The Raft port in managers' identities.
const RAFT_PORT: u16 = 15760;
/// How many of the first members are managers (carry a Raft address), as in a real cluster.
const MANAGERS: u32 = 3;
/// Incarnations start near a 2025 wall clock in milliseconds, like
/// [`GossipIdentity::new`]'s, so they encode to as many bytes.
const INCARNATION_BASE: u64 = 1_750_000_000_000;
/// The largest index that fits in `10.a.b.c` after the `+ 1`.
pub const MAX_MEMBERS: u32 = (1 << 24) - 1;

/// The gossip address of member `index`, or `None` past [`MAX_MEMBERS`].
pub fn address_of(index: u32) -> Option<SocketAddr> {
    if index >= MAX_MEMBERS {
        return None;
    }
    let [_, a, b, c] = (index + 1).to_be_bytes();
    Some(SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(10, a, b, c),
        GOSSIP_PORT,
    )))
}

/// The member index an address stands for, if it is one of the simulation's.
pub fn index_of(addr: SocketAddr) -> Option<u32> {
    let SocketAddr::V4(v4) = addr else {
        return None;
    };
    let [ten, a, b, c] = v4.ip().octets();
    if ten != 10 || v4.port() != GOSSIP_PORT {
        return None;
    }
    u32::from_be_bytes([0, a, b, c]).checked_sub(1)
}

/// SplitMix64: a stable, well-mixed function from (seed, index) to a node id.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The identity of member `index` in a simulation seeded with `seed`, or `None` past
/// [`MAX_MEMBERS`].
pub fn identity_of(index: u32, seed: u64) -> Option<GossipIdentity> {
    let gossip_addr = address_of(index)?;
    let ip = gossip_addr.ip();
    let manager = index < MANAGERS;
    Some(GossipIdentity {
        // Non-zero: zero is the seed placeholder's id.
        node_id: mix(seed ^ mix(u64::from(index))) | 1,
        role: if manager { Role::Manager } else { Role::Worker },
        gossip_addr,
        remote_addr: format!("{ip}:{REMOTE_PORT}"),
        raft_addr: manager.then(|| format!("{ip}:{RAFT_PORT}")),
        incarnation: INCARNATION_BASE + u64::from(index),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for index in [0, 1, 254, 255, 256, 9_999, 65_535, 65_536, MAX_MEMBERS - 1] {
            let Some(addr) = address_of(index) else {
                unreachable!("{index} is addressable")
            };
            assert_eq!(index_of(addr), Some(index));
        }
        assert_eq!(address_of(MAX_MEMBERS), None);
        assert_eq!(
            address_of(0).map(|addr| addr.to_string()),
            Some("10.0.0.1:7946".into())
        );
        assert_eq!(
            index_of(
                "10.0.0.0:7946"
                    .parse()
                    .unwrap_or(SocketAddr::from(([0; 4], 0)))
            ),
            None
        );
        assert_eq!(
            index_of(
                "10.0.0.1:7947"
                    .parse()
                    .unwrap_or(SocketAddr::from(([0; 4], 0)))
            ),
            None
        );
    }

    #[test]
    fn identities_are_distinct_and_stable() {
        let a = identity_of(5, 1);
        let b = identity_of(6, 1);
        assert_eq!(a, identity_of(5, 1));
        assert_ne!(a.map(|id| id.node_id), b.map(|id| id.node_id));
        assert!(identity_of(0, 1).is_some_and(|id| id.raft_addr.is_some()));
        assert!(identity_of(3, 1).is_some_and(|id| id.raft_addr.is_none()));
    }
}
