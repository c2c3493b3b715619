//! One cgroup (v2) per node: the identity that partitions match on.
//!
//! A partition must drop what node A sends to node B. B is easy to name (its address), A is
//! not: an agent's outgoing TCP connections (Raft, the remote API) are not bound to its own
//! address, and for a destination in 127.0.0.0/8 Linux takes the source address from the
//! loopback route, which is 127.0.0.1 for every node. So `ip saddr A` does not see A's Raft
//! traffic. What does identify A's packets is the socket that sends them, and nftables can
//! match a socket's cgroup on the output hook (`socket cgroupv2 level L "path"`). Each node
//! therefore runs in `<cgroup2 mount>/symphony-testnet/<subnet key>/<node name>`, entered
//! before the agent starts so that every socket it ever opens is tagged.
//!
//! This needs root and a writable cgroup2 hierarchy under `/sys/fs/cgroup` (nft resolves the
//! path there: on a hybrid system the v2 hierarchy is `/sys/fs/cgroup/unified`, so the path nft
//! is given starts with `unified/`). Without them nodes run in their parent's cgroup and
//! everything but `partition` works. Levels are counted from the hierarchy's root as this
//! process sees it; inside a cgroup namespace whose root is not the real root the rules would
//! not match, and `partition` would have no effect.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::procfs;

/// How long removing a cgroup whose last process just died may keep failing with EBUSY.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);
const REMOVE_PAUSE: Duration = Duration::from_millis(10);

/// Where nft looks up cgroupv2 paths.
const NFT_CGROUP_BASE: &str = "/sys/fs/cgroup";
/// The directory under the cgroup2 root that holds every testnet's node cgroups.
const TOP: &str = "symphony-testnet";

/// A node's cgroup, as recorded in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCgroup {
    /// The cgroup's directory.
    pub dir: PathBuf,
    /// The path nft resolves (relative to `/sys/fs/cgroup`).
    pub nft_path: String,
    /// Its depth below the cgroup2 root, for `socket cgroupv2 level`.
    pub level: u32,
}

impl NodeCgroup {
    /// The file a process writes its pid to in order to enter the cgroup.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)
    }

    /// Removes the node's cgroup (it must hold no process any more), then the testnet's and
    /// the top directory if they are empty. A cgroup that is already gone is fine.
    pub fn remove(&self) -> std::io::Result<()> {
        // The kernel may count a process that just died as a member for a moment longer.
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        loop {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => break,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                Err(error)
                    if rustix::io::Errno::from_io_error(&error)
                        == Some(rustix::io::Errno::BUSY)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(REMOVE_PAUSE);
                }
                Err(error) => return Err(error),
            }
        }
        // Parents are shared with other nodes and testnets: removing them fails while they
        // still hold cgroups, which is expected.
        let mut parent = self.dir.parent();
        for _ in 0..2 {
            if let Some(dir) = parent {
                let _ = std::fs::remove_dir(dir);
                parent = dir.parent();
            }
        }
        Ok(())
    }
}

/// The cgroup2 hierarchy nodes are put in.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// The cgroup2 mount point.
    mount: PathBuf,
    /// The mount point relative to `/sys/fs/cgroup` (empty when it is `/sys/fs/cgroup`).
    nft_prefix: String,
}

impl Cgroups {
    /// Finds a cgroup2 hierarchy this process may create cgroups in, or says why there is none.
    pub fn detect() -> Result<Cgroups, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("testnet is not running as root".to_string());
        }
        let mount = procfs::cgroup2_mount()
            .map_err(|error| error.to_string())?
            .ok_or_else(|| "no cgroup2 hierarchy is mounted".to_string())?;
        let nft_prefix = mount
            .strip_prefix(NFT_CGROUP_BASE)
            .map_err(|_| {
                format!(
                    "the cgroup2 hierarchy is mounted at {}, but nft looks for cgroups under {NFT_CGROUP_BASE}",
                    mount.display()
                )
            })?
            .to_string_lossy()
            .into_owned();
        let probe = mount.join(TOP);
        std::fs::create_dir_all(&probe)
            .map_err(|error| format!("cannot create the cgroup {}: {error}", probe.display()))?;
        Ok(Cgroups { mount, nft_prefix })
    }

    /// The cgroup of node `name` in the testnet with subnet key `lab_key`.
    pub fn node(&self, lab_key: &str, name: &str) -> NodeCgroup {
        let relative = Path::new(TOP).join(lab_key).join(name);
        let nft_path = Path::new(&self.nft_prefix).join(&relative);
        NodeCgroup {
            dir: self.mount.join(&relative),
            nft_path: nft_path.to_string_lossy().into_owned(),
            level: u32::try_from(relative.components().count()).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn node_cgroups_are_named_for_nft() {
        let cgroups = Cgroups {
            mount: PathBuf::from("/sys/fs/cgroup/unified"),
            nft_prefix: "unified".to_string(),
        };
        let node = cgroups.node("77_0", "manager-1");
        assert_eq!(
            node.dir,
            PathBuf::from("/sys/fs/cgroup/unified/symphony-testnet/77_0/manager-1")
        );
        assert_eq!(node.nft_path, "unified/symphony-testnet/77_0/manager-1");
        assert_eq!(node.level, 3);
        assert_eq!(node.procs_file().file_name().unwrap(), "cgroup.procs");
    }
}
