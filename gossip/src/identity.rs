//! [`GossipIdentity`]: who a node is in the gossip pool, and how foca tells two lives of one
//! node apart.
//!
//! foca addresses members by [`Identity::Addr`]; here that is the gossip socket address, not
//! the node id. A joining node knows its seeds only by address (`--join host:port`), and foca
//! accepts an announce only when the destination's `addr()` matches its own, so the address is
//! the one key both sides can name before they have met. It also matches what foca guards:
//! one live member per UDP endpoint. A node that restarts on the same address comes back with
//! a higher incarnation and supersedes its old self; a node that moves to another address
//! appears as a new member while the old one is declared down, which consumers keyed by node
//! id must expect.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use foca::Identity;
use serde::{Deserialize, Serialize};

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Manager,
    Worker,
}

/// A node's identity as gossiped to every member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GossipIdentity {
    pub node_id: u64,
    pub role: Role,
    /// Where this node receives gossip (UDP). foca's address for the member.
    pub gossip_addr: SocketAddr,
    /// The address of the node's remote (control/worker) endpoint.
    pub remote_addr: String,
    /// The Raft address, for managers only.
    pub raft_addr: Option<String>,
    /// Which life of the node this is; higher supersedes lower at the same address.
    pub incarnation: u64,
}

impl GossipIdentity {
    /// An identity whose incarnation is the current wall-clock time in milliseconds, so a node
    /// that restarts supersedes its previous life without persisting a counter. (A clock that
    /// steps backwards across a restart only delays that until the old identity is down.)
    pub fn new(
        node_id: u64,
        role: Role,
        gossip_addr: SocketAddr,
        remote_addr: String,
        raft_addr: Option<String>,
    ) -> GossipIdentity {
        let incarnation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(1);
        GossipIdentity {
            node_id,
            role,
            gossip_addr,
            remote_addr,
            raft_addr,
            incarnation,
        }
    }

    /// The same identity as another life: `incarnation` should come from
    /// [`next_incarnation`], which never goes back whatever the wall clock says.
    pub fn with_incarnation(self, incarnation: u64) -> GossipIdentity {
        GossipIdentity {
            incarnation,
            ..self
        }
    }

    /// A placeholder for a seed known only by address: foca accepts an announce addressed to
    /// any identity with the receiver's address, and the reply carries the seed's real one.
    pub(crate) fn seed(gossip_addr: SocketAddr) -> GossipIdentity {
        GossipIdentity {
            node_id: 0,
            role: Role::Worker,
            gossip_addr,
            remote_addr: String::new(),
            raft_addr: None,
            incarnation: 0,
        }
    }
}

/// The incarnation of a node's next life, given the last one it used (`None` for its first) and
/// the wall clock in milliseconds: strictly above the last, so a restart supersedes the
/// previous life at once even with the clock an hour or a day behind; and at least the clock,
/// so that a node whose record of its last life was lost (or predates it) still usually wins.
pub fn next_incarnation(last: Option<u64>, now_ms: u64) -> u64 {
    match last {
        Some(last) => last.saturating_add(1).max(now_ms),
        None => now_ms.max(1),
    }
}

impl Identity for GossipIdentity {
    type Addr = SocketAddr;

    /// Called by foca when this identity has been declared down: rejoin as the next life
    /// instead of staying defunct.
    fn renew(&self) -> Option<GossipIdentity> {
        let incarnation = self.incarnation.checked_add(1)?;
        Some(GossipIdentity {
            incarnation,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.gossip_addr
    }

    /// Two identities share an address: the later life wins. Equal incarnations (two
    /// misconfigured nodes on one address) are broken by node id so every member agrees.
    fn win_addr_conflict(&self, adversary: &GossipIdentity) -> bool {
        (self.incarnation, self.node_id) > (adversary.incarnation, adversary.node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_incarnation_never_goes_back() {
        let hour = 3_600_000;
        let now = 1_800_000_000_000;
        // The last life ran with the clock right; this one starts an hour behind.
        assert_eq!(next_incarnation(Some(now), now - hour), now + 1);
        // The clock moved on as usual.
        assert_eq!(next_incarnation(Some(now), now + 5), now + 5);
        assert_eq!(next_incarnation(None, now), now);
        assert_eq!(next_incarnation(None, 0), 1);
        assert_eq!(next_incarnation(Some(u64::MAX), 0), u64::MAX);
    }

    fn identity(node_id: u64, incarnation: u64) -> GossipIdentity {
        GossipIdentity {
            incarnation,
            ..GossipIdentity::new(
                node_id,
                Role::Worker,
                SocketAddr::from(([127, 0, 0, 1], 7000)),
                "127.0.0.1:7001".into(),
                None,
            )
        }
    }

    #[test]
    fn renewed_identity_supersedes_the_old_one() {
        let old = identity(7, 10);
        let Some(new) = old.renew() else {
            unreachable!("incarnation 10 can be bumped")
        };
        assert_eq!(new.incarnation, 11);
        assert_eq!(new.addr(), old.addr());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }

    #[test]
    fn conflicts_are_decided_the_same_way_on_both_sides() {
        let a = identity(1, 5);
        let b = identity(2, 5);
        assert!(b.win_addr_conflict(&a) != a.win_addr_conflict(&b));
        assert_eq!(identity(3, u64::MAX).renew(), None);
    }
}
