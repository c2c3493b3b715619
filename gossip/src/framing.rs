//! [`Framing`]: how one member frames what foca sends and unframes what it receives — plain
//! ([`crate::packet`]) without a keyring, sealed ([`crate::seal`]) with one, where every
//! received packet must also pass the replay guard ([`crate::replay`]).
//!
//! The driver and the simulator each keep one per member, so the simulated figures describe
//! the agent with sealing on or off.

use std::borrow::Cow;

use bytes::Bytes;

use crate::packet::{self, PacketError};
use crate::replay::ReplayGuard;
use crate::seal::{self, Keyring, SealError, Stamp};

/// One member's framing state.
#[derive(Debug)]
pub struct Framing {
    tag: u64,
    sealing: Option<Sealing>,
}

#[derive(Debug)]
struct Sealing {
    keyring: Keyring,
    sender: u64,
    epoch: u64,
    /// The last sequence number sealed.
    seq: u64,
    guard: ReplayGuard,
}

impl Framing {
    /// Plain framing for the cluster with tag `tag`.
    pub fn plain(tag: u64) -> Framing {
        Framing { tag, sealing: None }
    }

    /// Sealed framing: `sender` (the node id) and `epoch` (this life of the driver: the
    /// incarnation it started with) stamp every packet sealed.
    pub fn sealed(tag: u64, keyring: Keyring, sender: u64, epoch: u64) -> Framing {
        Framing {
            tag,
            sealing: Some(Sealing {
                keyring,
                sender,
                epoch,
                seq: 0,
                guard: ReplayGuard::default(),
            }),
        }
    }

    /// Replaces the keyring; the replay guard and the sequence go on. Turns plain framing
    /// into sealed framing with `sender` and `epoch`.
    pub fn set_keyring(&mut self, keyring: Keyring, sender: u64, epoch: u64) {
        match &mut self.sealing {
            Some(sealing) => sealing.keyring = keyring,
            None => *self = Framing::sealed(self.tag, keyring, sender, epoch),
        }
    }

    /// The keyring in use, if packets are sealed.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.sealing.as_ref().map(|sealing| &sealing.keyring)
    }

    /// The packet that carries foca's `body`.
    pub fn frame(&mut self, body: &[u8]) -> Result<Bytes, SealError> {
        let Some(sealing) = &mut self.sealing else {
            return Ok(packet::encode(self.tag, body));
        };
        sealing.seq = sealing.seq.saturating_add(1);
        let stamp = Stamp {
            sender: sealing.sender,
            epoch: sealing.epoch,
            seq: sealing.seq,
        };
        seal::seal(self.tag, &sealing.keyring, stamp, body)
    }

    /// foca's payload of a received packet, if the packet is for this cluster, authentic and
    /// new. `now_ms` is a monotonic clock's reading, for the replay guard.
    pub fn unframe<'a>(
        &mut self,
        data: &'a [u8],
        now_ms: u64,
    ) -> Result<Cow<'a, [u8]>, PacketError> {
        let Some(sealing) = &mut self.sealing else {
            return packet::decode(self.tag, data).map(Cow::Borrowed);
        };
        let opened = seal::open(self.tag, &sealing.keyring, data)?;
        sealing
            .guard
            .check(opened.stamp, now_ms)
            .map_err(|_| PacketError::Replayed)?;
        Ok(Cow::Owned(opened.body))
    }

    /// The bytes framing adds to a foca payload.
    pub fn overhead(&self) -> usize {
        match self.sealing {
            Some(_) => seal::SEALED_OVERHEAD,
            None => packet::HEADER_LEN,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::seal::{GossipKey, KEY_LEN};

    const TAG: u64 = 77;

    fn keyring(primary: u32, ids: &[u32]) -> Keyring {
        Keyring::new(
            primary,
            ids.iter()
                .map(|id| (*id, GossipKey::from_bytes([*id as u8; KEY_LEN]))),
        )
        .unwrap()
    }

    #[test]
    fn sealed_members_understand_each_other_and_refuse_replays() {
        let mut a = Framing::sealed(TAG, keyring(1, &[1]), 1, 100);
        let mut b = Framing::sealed(TAG, keyring(1, &[1]), 2, 200);
        let packet = a.frame(b"ping").unwrap();
        assert_eq!(b.unframe(&packet, 0).unwrap().as_ref(), b"ping");
        assert_eq!(b.unframe(&packet, 1), Err(PacketError::Replayed));
        let next = a.frame(b"ping").unwrap();
        assert_eq!(b.unframe(&next, 2).unwrap().as_ref(), b"ping");
        assert_eq!(a.overhead(), next.len() - 4);
    }

    #[test]
    fn plain_and_sealed_do_not_mix() {
        let mut plain = Framing::plain(TAG);
        let mut sealed = Framing::sealed(TAG, keyring(1, &[1]), 1, 1);
        let from_plain = plain.frame(b"x").unwrap();
        let from_sealed = sealed.frame(b"y").unwrap();
        assert_eq!(sealed.unframe(&from_plain, 0), Err(PacketError::Unsealed));
        assert_eq!(
            plain.unframe(&from_sealed, 0),
            Err(PacketError::WrongVersion(seal::SEALED_VERSION))
        );
        assert_eq!(plain.unframe(&from_plain, 0).unwrap().as_ref(), b"x");
    }

    #[test]
    fn rotation_keeps_members_talking_at_every_step() {
        let mut a = Framing::sealed(TAG, keyring(1, &[1]), 1, 1);
        let mut b = Framing::sealed(TAG, keyring(1, &[1]), 2, 1);
        let talk = |a: &mut Framing, b: &mut Framing| {
            let to_b = a.frame(b"a").unwrap();
            let to_a = b.frame(b"b").unwrap();
            b.unframe(&to_b, 0).is_ok() && a.unframe(&to_a, 0).is_ok()
        };
        // Install 2 on a only, then on b: both still seal with 1.
        a.set_keyring(keyring(1, &[1, 2]), 1, 1);
        assert!(talk(&mut a, &mut b));
        b.set_keyring(keyring(1, &[1, 2]), 2, 1);
        // Use 2, one member at a time.
        a.set_keyring(keyring(2, &[1, 2]), 1, 1);
        assert!(talk(&mut a, &mut b));
        b.set_keyring(keyring(2, &[1, 2]), 2, 1);
        assert!(talk(&mut a, &mut b));
        // Remove 1, one member at a time.
        a.set_keyring(keyring(2, &[2]), 1, 1);
        assert!(talk(&mut a, &mut b));
        b.set_keyring(keyring(2, &[2]), 2, 1);
        assert!(talk(&mut a, &mut b));
        // A member still sealing with 1 is not understood any more.
        let mut late = Framing::sealed(TAG, keyring(1, &[1]), 3, 1);
        let packet = late.frame(b"late").unwrap();
        assert_eq!(a.unframe(&packet, 0), Err(PacketError::UnknownKey(1)));
    }
}
