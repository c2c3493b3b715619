//! Real foca messages from any identity, for tests above this crate (the agent's end-to-end
//! tests) that must show a spoofed member's packets are dropped: an unsealed or wrongly
//! sealed announce must be refused for its framing, not because foca could not decode it.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use foca::{Foca, Notification, PostcardCodec, Runtime, Timer};
use rand_foca::SeedableRng;
use rand_foca::rngs::SmallRng;

use crate::config::lan_config;
use crate::error::GossipError;
use crate::identity::GossipIdentity;

/// Keeps what foca sends.
#[derive(Default)]
struct Sent(Vec<Vec<u8>>);

impl Runtime<GossipIdentity> for &mut Sent {
    fn notify(&mut self, _notification: Notification<'_, GossipIdentity>) {}
    fn send_to(&mut self, _to: GossipIdentity, data: &[u8]) {
        self.0.push(data.to_vec());
    }
    fn submit_after(&mut self, _timer: Timer<GossipIdentity>, _after: Duration) {}
}

/// foca's announce from `from` to the member at `to`: a payload that a member at `to` would
/// act on (adding `from` to its view) if it reached foca.
pub fn announce_payload(from: GossipIdentity, to: SocketAddr) -> Result<Vec<u8>, GossipError> {
    let mut foca = Foca::new(
        from,
        lan_config(NonZeroU32::MIN),
        SmallRng::seed_from_u64(1),
        PostcardCodec,
    );
    let mut sent = Sent::default();
    foca.announce(GossipIdentity::seed(to), &mut sent)?;
    sent.0.pop().ok_or(GossipError::Stopped)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::identity::Role;

    #[test]
    fn an_announce_is_a_non_empty_foca_payload() {
        let from = GossipIdentity::new(
            7,
            Role::Worker,
            "127.0.0.1:7000".parse().unwrap(),
            "127.0.0.1:7001".into(),
            None,
        );
        let payload = announce_payload(from, "127.0.0.1:8000".parse().unwrap()).unwrap();
        assert!(payload.len() > 10);
    }
}
