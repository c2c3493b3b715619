//! The virtual network: every packet is lost with a fixed probability or delivered after a
//! random latency.
//!
//! Loss is independent per packet (Bernoulli), which is the model SWIM's analyses assume and
//! the worst case for its indirect probes: correlated loss (a congested link, a partition)
//! is a different experiment. Latencies are uniform in `[min, max]`, so packets between two
//! members can overtake each other, as UDP allows. Nothing models bandwidth or queueing: at
//! the rates gossip sends, a LAN link is never the bottleneck.

use std::time::Duration;

use rand_foca::rngs::SmallRng;
use rand_foca::{RngExt, SeedableRng};

use crate::sim::clock::SimTime;

/// How the virtual network treats packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkModel {
    /// Probability in `[0, 1)` that a packet is dropped.
    pub loss: f64,
    /// Fastest one-way delivery.
    pub min_latency: Duration,
    /// Slowest one-way delivery.
    pub max_latency: Duration,
}

impl NetworkModel {
    /// A LAN with `loss`: 0.2–2 ms one way.
    pub fn lan(loss: f64) -> NetworkModel {
        NetworkModel {
            loss,
            min_latency: Duration::from_micros(200),
            max_latency: Duration::from_millis(2),
        }
    }

    /// Whether the parameters make sense (loss a probability below 1, min ≤ max).
    pub(crate) fn is_valid(&self) -> bool {
        (0.0..1.0).contains(&self.loss) && self.min_latency <= self.max_latency
    }
}

/// The network's own random stream, separate from the members' so that changing how members
/// choose does not change which packets are lost.
pub(crate) struct Network {
    model: NetworkModel,
    rng: SmallRng,
    min_nanos: u64,
    max_nanos: u64,
}

impl Network {
    pub(crate) fn new(model: NetworkModel, seed: u64) -> Network {
        let nanos = |duration: Duration| u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Network {
            model,
            rng: SmallRng::seed_from_u64(seed),
            min_nanos: nanos(model.min_latency),
            max_nanos: nanos(model.max_latency).max(nanos(model.min_latency)),
        }
    }

    /// When a packet sent at `now` arrives, or `None` if it is lost.
    pub(crate) fn transit(&mut self, now: SimTime) -> Option<SimTime> {
        if self.model.loss > 0.0 && self.rng.random::<f64>() < self.model.loss {
            return None;
        }
        let latency = self.rng.random_range(self.min_nanos..=self.max_nanos);
        Some(SimTime::from_nanos(now.as_nanos().saturating_add(latency)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loses_about_the_asked_fraction_within_the_latency_bounds() {
        let model = NetworkModel::lan(0.1);
        let mut network = Network::new(model, 42);
        let now = SimTime::from_nanos(1_000);
        let mut lost = 0;
        for _ in 0..100_000 {
            match network.transit(now) {
                None => lost += 1,
                Some(at) => {
                    let latency = at.duration_since(now);
                    assert!(latency >= model.min_latency && latency <= model.max_latency);
                }
            }
        }
        assert!((9_000..11_000).contains(&lost), "lost {lost} of 100000");
    }

    #[test]
    fn validity() {
        assert!(NetworkModel::lan(0.0).is_valid());
        assert!(!NetworkModel::lan(1.0).is_valid());
        assert!(!NetworkModel::lan(f64::NAN).is_valid());
        let backwards = NetworkModel {
            min_latency: Duration::from_millis(3),
            ..NetworkModel::lan(0.0)
        };
        assert!(!backwards.is_valid());
    }
}
