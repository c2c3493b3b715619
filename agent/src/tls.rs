//! The node's own TLS material in `<config dir>/tls/`: its private key (`node.key`, 0600,
//! generated on first start and never sent anywhere), the certificate a manager issued it
//! (`node.crt`) and the CA bundle it trusts (`ca.crt`), each replaced atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use symphony_pki::{CaBundle, NodeKey, PkiError};

/// Why the node's TLS files could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TlsStoreError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Pki { path: PathBuf, source: PkiError },
}

/// The node's key and what it was issued.
pub struct TlsStore {
    dir: PathBuf,
    key: Arc<NodeKey>,
}

impl std::fmt::Debug for TlsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

const KEY: &str = "node.key";
const CERT: &str = "node.crt";
const CA: &str = "ca.crt";

impl TlsStore {
    /// Opens `<config_dir>/tls`, generating the node's key if it has none.
    pub fn open(config_dir: &Path) -> Result<TlsStore, TlsStoreError> {
        let dir = config_dir.join("tls");
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsStoreError::Io {
                action,
                path,
                source,
            }
        };
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let key_path = dir.join(KEY);
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => NodeKey::from_pem(&pem).map_err(|source| TlsStoreError::Pki {
                path: key_path.clone(),
                source,
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = NodeKey::generate().map_err(|source| TlsStoreError::Pki {
                    path: key_path.clone(),
                    source,
                })?;
                crate::durable::write_private(&key_path, key.pem().as_bytes())
                    .map_err(io("write", &key_path))?;
                key
            }
            Err(error) => return Err(io("read", &key_path)(error)),
        };
        Ok(TlsStore {
            dir,
            key: Arc::new(key),
        })
    }

    /// A certificate request for the node's key.
    pub fn request(&self, node_id: u64) -> Result<String, PkiError> {
        self.key.request(&format!("symphony node {node_id}"))
    }

    /// Keeps a certificate a manager issued and the bundle it was checked against.
    pub fn store(&self, cert_pem: &str, bundle: &CaBundle) -> Result<(), TlsStoreError> {
        for (name, text) in [(CA, bundle.pem.as_str()), (CERT, cert_pem)] {
            let path = self.dir.join(name);
            crate::durable::write_atomically(&path, text.as_bytes()).map_err(|source| {
                TlsStoreError::Io {
                    action: "write",
                    path,
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// The CA bundle this node trusts, once it was issued a certificate.
    pub fn ca_bundle(&self) -> Option<CaBundle> {
        std::fs::read_to_string(self.dir.join(CA))
            .ok()
            .map(CaBundle::new)
    }

    /// The node's certificate, once it was issued one.
    pub fn certificate(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join(CERT)).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_key_is_private_and_kept_and_the_certificate_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = TlsStore::open(dir.path()).unwrap();
        let key_path = dir.path().join("tls").join(KEY);
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = TlsStore::open(dir.path()).unwrap();
        assert_eq!(
            store.key.der(),
            again.key.der(),
            "the key is kept across starts"
        );
        assert!(store.certificate().is_none());

        let ca = symphony_pki::ClusterCa::generate("c").unwrap();
        let identity = symphony_pki::CertIdentity {
            cluster_id: "c".into(),
            role: symphony_pki::CertRole::Worker,
            node_id: 3,
        };
        let issued = ca
            .issue(
                &store.request(3).unwrap(),
                &identity,
                std::time::SystemTime::now(),
            )
            .unwrap();
        store.store(&issued.cert_pem, &ca.bundle()).unwrap();
        assert_eq!(again.certificate().unwrap(), issued.cert_pem);
        assert_eq!(again.ca_bundle().unwrap(), ca.bundle());
    }
}
