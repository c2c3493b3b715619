//! The `nft` command and the one way testnet uses it: a table of a testnet's own, holding one
//! filter chain of drop rules, replaced whole in one transaction (a partition never exists
//! half-made) and deleted to heal (which leaves every other rule of the machine alone).
//!
//! The rules themselves are each backend's: the local backend's drop by sending cgroup and
//! address on the output hook of the `inet` family (see `local/firewall.rs`), the docker
//! backend's by container address on the forward hook of the `bridge` family (see
//! `docker/firewall.rs`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::LabError;
use super::exec::{self, Feeder, find_on_path, os_args};

/// Where nft usually lives; `$PATH` is searched after these.
const NFT_CANDIDATES: [&str; 3] = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];
/// How long one nft command may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a testnet's table sits: the address family, and the hook its chain is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `inet`, chain on `output`: what this machine's processes send.
    Inet,
    /// `bridge`, chain on `forward`: what a bridge switches from one port to another.
    Bridge,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Bridge => "bridge",
        }
    }

    /// The hook (and the chain's name) the rules go on.
    fn hook(self) -> &'static str {
        match self {
            Family::Inet => "output",
            Family::Bridge => "forward",
        }
    }
}

/// The `nft` command, usable (found, and we are root).
#[derive(Debug, Clone)]
pub struct Nft {
    bin: PathBuf,
}

impl Nft {
    /// Finds nft and checks that we may use it, or says why not.
    pub fn detect() -> Result<Nft, String> {
        let found = NFT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|candidate| candidate.is_file())
            .or_else(|| find_on_path("nft"));
        let Some(bin) = found else {
            return Err(
                "nft (nftables) is not installed; install the nftables package".to_string(),
            );
        };
        if !rustix::process::geteuid().is_root() {
            return Err("changing nftables rules needs root; run testnet as root".to_string());
        }
        Ok(Nft { bin })
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Replaces the table `family table` with one holding exactly `rules` (nft rules, one a
    /// line), atomically.
    pub fn replace(&self, family: Family, table: &str, rules: &[String]) -> Result<(), LabError> {
        let script = script(family, table, rules);
        let feed: Feeder<'_> =
            Box::new(move |pipe| std::io::Write::write_all(pipe, script.as_bytes()));
        exec::check(&self.bin, &os_args(&["-f", "-"]), Some(feed), NFT_TIMEOUT)?;
        Ok(())
    }

    /// Deletes the table `family table`, if it exists.
    pub fn delete(&self, family: Family, table: &str) -> Result<(), LabError> {
        if !self.exists(family, table) {
            return Ok(());
        }
        let args = os_args(&["delete", "table", family.as_str(), table]);
        exec::check(&self.bin, &args, None, NFT_TIMEOUT)?;
        Ok(())
    }

    /// Whether the table `family table` exists.
    pub fn exists(&self, family: Family, table: &str) -> bool {
        let args = os_args(&["list", "table", family.as_str(), table]);
        exec::execute(&self.bin, &args, None, NFT_TIMEOUT).is_ok_and(|output| output.success)
    }
}

/// The nft script that makes `family table` hold exactly `rules`: the leading `table` +
/// `delete table` pair replaces a table that exists and creates one that does not, in the same
/// transaction as the new rules.
pub fn script(family: Family, table: &str, rules: &[String]) -> String {
    let (family, hook) = (family.as_str(), family.hook());
    let mut text = format!("table {family} {table}\ndelete table {family} {table}\n");
    text.push_str(&format!("table {family} {table} {{\n"));
    text.push_str(&format!(
        "  chain {hook} {{\n    type filter hook {hook} priority filter; policy accept;\n"
    ));
    for rule in rules {
        text.push_str(&format!("    {rule}\n"));
    }
    text.push_str("  }\n}\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_replaces_the_table_with_one_chain_of_rules() {
        let text = script(
            Family::Inet,
            "symphony_testnet_77_0",
            &["ip daddr 127.77.0.2 drop".to_string()],
        );
        assert_eq!(
            text,
            "table inet symphony_testnet_77_0\ndelete table inet symphony_testnet_77_0\n\
             table inet symphony_testnet_77_0 {\n  chain output {\n    type filter hook output \
             priority filter; policy accept;\n    ip daddr 127.77.0.2 drop\n  }\n}\n"
        );
        assert!(script(Family::Bridge, "t", &[]).contains("type filter hook forward priority"));
    }
}
