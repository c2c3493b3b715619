//! The framing of every gossip UDP packet: a fixed header, then foca's payload.
//!
//! ```text
//! magic "SYMG" (4) | version u8 (1) | cluster tag u64 BE (8) | crc32 of body u32 BE (4) | body
//! ```
//!
//! The header keeps foca from ever seeing bytes that are not meant for it: stray traffic on the
//! port, a node of another Symphony cluster whose seed list points here by mistake, a future
//! protocol version, or a datagram corrupted past UDP's weak checksum. None of this is
//! authentication: anyone who knows the cluster id can forge packets. A cluster with a gossip
//! keyring seals every packet instead ([`crate::seal`], version 2), and drops plain ones.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The first bytes of every packet.
pub const MAGIC: [u8; 4] = *b"SYMG";
/// The version of this framing and of the payload inside it.
pub const VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = MAGIC.len() + 1 + 8 + 4;

/// Why a received packet was dropped before reaching foca.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("packet of {0} bytes is shorter than the header")]
    TooShort(usize),
    #[error("packet does not start with the gossip magic")]
    BadMagic,
    #[error("packet has protocol version {0}, expected {VERSION}")]
    WrongVersion(u8),
    #[error("packet belongs to another cluster (tag {0:#018x})")]
    ForeignCluster(u64),
    #[error("packet body does not match its checksum")]
    BadChecksum,
    /// A plain packet where every packet must be sealed.
    #[error("packet is not sealed, and this node accepts only sealed packets")]
    Unsealed,
    #[error("packet is sealed with key {0}, which this node does not hold")]
    UnknownKey(u32),
    /// Sealed under a key id this node holds, yet not by that key: forged or corrupted.
    #[error("packet failed authentication")]
    Unauthenticated,
    /// Authentic, but this node has accepted it before (or it is older than what it has).
    #[error("packet was already received (a replay)")]
    Replayed,
}

/// The 64-bit tag of a cluster id: FNV-1a, chosen because it is stable across Rust releases
/// and platforms (std's hashers are not), so nodes of any build agree on it.
pub fn cluster_tag(cluster_id: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    cluster_id.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// Frames `body` for the cluster with tag `tag`.
pub fn encode(tag: u64, body: &[u8]) -> Bytes {
    let mut packet = BytesMut::with_capacity(HEADER_LEN + body.len());
    packet.put_slice(&MAGIC);
    packet.put_u8(VERSION);
    packet.put_u64(tag);
    packet.put_u32(crc32fast::hash(body));
    packet.put_slice(body);
    packet.freeze()
}

/// Checks the header of `packet` and returns its body. Never panics, whatever the input.
pub fn decode(tag: u64, packet: &[u8]) -> Result<&[u8], PacketError> {
    let Some((header, body)) = packet.split_at_checked(HEADER_LEN) else {
        return Err(PacketError::TooShort(packet.len()));
    };
    let (magic, rest) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(PacketError::BadMagic);
    }
    let (version, rest) = rest.split_at(1);
    if version[0] != VERSION {
        return Err(PacketError::WrongVersion(version[0]));
    }
    let (tag_bytes, crc_bytes) = rest.split_at(8);
    let packet_tag = u64::from_be_bytes(
        tag_bytes
            .try_into()
            .map_err(|_| PacketError::TooShort(packet.len()))?,
    );
    if packet_tag != tag {
        return Err(PacketError::ForeignCluster(packet_tag));
    }
    let crc = u32::from_be_bytes(
        crc_bytes
            .try_into()
            .map_err(|_| PacketError::TooShort(packet.len()))?,
    );
    if crc32fast::hash(body) != crc {
        return Err(PacketError::BadChecksum);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use rand_foca::rngs::SmallRng;
    use rand_foca::{RngExt, SeedableRng};

    use super::*;

    const TAG: u64 = 0x5eed;

    #[test]
    fn round_trip() {
        let packet = encode(TAG, b"hello foca");
        assert_eq!(decode(TAG, &packet), Ok(&b"hello foca"[..]));
        assert_eq!(decode(TAG, &encode(TAG, b"")), Ok(&b""[..]));
    }

    #[test]
    fn each_header_fault_has_its_error() {
        let packet = encode(TAG, b"body").to_vec();
        assert_eq!(decode(TAG, &packet[..3]), Err(PacketError::TooShort(3)));
        let mut bad = packet.clone();
        bad[0] = b'X';
        assert_eq!(decode(TAG, &bad), Err(PacketError::BadMagic));
        let mut bad = packet.clone();
        bad[4] = 9;
        assert_eq!(decode(TAG, &bad), Err(PacketError::WrongVersion(9)));
        assert_eq!(
            decode(TAG + 1, &packet),
            Err(PacketError::ForeignCluster(TAG))
        );
        let mut bad = packet;
        if let Some(last) = bad.last_mut() {
            *last ^= 1;
        }
        assert_eq!(decode(TAG, &bad), Err(PacketError::BadChecksum));
    }

    #[test]
    fn cluster_tags_are_stable_and_distinct() {
        assert_eq!(cluster_tag(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(cluster_tag("prod"), cluster_tag("staging"));
    }

    #[test]
    fn random_truncated_and_flipped_inputs_never_panic() {
        let mut rng = SmallRng::seed_from_u64(7);
        let good = encode(TAG, &[0xab; 64]).to_vec();
        for round in 0..20_000 {
            let len = rng.random_range(0..200);
            let mut input: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if round % 2 == 0 {
                // Mostly valid packets, truncated or with one bit flipped, reach the later checks.
                input = good[..good.len().min(len)].to_vec();
                if let Some(byte) = input.get_mut(rng.random_range(0..good.len())) {
                    *byte ^= 1 << rng.random_range(0..8);
                }
            }
            if let Ok(body) = decode(TAG, &input) {
                assert_eq!(encode(TAG, body).as_ref(), &input[..]);
            }
        }
    }
}
