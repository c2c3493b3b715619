//! The names and labels of everything the docker backend creates for one testnet.
//!
//! Every name derives from one key, a hash of the testnet's absolute state dir, so that any
//! later `testnet` command — from another shell, even after the state file lost a record —
//! finds the same network, containers and firewall table, and two testnets (two dirs, e.g.
//! tests running in parallel) never share one. Everything is also labelled
//! `symphony-testnet=<key>`, so `down` removes exactly what is this testnet's by asking Docker
//! for the label, not by trusting the state file alone.
//!
//! The hash is FNV-1a with MurmurHash3's finalizer, written out here, because the key must not
//! change when `testnet` is rebuilt with another toolchain between `up` and `down` (std's
//! hasher makes no such promise).

use std::path::Path;

/// The label every network and container of a testnet carries, with the testnet's key.
pub const LABEL: &str = "symphony-testnet";
/// The label that names the node a container runs.
pub const NODE_LABEL: &str = "symphony-testnet.node";

/// One testnet's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// 10 hex digits.
    key: String,
}

impl Scope {
    /// The scope of the testnet whose state dir is `dir` (absolute).
    pub fn of(dir: &Path) -> Scope {
        let hash = mix(fnv1a(dir.as_os_str().as_encoded_bytes()));
        Scope {
            key: format!("{:010x}", hash >> 24),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// `symphony-testnet=<key>`, for `--label` and `--filter label=`.
    pub fn label(&self) -> String {
        format!("{LABEL}={}", self.key)
    }

    /// The Docker network.
    pub fn network(&self) -> String {
        format!("symphony-testnet-{}", self.key)
    }

    /// The network's bridge interface on the host: at most 15 characters (IFNAMSIZ).
    pub fn bridge(&self) -> String {
        format!("symtn{}", self.key)
    }

    /// The nftables table (family `bridge`) that holds the testnet's partition.
    pub fn table(&self) -> String {
        format!("symphony_testnet_{}", self.key)
    }

    /// The container of node `name`.
    pub fn container(&self, name: &str) -> String {
        format!("symphony-testnet-{}-{name}", self.key)
    }
}

/// MurmurHash3's 64-bit finalizer: FNV-1a alone changes few bits for a change in the last
/// bytes (dirs `lab1` and `lab2`), and the key's first digits pick where the network's subnet
/// search starts, so they should differ for such dirs.
fn mix(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_distinct_and_short_enough() {
        let one = Scope::of(Path::new("/work/.testnet"));
        let two = Scope::of(Path::new("/work/other/.testnet"));
        assert_ne!(one, two);
        let (three, four) = (
            Scope::of(Path::new("/t/lab1")),
            Scope::of(Path::new("/t/lab2")),
        );
        assert_ne!(
            three.key()[..2],
            four.key()[..2],
            "the first digits pick the subnet"
        );
        // Pinned: a rebuilt testnet must find what an older one created.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(one.key(), "ee2617c86e");
        assert_eq!(one.key().len(), 10);
        assert!(one.bridge().len() <= 15);
        assert_eq!(one.label(), format!("symphony-testnet={}", one.key()));
        assert!(one.container("manager-1").ends_with("-manager-1"));
    }
}
