//! [`GossipConfig`]: what a node needs to start gossiping.

use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use std::time::Duration;

use crate::identity::GossipIdentity;
use crate::seal::Keyring;

/// foca's timing: Symphony's LAN timings, foca's WAN preset (memberlist's), or given in full.
#[derive(Debug, Clone)]
pub enum Profile {
    /// One data centre: 500 ms probes, suspicion and retransmissions scaled to the expected
    /// cluster size; see [`lan_config`].
    Lan { cluster_size: NonZeroU32 },
    /// Across regions: 5 s probes, longer timeouts.
    Wan { cluster_size: NonZeroU32 },
    /// Every knob set explicitly (tests use fast timings).
    Custom(foca::Config),
}

impl Profile {
    /// The foca configuration this profile stands for (the agent puts single timings given
    /// by flag over it).
    pub fn foca_config(&self) -> foca::Config {
        match self {
            Profile::Lan { cluster_size } => lan_config(*cluster_size),
            Profile::Wan { cluster_size } => foca::Config::new_wan(*cluster_size),
            Profile::Custom(config) => config.clone(),
        }
    }
}

/// How often a LAN member probes another (memberlist: 1 s).
const LAN_PROBE_PERIOD: Duration = Duration::from_millis(500);
/// How long a LAN probe waits for the direct ack before asking others (memberlist: 500 ms).
const LAN_PROBE_RTT: Duration = Duration::from_millis(200);
/// How many members are asked to probe indirectly (memberlist: 3).
const LAN_INDIRECT_PROBES: NonZeroUsize = match NonZeroUsize::new(6) {
    Some(count) => count,
    None => NonZeroUsize::MIN,
};
/// Gossip of pending updates: every 100 ms to 3 members (foca's preset: 200 ms).
const LAN_GOSSIP: foca::PeriodicParams = foca::PeriodicParams {
    frequency: Duration::from_millis(100),
    num_members: match NonZeroUsize::new(3) {
        Some(count) => count,
        None => NonZeroUsize::MIN,
    },
};

/// The [`Profile::Lan`] timings for an expected `cluster_size`: foca's LAN preset (from
/// memberlist's defaults) with the changes below, chosen with the simulator ([`crate::sim`],
/// `testnet bench gossip`) to detect a crash everywhere within 10 s at 10,000 members and in
/// about 3–5 s at 150, spread a join to 99.9% within 3 s at 10,000 (0.5 s at 150), and declare
/// no running member down at 5% packet loss.
///
/// - Probes every 500 ms with a 200 ms direct timeout: on a LAN a reply takes milliseconds,
///   and the shorter period halves both the wait until someone probes a crashed member and the
///   wait until the failed probe turns into a suspicion.
/// - Six indirect probes: at 5% loss (each indirect path is four packets) a probe fails
///   completely 1 time in 250,000 instead of 1 in 1,600 with three. Each such suspicion,
///   even refuted, costs about N × `max_transmissions` packets to spread and refute, which at
///   10,000 members costs far more than the extra indirect probes (about 2.3 packets per
///   member per second at 5% loss, none without loss).
/// - Suspicion lasts `period × 2 × max(2, log10 N)`: 2 s up to 100 members, 3 s at 1,000,
///   4 s at 10,000 (memberlist: 4–16 s); with the fast gossip below a refutation comes back
///   well within that. In the simulator, 1,181 suspicions at 1,000 members and 10% loss (three
///   runs of 10 simulated minutes) were all refuted in time.
/// - Pending updates are gossiped every 100 ms to 3 members, and each is sent
///   `ceil(ln(1000 N) / 0.9)` times: enough that every member receives it with probability
///   99.9% at 10% loss. foca's preset (`4 log10(N+1)`, 8 at 150 members) let a member miss a
///   join or a down now and then, which it then learned only by probing, up to a minute later.
///
/// Measured with `testnet bench gossip --loss 0.05 --seed 1` (10 simulated minutes, 3 joins
/// and 3 crashes; median, worst), with periodic gossip held while idle ([`crate::pacing`]):
/// 99.9% see a join after 0.30/0.40 s at 150 members, 0.40/0.40 s at 1,000, 0.21 and 0.50 s
/// in two trials at 10,000; a crash after 3.3/4.2 s at 150, 4.0/5.5 s at 1,000, 4.5 s at
/// 5,000 (one trial), 5.6 s at 10,000; 8.4 packets and 1.1 kB per member per second at 150 and
/// 1,000, 9.1 and 1.2 kB at 5,000; no false downs (1, 7 and 21 suspicions, all refuted). At 10,000 a simulated second costs minutes of wall time
/// whenever updates spread (foca finds a member by a linear scan of its view), so the
/// 10-minute steady state there is out of reach; before the pacing change, half a minute of it
/// showed 10.1 packets and 1.4 kB per member per second and no false down.
///
/// | members | suspect → down | transmissions |
/// |--------:|---------------:|--------------:|
/// |      10 |            2 s |            11 |
/// |     150 |         2.18 s |            14 |
/// |   1,000 |            3 s |            16 |
/// |  10,000 |            4 s |            18 |
pub fn lan_config(cluster_size: NonZeroU32) -> foca::Config {
    let members = f64::from(cluster_size.get());
    let mut config = foca::Config::new_lan(cluster_size);
    config.probe_period = LAN_PROBE_PERIOD;
    config.probe_rtt = LAN_PROBE_RTT;
    config.num_indirect_probes = LAN_INDIRECT_PROBES;
    // log10 of a positive count is finite and at least 0, so this is a finite positive factor.
    config.suspect_to_down_after = LAN_PROBE_PERIOD.mul_f64(2.0 * members.log10().max(2.0));
    config.periodic_gossip = Some(LAN_GOSSIP);
    // A float-to-int `as` saturates; the value is between 8 and 32 for any u32 count.
    let transmissions = ((1000.0 * members).ln() / 0.9).ceil() as u8;
    config.max_transmissions = NonZeroU8::new(transmissions).unwrap_or(NonZeroU8::MAX);
    config
}

/// Everything [`Gossip::start`](crate::Gossip::start) needs.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// Who this node is. A `gossip_addr` with port 0 takes the port the socket was bound to.
    pub identity: GossipIdentity,
    /// Where the UDP socket listens (may be `0.0.0.0`, unlike the advertised `gossip_addr`).
    pub bind_addr: SocketAddr,
    /// The cluster's id; packets from other clusters are dropped.
    pub cluster_id: String,
    pub profile: Profile,
    /// The cluster's gossip keys: with them every packet is sealed and every plain, forged or
    /// replayed one dropped ([`crate::seal`]); without, packets travel in the clear.
    pub keyring: Option<Keyring>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lan(members: u32) -> foca::Config {
        lan_config(NonZeroU32::new(members).unwrap_or(NonZeroU32::MIN))
    }

    #[test]
    fn lan_timings_match_the_documented_table() {
        let rows = [
            (10, 2_000, 11),
            (150, 2_176, 14),
            (1_000, 3_000, 16),
            (10_000, 4_000, 18),
        ];
        for (members, suspicion_ms, transmissions) in rows {
            let config = lan(members);
            assert_eq!(
                config.suspect_to_down_after.as_millis(),
                suspicion_ms,
                "{members}"
            );
            assert_eq!(config.max_transmissions.get(), transmissions, "{members}");
            assert!(config.probe_rtt < config.probe_period);
        }
        let huge = lan(u32::MAX);
        assert!(huge.max_transmissions.get() >= 18);
        assert!(huge.suspect_to_down_after < Duration::from_secs(10));
    }
}
