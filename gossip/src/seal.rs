//! Sealed packets: every gossip packet authenticated and encrypted with XChaCha20-Poly1305
//! under a cluster key, so that only holders of a cluster key can speak in the pool.
//!
//! ```text
//! magic "SYMG" (4) | version 2 (1) | cluster tag u64 BE (8) | key id u32 BE (4) | nonce (24)
//! | ciphertext of [sender u64 BE | epoch u64 BE | seq u64 BE | foca payload] | tag (16)
//! ```
//!
//! The 17 bytes before the nonce are the associated data: a packet moved to another cluster
//! or relabelled with another key id fails authentication. Nonces are 24 random bytes from
//! the OS for every packet; at 192 bits they never repeat in practice, so no counter has to
//! survive a restart. The sender, its epoch and its sequence number travel inside the
//! ciphertext and feed the replay guard ([`crate::replay`]) once the packet is authentic.
//!
//! A [`Keyring`] holds every installed key and names the primary: packets are sealed with
//! the primary and opened with whichever installed key their id names, so a cluster can move
//! to a new key without a moment where two nodes cannot understand each other. Nothing here
//! formats a key: [`GossipKey`]'s `Debug` shows no byte of it, and no error carries one.

use std::collections::BTreeMap;
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use thiserror::Error;

use crate::packet::{MAGIC, PacketError};

/// The framing version of sealed packets (plain ones are [`crate::packet::VERSION`]).
pub const SEALED_VERSION: u8 = 2;
/// A key's name in packets and in `gossip key list`; never secret.
pub type KeyId = u32;
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Magic, version, cluster tag, key id: the associated data.
const AAD_LEN: usize = MAGIC.len() + 1 + 8 + 4;
/// Bytes before the ciphertext.
pub const SEALED_HEADER_LEN: usize = AAD_LEN + NONCE_LEN;
/// Sender, epoch and sequence number, inside the ciphertext.
const STAMP_LEN: usize = 24;
/// What sealing adds to a foca payload.
pub const SEALED_OVERHEAD: usize = SEALED_HEADER_LEN + STAMP_LEN + TAG_LEN;

/// A cluster gossip key: 32 secret bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct GossipKey([u8; KEY_LEN]);

impl GossipKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> GossipKey {
        GossipKey(bytes)
    }

    /// A new key from the OS's random number generator.
    pub fn generate() -> Result<GossipKey, SealError> {
        <[u8; KEY_LEN]>::try_generate()
            .map(GossipKey)
            .map_err(|_| SealError::Random)
    }

    /// The secret bytes, for whoever must store or hand the key over.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GossipKey(<secret>)")
    }
}

/// Who sealed a packet and where it stands in that sender's stream: `sender` is the node id,
/// `epoch` names one life of the sender's driver (the incarnation it started with), `seq`
/// counts the packets that life sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sender: u64,
    pub epoch: u64,
    pub seq: u64,
}

/// Why a packet could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SealError {
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("the packet is too large to seal")]
    TooLarge,
    /// Cannot happen with a keyring built by [`Keyring::new`], which checks its primary.
    #[error("the keyring has no primary key")]
    NoKey,
}

/// Why a keyring could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum KeyringError {
    #[error("the primary key {0} is not among the keys")]
    NoPrimary(KeyId),
    #[error("key id {0} is given twice")]
    Duplicate(KeyId),
}

/// The keys a node accepts and the one it seals with.
#[derive(Clone)]
pub struct Keyring {
    ciphers: BTreeMap<KeyId, XChaCha20Poly1305>,
    primary: KeyId,
}

impl Keyring {
    /// A keyring of `keys`, sealing with `primary`, which must be one of them.
    pub fn new(
        primary: KeyId,
        keys: impl IntoIterator<Item = (KeyId, GossipKey)>,
    ) -> Result<Keyring, KeyringError> {
        let mut ciphers = BTreeMap::new();
        for (id, key) in keys {
            let cipher = XChaCha20Poly1305::new(&Key::from(*key.expose()));
            if ciphers.insert(id, cipher).is_some() {
                return Err(KeyringError::Duplicate(id));
            }
        }
        if !ciphers.contains_key(&primary) {
            return Err(KeyringError::NoPrimary(primary));
        }
        Ok(Keyring { ciphers, primary })
    }

    pub fn primary(&self) -> KeyId {
        self.primary
    }

    /// The installed key ids, in order.
    pub fn ids(&self) -> Vec<KeyId> {
        self.ciphers.keys().copied().collect()
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary)
            .field("ids", &self.ids())
            .finish()
    }
}

fn header(tag: u64, key_id: KeyId) -> [u8; AAD_LEN] {
    let mut header = [0_u8; AAD_LEN];
    let mut out = &mut header[..];
    out.put_slice(&MAGIC);
    out.put_u8(SEALED_VERSION);
    out.put_u64(tag);
    out.put_u32(key_id);
    header
}

/// Seals `body` with the keyring's primary key for the cluster with tag `tag`.
pub fn seal(tag: u64, keyring: &Keyring, stamp: Stamp, body: &[u8]) -> Result<Bytes, SealError> {
    let key_id = keyring.primary;
    let cipher = keyring.ciphers.get(&key_id).ok_or(SealError::NoKey)?;
    let aad = header(tag, key_id);
    let nonce = <[u8; NONCE_LEN]>::try_generate().map_err(|_| SealError::Random)?;
    let mut plaintext = Vec::with_capacity(STAMP_LEN + body.len());
    plaintext.put_u64(stamp.sender);
    plaintext.put_u64(stamp.epoch);
    plaintext.put_u64(stamp.seq);
    plaintext.put_slice(body);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| SealError::TooLarge)?;
    let mut packet = BytesMut::with_capacity(SEALED_HEADER_LEN + ciphertext.len());
    packet.put_slice(&aad);
    packet.put_slice(&nonce);
    packet.put_slice(&ciphertext);
    Ok(packet.freeze())
}

/// An authentic packet: who sealed it and foca's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub stamp: Stamp,
    pub key_id: KeyId,
    pub body: Vec<u8>,
}

/// Checks and decrypts a sealed packet. The header is checked first (so that stray traffic,
/// plain packets and other clusters are told apart in the counters), then the tag; nothing
/// inside the ciphertext is read before it has been authenticated. Never panics.
pub fn open(tag: u64, keyring: &Keyring, packet: &[u8]) -> Result<Opened, PacketError> {
    if packet.len() < MAGIC.len() + 1 {
        return Err(PacketError::TooShort(packet.len()));
    }
    if packet.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(PacketError::BadMagic);
    }
    match packet.get(MAGIC.len()).copied() {
        Some(SEALED_VERSION) => {}
        Some(crate::packet::VERSION) => return Err(PacketError::Unsealed),
        Some(other) => return Err(PacketError::WrongVersion(other)),
        None => return Err(PacketError::TooShort(packet.len())),
    }
    let too_short = PacketError::TooShort(packet.len());
    let Some((aad, rest)) = packet.split_at_checked(AAD_LEN) else {
        return Err(too_short);
    };
    let Some((nonce, ciphertext)) = rest.split_at_checked(NONCE_LEN) else {
        return Err(too_short);
    };
    if ciphertext.len() < STAMP_LEN + TAG_LEN {
        return Err(too_short);
    }
    let field = |range: std::ops::Range<usize>| aad.get(range).ok_or(too_short);
    let packet_tag = u64::from_be_bytes(field(5..13)?.try_into().map_err(|_| too_short)?);
    if packet_tag != tag {
        return Err(PacketError::ForeignCluster(packet_tag));
    }
    let key_id = u32::from_be_bytes(field(13..17)?.try_into().map_err(|_| too_short)?);
    let cipher = keyring
        .ciphers
        .get(&key_id)
        .ok_or(PacketError::UnknownKey(key_id))?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| too_short)?;
    let plaintext = cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| PacketError::Unauthenticated)?;
    // Authentic from here on: a short plaintext would be a sender's bug, not an attack.
    let Some((stamp, body)) = plaintext.split_at_checked(STAMP_LEN) else {
        return Err(too_short);
    };
    let word = |at: usize| {
        stamp
            .get(at..at + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or(too_short)
    };
    Ok(Opened {
        stamp: Stamp {
            sender: word(0)?,
            epoch: word(8)?,
            seq: word(16)?,
        },
        key_id,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand_foca::rngs::SmallRng;
    use rand_foca::{RngExt, SeedableRng};

    use super::*;
    use crate::packet;

    const TAG: u64 = 0x5eed;
    const STAMP: Stamp = Stamp {
        sender: 7,
        epoch: 1_700_000_000_000,
        seq: 42,
    };

    fn key(byte: u8) -> GossipKey {
        GossipKey::from_bytes([byte; KEY_LEN])
    }

    fn ring(primary: KeyId, ids: &[KeyId]) -> Keyring {
        Keyring::new(
            primary,
            ids.iter().map(|id| (*id, key(u8::try_from(*id).unwrap()))),
        )
        .unwrap()
    }

    #[test]
    fn seal_then_open_gives_the_body_and_stamp_back() {
        let keyring = ring(1, &[1]);
        let packet = seal(TAG, &keyring, STAMP, b"hello foca").unwrap();
        assert_eq!(packet.len(), b"hello foca".len() + SEALED_OVERHEAD);
        let opened = open(TAG, &keyring, &packet).unwrap();
        assert_eq!(opened.body, b"hello foca");
        assert_eq!(opened.stamp, STAMP);
        assert_eq!(opened.key_id, 1);
        let empty = seal(TAG, &keyring, STAMP, b"").unwrap();
        assert_eq!(open(TAG, &keyring, &empty).unwrap().body, b"");
    }

    #[test]
    fn the_body_is_not_in_the_clear_and_nonces_differ() {
        let keyring = ring(1, &[1]);
        let body = b"a recognisable foca payload";
        let first = seal(TAG, &keyring, STAMP, body).unwrap();
        let second = seal(TAG, &keyring, STAMP, body).unwrap();
        assert!(!first.windows(body.len()).any(|window| window == body));
        assert_ne!(first, second, "a fresh random nonce every time");
    }

    #[test]
    fn any_installed_key_opens_and_the_primary_seals() {
        let old = ring(1, &[1, 2]);
        let new = ring(2, &[1, 2]);
        let from_old = seal(TAG, &old, STAMP, b"x").unwrap();
        let from_new = seal(TAG, &new, STAMP, b"y").unwrap();
        assert_eq!(open(TAG, &new, &from_old).unwrap().key_id, 1);
        assert_eq!(open(TAG, &old, &from_new).unwrap().key_id, 2);
        // Once key 1 is removed, its packets are refused by their key id.
        let only_new = ring(2, &[2]);
        assert_eq!(
            open(TAG, &only_new, &from_old),
            Err(PacketError::UnknownKey(1))
        );
    }

    #[test]
    fn a_foreign_key_under_a_known_id_fails_authentication() {
        let ours = ring(1, &[1]);
        let theirs = Keyring::new(1, [(1, key(0xee))]).unwrap();
        let forged = seal(TAG, &theirs, STAMP, b"spoofed member").unwrap();
        assert_eq!(open(TAG, &ours, &forged), Err(PacketError::Unauthenticated));
    }

    #[test]
    fn tampering_with_any_byte_is_detected() {
        let keyring = ring(1, &[1]);
        let packet = seal(TAG, &keyring, STAMP, b"body").unwrap().to_vec();
        for at in 0..packet.len() {
            let mut bad = packet.clone();
            bad[at] ^= 0x01;
            let result = open(TAG, &keyring, &bad);
            assert!(result.is_err(), "byte {at} flipped yet accepted");
        }
        // The associated data binds the cluster and the key id.
        assert_eq!(
            open(TAG + 1, &keyring, &packet),
            Err(PacketError::ForeignCluster(TAG))
        );
        let mut relabelled = packet.clone();
        relabelled[16] = 2;
        let both = ring(1, &[1, 2]);
        assert_eq!(
            open(TAG, &both, &relabelled),
            Err(PacketError::Unauthenticated)
        );
    }

    #[test]
    fn plain_packets_and_stray_bytes_are_told_apart() {
        let keyring = ring(1, &[1]);
        let plain = packet::encode(TAG, b"foca in the clear");
        assert_eq!(open(TAG, &keyring, &plain), Err(PacketError::Unsealed));
        assert_eq!(open(TAG, &keyring, b""), Err(PacketError::TooShort(0)));
        assert_eq!(
            open(TAG, &keyring, &[0xff; 200]),
            Err(PacketError::BadMagic)
        );
        let mut future = seal(TAG, &keyring, STAMP, b"v").unwrap().to_vec();
        future[4] = 9;
        assert_eq!(
            open(TAG, &keyring, &future),
            Err(PacketError::WrongVersion(9))
        );
    }

    #[test]
    fn keyrings_need_their_primary_and_distinct_ids_and_never_show_keys() {
        assert_eq!(
            Keyring::new(3, [(1, key(1))]).err(),
            Some(KeyringError::NoPrimary(3))
        );
        assert_eq!(
            Keyring::new(1, [(1, key(1)), (1, key(2))]).err(),
            Some(KeyringError::Duplicate(1))
        );
        let secret = GossipKey::from_bytes([0xab; KEY_LEN]);
        let shown = format!("{secret:?} {:?}", Keyring::new(1, [(1, secret.clone())]));
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
        assert_ne!(
            GossipKey::generate().unwrap(),
            GossipKey::generate().unwrap()
        );
    }

    #[test]
    fn random_truncated_and_flipped_inputs_never_panic() {
        let keyring = ring(1, &[1]);
        let mut rng = SmallRng::seed_from_u64(11);
        let good = seal(TAG, &keyring, STAMP, &[0xab; 64]).unwrap().to_vec();
        for round in 0..20_000 {
            let len = rng.random_range(0..200);
            let mut input: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if round % 2 == 0 {
                input = good[..good.len().min(len)].to_vec();
                if let Some(byte) = input.get_mut(rng.random_range(0..good.len())) {
                    *byte ^= 1 << rng.random_range(0..8);
                }
            }
            if let Ok(opened) = open(TAG, &keyring, &input) {
                assert_eq!(input, good, "only the untouched packet opens");
                assert_eq!(opened.stamp, STAMP);
            }
        }
    }
}
