//! The loopback addresses of one testnet: `127.A.B.0/24`, node `n` (from 1) at `127.A.B.n`.
//!
//! Every node gets an address of its own so that every node can use the agent's default ports
//! (as on real machines) and so that a partition can name a node by its address. Linux routes
//! all of 127.0.0.0/8 to `lo`, so an agent binds `127.A.B.n` without any setup. Two testnets on
//! one machine (or two tests running in parallel) differ in `A.B`. Nothing outside 127.0.0.0/8
//! can be expressed here, so the lab never sends traffic anywhere but to this machine.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::LabError;

/// The highest node number in a /24 (`.255` is the broadcast address).
pub const MAX_NODES: usize = 254;

/// `127.A.B.0/24`, written `127.A.B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    a: u8,
    b: u8,
}

impl Subnet {
    /// The default: `127.77.0`.
    pub const DEFAULT: Subnet = Subnet { a: 77, b: 0 };

    /// `127.a.b`, refusing `127.0.0` (where 127.0.0.1 and other local services live).
    pub fn new(a: u8, b: u8) -> Result<Subnet, LabError> {
        if a == 0 && b == 0 {
            return Err(LabError::InvalidArgument(
                "the subnet 127.0.0 is where 127.0.0.1 and other local services live; use another, e.g. 127.77.0".to_string(),
            ));
        }
        Ok(Subnet { a, b })
    }

    /// The address of node number `n` (1 to [`MAX_NODES`]).
    pub fn host(self, n: usize) -> Result<Ipv4Addr, LabError> {
        match u8::try_from(n) {
            Ok(last) if (1..=MAX_NODES).contains(&n) => {
                Ok(Ipv4Addr::new(127, self.a, self.b, last))
            }
            _ => Err(LabError::InvalidArgument(format!(
                "a testnet has at most {MAX_NODES} nodes (one /24 of loopback addresses), not {n}"
            ))),
        }
    }

    /// Whether `ip` is in this subnet.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        let [first, a, b, _] = ip.octets();
        first == 127 && a == self.a && b == self.b
    }

    /// A short key for names derived from the subnet (nft table, cgroup): `77_0`.
    pub fn key(self) -> String {
        format!("{}_{}", self.a, self.b)
    }
}

impl Default for Subnet {
    fn default() -> Self {
        Subnet::DEFAULT
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "127.{}.{}", self.a, self.b)
    }
}

impl FromStr for Subnet {
    type Err = LabError;

    /// Accepts `127.A.B`, `127.A.B.0` and `127.A.B.0/24`.
    fn from_str(text: &str) -> Result<Subnet, LabError> {
        let invalid = || {
            LabError::InvalidArgument(format!(
                "a subnet is 127.A.B (a /24 of loopback addresses, e.g. 127.77.0), not {text:?}"
            ))
        };
        let bare = text.strip_suffix("/24").unwrap_or(text);
        let octets: Vec<&str> = bare.split('.').collect();
        let (first, a, b) = match octets.as_slice() {
            [first, a, b] | [first, a, b, "0"] => (*first, *a, *b),
            _ => return Err(invalid()),
        };
        if first != "127" {
            return Err(invalid());
        }
        let a = a.parse::<u8>().map_err(|_| invalid())?;
        let b = b.parse::<u8>().map_err(|_| invalid())?;
        Subnet::new(a, b)
    }
}

impl TryFrom<String> for Subnet {
    type Error = LabError;

    fn try_from(text: String) -> Result<Subnet, LabError> {
        text.parse()
    }
}

impl From<Subnet> for String {
    fn from(subnet: Subnet) -> String {
        subnet.to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_the_written_forms() {
        for text in ["127.77.3", "127.77.3.0", "127.77.3.0/24"] {
            assert_eq!(text.parse::<Subnet>().unwrap(), Subnet::new(77, 3).unwrap());
        }
        for text in ["10.0.0", "127.0.0", "127.300.1", "127.1", "127.1.2.3.4", ""] {
            assert!(text.parse::<Subnet>().is_err(), "{text}");
        }
    }

    #[test]
    fn hosts_stay_in_the_subnet_and_on_loopback() {
        let subnet = Subnet::new(77, 9).unwrap();
        let ip = subnet.host(5).unwrap();
        assert_eq!(ip, Ipv4Addr::new(127, 77, 9, 5));
        assert!(ip.is_loopback() && subnet.contains(ip));
        assert!(subnet.host(0).is_err());
        assert!(subnet.host(255).is_err());
        assert_eq!(subnet.key(), "77_9");
    }
}
