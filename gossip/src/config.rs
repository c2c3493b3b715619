//! [`GossipConfig`]: what a node needs to start gossiping.

use std::net::SocketAddr;
use std::num::NonZeroU32;

use crate::identity::GossipIdentity;

/// foca's timing, from memberlist's presets or given in full.
#[derive(Debug, Clone)]
pub enum Profile {
    /// One data centre: 1 s probes, suspicion scaled to the expected cluster size.
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
            Profile::Lan { cluster_size } => foca::Config::new_lan(*cluster_size),
            Profile::Wan { cluster_size } => foca::Config::new_wan(*cluster_size),
            Profile::Custom(config) => config.clone(),
        }
    }
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
}
