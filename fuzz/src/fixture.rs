//! The PKI fixture the `csr` and `cert` targets share: a cluster CA and a node certificate it
//! issued, committed under `fuzz/fixtures/` so that seed certificates verify in every fuzzing
//! process. It is a throwaway CA made for fuzzing at a fixed time; it belongs to no cluster.
//! The `seeds` example writes it when it is missing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use symphony_pki::{CertIdentity, CertRole, ClusterCa, NodeKey};

/// The cluster the fixture's CA belongs to.
pub const CLUSTER_ID: &str = "fuzzc";
/// When the fixture was made (May 2026): certificates are checked a day later, so that the
/// targets behave the same whenever they run.
const MADE_AT_S: u64 = 1_780_000_000;

/// The fixture's node certificate names this identity.
pub fn node_identity() -> CertIdentity {
    CertIdentity {
        cluster_id: CLUSTER_ID.into(),
        role: CertRole::Manager,
        node_id: 5,
    }
}

pub fn made_at() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(MADE_AT_S)
}

/// When the targets check certificates.
pub fn now() -> SystemTime {
    made_at() + Duration::from_secs(24 * 3600)
}

#[derive(Debug)]
pub struct Pki {
    pub ca: ClusterCa,
    /// A certificate the CA issued for [`node_identity`].
    pub node_cert_pem: String,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn read(name: &str) -> std::io::Result<String> {
    std::fs::read_to_string(dir().join(name))
}

fn load() -> std::io::Result<Pki> {
    Ok(Pki {
        ca: ClusterCa {
            cert_pem: read("ca.crt")?,
            key_pem: read("ca.key")?,
        },
        node_cert_pem: read("node.crt")?,
    })
}

/// The fixture, read once per process.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        load().unwrap_or_else(|error| {
            panic!(
                "the PKI fixture in {} cannot be read ({error}); run `cargo run --example seeds` in fuzz/",
                dir().display()
            )
        })
    })
}

/// Makes the fixture and writes it, unless it exists.
pub fn ensure() -> Result<(), Box<dyn std::error::Error>> {
    if load().is_ok() {
        return Ok(());
    }
    let ca = ClusterCa::generate_at(CLUSTER_ID, made_at())?;
    let key = NodeKey::generate()?;
    let issued = ca.issue(&key.request("fixture")?, &node_identity(), made_at())?;
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(dir()).and_then(|()| std::fs::write(dir().join(name), text))
    };
    write("ca.crt", &ca.cert_pem)?;
    write("ca.key", &ca.key_pem)?;
    write("node.crt", &issued.cert_pem)?;
    Ok(())
}
