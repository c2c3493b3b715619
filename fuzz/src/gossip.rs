//! Target `gossip`: UDP packets as a member's driver receives them — through its
//! [`Framing::unframe`] (the plain header checks, or opening a sealed packet and the replay
//! guard) and then, if they pass, into foca (`handle_data`), exactly the driver's order.
//!
//! The first byte picks the member:
//! - `0`: plain framing; the rest is one packet;
//! - `1`: sealed framing (keys 1 and 2, sealing with 1); the rest is one packet. Forging
//!   a seal is beyond a fuzzer, so this covers the checks before authentication;
//! - `2`: sealed framing, and the rest is a series of packets the harness seals itself, each
//!   `sender u8 | epoch u64 | seq u64 | ms since the last u16 | key u8 | length u16 | body`, so
//!   that the replay guard and foca see authentic packets with any stamp.
//!
//! Checked besides: an authentic packet is opened to the body it was sealed with, and is
//! accepted at most once in a sender's life (a life ends when a packet of another epoch is
//! accepted from that sender); an authentic packet is refused only as a replay.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use foca::{Foca, Notification, PostcardCodec, Runtime, Timer};
use rand_foca::SeedableRng;
use rand_foca::rngs::SmallRng;
use symphony_gossip::config::lan_config;
use symphony_gossip::framing::Framing;
use symphony_gossip::packet::{PacketError, cluster_tag};
use symphony_gossip::seal::{self, GossipKey, Keyring, Stamp};
use symphony_gossip::{GossipIdentity, Role};

/// The cluster every harness member belongs to.
pub const CLUSTER: &str = "fuzz-cluster";
/// The receiving member's gossip address.
pub const LOCAL_ADDR: &str = "127.0.0.1:7946";

pub fn keyring(primary: u32) -> Keyring {
    Keyring::new(
        primary,
        [1u32, 2].map(|id| (id, GossipKey::from_bytes([id as u8; 32]))),
    )
    .expect("the harness keyring")
}

pub fn identity(node_id: u64, addr: SocketAddr) -> GossipIdentity {
    GossipIdentity {
        node_id,
        role: Role::Manager,
        gossip_addr: addr,
        remote_addr: "127.0.0.1:27242".into(),
        raft_addr: Some("127.0.0.1:15760".into()),
        incarnation: 1,
    }
}

/// What foca asks of the world: nothing is carried out.
struct Nowhere;

impl Runtime<GossipIdentity> for Nowhere {
    fn notify(&mut self, _notification: Notification<'_, GossipIdentity>) {}
    fn send_to(&mut self, _to: GossipIdentity, _data: &[u8]) {}
    fn submit_after(&mut self, _timer: Timer<GossipIdentity>, _after: Duration) {}
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let tag = cluster_tag(CLUSTER);
    let local: SocketAddr = LOCAL_ADDR.parse().expect("an address");
    let mut foca = Foca::new(
        identity(1, local),
        lan_config(NonZeroU32::MIN),
        SmallRng::seed_from_u64(1),
        PostcardCodec,
    );
    let mut receive = |framing: &mut Framing, packet: &[u8], now_ms: u64| {
        let result = framing
            .unframe(packet, now_ms)
            .map(|body| body.into_owned());
        if let Ok(body) = &result {
            let _ = foca.handle_data(body, &mut Nowhere);
        }
        result
    };
    match mode % 3 {
        0 => {
            let _ = receive(&mut Framing::plain(tag), rest, 0);
        }
        1 => {
            let _ = receive(&mut Framing::sealed(tag, keyring(1), 1, 1), rest, 0);
        }
        _ => {
            let mut framing = Framing::sealed(tag, keyring(1), 1, 1);
            let mut now_ms = 0u64;
            // Per sender: the life last accepted, and the sequence numbers accepted in it.
            let mut lives: BTreeMap<u64, (u64, BTreeSet<u64>)> = BTreeMap::new();
            for (stamp, advance, key, body) in Records(rest) {
                now_ms = now_ms.saturating_add(u64::from(advance));
                let packet = seal::seal(tag, &keyring(1 + u32::from(key % 2)), stamp, body)
                    .expect("the harness seals");
                match receive(&mut framing, &packet, now_ms) {
                    Ok(opened) => {
                        assert_eq!(opened, body);
                        let life = lives.entry(stamp.sender).or_default();
                        if life.0 != stamp.epoch {
                            // A new life (or, after a silence, an earlier one again).
                            *life = (stamp.epoch, BTreeSet::new());
                        }
                        assert!(
                            life.1.insert(stamp.seq),
                            "{stamp:?} was accepted twice in one life"
                        );
                    }
                    Err(error) => assert_eq!(error, PacketError::Replayed),
                }
            }
        }
    }
}

/// The packets of mode 2.
struct Records<'a>(&'a [u8]);

impl<'a> Iterator for Records<'a> {
    type Item = (Stamp, u16, u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        const HEAD: usize = 1 + 8 + 8 + 2 + 1 + 2;
        let (head, rest) = self.0.split_at_checked(HEAD)?;
        let word = |at: usize| u64::from_be_bytes(head[at..at + 8].try_into().expect("8 bytes"));
        let short = |at: usize| u16::from_be_bytes([head[at], head[at + 1]]);
        let len = usize::from(short(20)).min(rest.len());
        let (body, rest) = rest.split_at(len);
        self.0 = rest;
        let stamp = Stamp {
            sender: u64::from(head[0]),
            epoch: word(1),
            seq: word(9),
        };
        Some((stamp, short(17), head[19], body))
    }
}
