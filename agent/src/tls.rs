//! The node's own TLS material in `<config dir>/tls/`: its private key (`node.key`, 0600,
//! generated on first start and never sent anywhere), the certificate a manager issued it
//! (`node.crt`) and the CA bundle it trusts (`ca.crt`), each replaced atomically.
//!
//! The store also owns how the node's TCP links are wrapped, since that follows from what it
//! holds: plain while the node has no certificate (a fresh node: it has nothing to protect and
//! no cluster to prove it belongs to), mutual TLS from the moment one is kept. Listeners and
//! dialers hold live [`Transport`]s over its channels, so a certificate kept at a join (or
//! renewed) applies to the next connection without rebuilding anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use symphony_pki::{CaBundle, ClusterCa, NodeKey, PkiError};
use symphony_wire::Transport;
use symphony_wire::tls::{ClientAuth, PeerCheck, TlsMaterial, TlsTransport};
use tokio::sync::watch;

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
    #[error("the node's certificate cannot be used for TLS: {0}")]
    Setup(#[from] symphony_wire::tls::TlsSetupError),
}

/// The node's key and what it was issued.
pub struct TlsStore {
    dir: PathBuf,
    key: Arc<NodeKey>,
    /// The Raft port's TLS: every client shows a certificate.
    raft: watch::Sender<Option<Arc<TlsTransport>>>,
    /// The node-to-node API's: a client may come without one (a node joining).
    remote: watch::Sender<Option<Arc<TlsTransport>>>,
    /// The nodes removed from the cluster, whose certificates this node refuses in every
    /// handshake (both ways) and on every call. Set on a manager by the task that follows its
    /// replica (`manager::trust::watch`), on a worker from its session's assignments stream
    /// (`exec::feed`).
    removed: watch::Sender<Arc<BTreeSet<u64>>>,
    /// Held while the files change: a renewal (its certificate) and the cluster's new bundle
    /// (its trust) may come at once, and neither may write back what the other replaced.
    writing: std::sync::Mutex<()>,
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
const PENDING_CA: &str = "pending-ca.json";

/// A cluster being created: its id and CA, before the state holds them.
#[derive(serde::Serialize, serde::Deserialize)]
struct PendingCa {
    cluster_id: String,
    ca: ClusterCa,
}

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
        let store = TlsStore {
            dir,
            key: Arc::new(key),
            raft: watch::Sender::new(None),
            remote: watch::Sender::new(None),
            removed: watch::Sender::new(Arc::new(BTreeSet::new())),
            writing: std::sync::Mutex::new(()),
        };
        if let Err(error) = store.publish() {
            // The node still starts (its control socket works, a new join can issue another
            // certificate); its links stay plain, which every enrolled node refuses.
            tracing::error!(%error, "this node's certificate is unusable; its links to the cluster will be refused until it joins again");
        }
        Ok(store)
    }

    /// Builds the node's TLS from its files and hands it to every live transport; nothing
    /// changes while it has no certificate.
    fn publish(&self) -> Result<(), TlsStoreError> {
        let (Some(cert_pem), Some(bundle)) = (self.certificate(), self.ca_bundle()) else {
            return Ok(());
        };
        let cert_path = self.dir.join(CERT);
        let pki = |source| TlsStoreError::Pki {
            path: cert_path.clone(),
            source,
        };
        let der = symphony_pki::verify::first_der(&cert_pem).map_err(pki)?;
        // The cluster is the one the bundle's CA issued the certificate for; an expired one
        // is still used, so the peers' refusal says why.
        let identity = symphony_pki::verify::verify_pem(
            &cert_pem,
            &bundle,
            None,
            std::time::SystemTime::now(),
        )
        .or_else(|_| symphony_pki::verify::identity_of_der(&der))
        .map_err(pki)?;
        let material = TlsMaterial {
            cert_pem,
            key_der: self.key.der(),
            bundle,
            cluster_id: identity.cluster_id,
        };
        // Read at every handshake, so a removal applies to the next connection without
        // rebuilding the TLS configuration.
        let removed = self.removed.subscribe();
        let check: PeerCheck = Arc::new(move |identity: &symphony_pki::CertIdentity| {
            !removed.borrow().contains(&identity.node_id)
        });
        let raft = TlsTransport::checked(&material, ClientAuth::Required, Some(check.clone()))?;
        let remote = TlsTransport::checked(&material, ClientAuth::Optional, Some(check))?;
        self.raft.send_replace(Some(Arc::new(raft)));
        self.remote.send_replace(Some(Arc::new(remote)));
        Ok(())
    }

    /// How the Raft port's connections are wrapped, both ways.
    pub fn raft_transport(&self) -> Transport {
        Transport::live(self.raft.subscribe())
    }

    /// How the node-to-node API's connections are wrapped, both ways.
    pub fn remote_transport(&self) -> Transport {
        Transport::live(self.remote.subscribe())
    }

    /// Changes to the node-to-node API's TLS: a pool of connections made before drops them.
    pub fn remote_changes(&self) -> watch::Receiver<Option<Arc<TlsTransport>>> {
        self.remote.subscribe()
    }

    /// Whether the node's certificate checks out against its bundle now: not expired, so its
    /// peers take it. A node whose certificate expired while it was off (and so could not
    /// renew it) joins again with a token, as a newcomer.
    pub fn holds_valid_certificate(&self) -> bool {
        let (Some(cert), Some(bundle)) = (self.certificate(), self.ca_bundle()) else {
            return false;
        };
        symphony_pki::verify::verify_pem(&cert, &bundle, None, std::time::SystemTime::now()).is_ok()
    }

    /// Whether the node's certificate comes from a root its bundle still trusts but no longer
    /// issues from (any but the first): during a root rotation, the old one. Such a node
    /// renews at once, onto the new root.
    pub fn holds_superseded_root(&self) -> bool {
        let (Some(cert), Some(bundle)) = (self.certificate(), self.ca_bundle()) else {
            return false;
        };
        let Ok(roots) = bundle.certificates_der() else {
            return false;
        };
        roots.iter().skip(1).any(|root| {
            let root = CaBundle::of_der(root);
            symphony_pki::verify::signed_by_key_of(&cert, &root.pem).unwrap_or(false)
        })
    }

    /// Trusts `bundle` from now on, as the cluster says (a manager's replica; a worker's
    /// session): during a root rotation the new root and the old, then the new alone.
    /// Nothing changes if it is the bundle held already; a node that holds no certificate
    /// takes none (it gets its bundle when it joins).
    pub fn set_trust(&self, bundle: &CaBundle) -> Result<bool, TlsStoreError> {
        let _writing = self.lock();
        let Some(cert) = self.certificate() else {
            return Ok(false);
        };
        // The same certificates, however the text is laid out, are the same bundle.
        let held = self
            .ca_bundle()
            .and_then(|held| held.certificates_der().ok());
        if held.is_some() && held == bundle.certificates_der().ok() {
            return Ok(false);
        }
        let roots = bundle
            .certificates_der()
            .map_err(|source| TlsStoreError::Pki {
                path: self.dir.join(CA),
                source,
            })?;
        if let Err(error) =
            symphony_pki::verify::verify_pem(&cert, bundle, None, std::time::SystemTime::now())
        {
            // Kept all the same: the cluster trusts this bundle, and a node whose certificate
            // it no longer covers must join again whatever it keeps.
            tracing::error!(%error, "the cluster's CA bundle no longer covers this node's certificate; it must join again (`symphony-ctl join --token ...`)");
        }
        self.write(&[(CA, bundle.pem.as_str())])?;
        tracing::info!(
            roots = roots.len(),
            "this node trusts the cluster's new CA bundle"
        );
        self.publish()?;
        Ok(true)
    }

    /// Whether the node holds a certificate its links use.
    pub fn enrolled(&self) -> bool {
        self.remote.borrow().is_some()
    }

    /// Sets the nodes removed from the cluster (see [`TlsStore::is_removed`]).
    pub fn set_removed(&self, removed: &BTreeSet<u64>) {
        self.removed.send_if_modified(|held| {
            if **held == *removed {
                return false;
            }
            *held = Arc::new(removed.clone());
            true
        });
    }

    /// The nodes removed from the cluster, as this node last learnt.
    pub fn removed(&self) -> Arc<BTreeSet<u64>> {
        self.removed.borrow().clone()
    }

    /// Whether `node_id` was removed from the cluster, as this node last learnt.
    pub fn is_removed(&self, node_id: u64) -> bool {
        self.removed.borrow().contains(&node_id)
    }

    /// The digest of the node's public key, which every certificate it is issued carries.
    pub fn key_digest(&self) -> String {
        self.key.public_key_digest()
    }

    /// A certificate request for the node's key.
    pub fn request(&self, node_id: u64) -> Result<String, PkiError> {
        self.key.request(&format!("symphony node {node_id}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps a certificate a manager issued and the bundle it was checked against (a join).
    pub fn store(&self, cert_pem: &str, bundle: &CaBundle) -> Result<(), TlsStoreError> {
        let _writing = self.lock();
        self.write(&[(CA, bundle.pem.as_str()), (CERT, cert_pem)])?;
        self.publish()
    }

    /// Keeps a renewed certificate, with the bundle held, if that bundle covers it.
    pub fn store_certificate(&self, cert_pem: &str) -> Result<(), TlsStoreError> {
        let _writing = self.lock();
        let path = self.dir.join(CERT);
        let bundle = self.ca_bundle().ok_or_else(|| TlsStoreError::Pki {
            path: self.dir.join(CA),
            source: PkiError::EmptyBundle,
        })?;
        symphony_pki::verify::verify_pem(cert_pem, &bundle, None, std::time::SystemTime::now())
            .map_err(|source| TlsStoreError::Pki {
                path: path.clone(),
                source,
            })?;
        self.write(&[(CERT, cert_pem)])?;
        self.publish()
    }

    fn write(&self, files: &[(&str, &str)]) -> Result<(), TlsStoreError> {
        for (name, text) in files {
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

    /// Keeps the CA of a cluster this node is creating, until the cluster state holds it: an
    /// `init --peers` that stops after its peers were issued certificates resumes with the
    /// same CA, not one they do not trust. A secret, like the state that will hold it.
    pub fn keep_pending_ca(&self, cluster_id: &str, ca: &ClusterCa) -> Result<(), TlsStoreError> {
        let path = self.dir.join(PENDING_CA);
        let pending = PendingCa {
            cluster_id: cluster_id.to_string(),
            ca: ca.clone(),
        };
        let bytes = serde_json::to_vec(&pending).map_err(|error| TlsStoreError::Io {
            action: "encode",
            path: path.clone(),
            source: std::io::Error::other(error),
        })?;
        crate::durable::write_private(&path, &bytes).map_err(|source| TlsStoreError::Io {
            action: "write",
            path,
            source,
        })
    }

    /// The CA kept by [`TlsStore::keep_pending_ca`], if any (and readable).
    pub fn pending_ca(&self) -> Option<(String, ClusterCa)> {
        let bytes = std::fs::read(self.dir.join(PENDING_CA)).ok()?;
        let pending: PendingCa = serde_json::from_slice(&bytes).ok()?;
        Some((pending.cluster_id, pending.ca))
    }

    /// Forgets the pending CA, once the cluster state holds it.
    pub fn drop_pending_ca(&self) {
        let _ = std::fs::remove_file(self.dir.join(PENDING_CA));
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
        assert!(!store.holds_valid_certificate());
        store.store(&issued.cert_pem, &ca.bundle()).unwrap();
        assert!(store.holds_valid_certificate());
        assert_eq!(again.certificate().unwrap(), issued.cert_pem);
        assert_eq!(again.ca_bundle().unwrap(), ca.bundle());
        assert_eq!(
            symphony_pki::verify::public_key_digest(&issued.cert_pem).unwrap(),
            store.key_digest()
        );
    }

    #[test]
    fn a_new_bundle_is_trusted_and_a_certificate_of_a_superseded_root_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let store = TlsStore::open(dir.path()).unwrap();
        let identity = symphony_pki::CertIdentity {
            cluster_id: "c".into(),
            role: symphony_pki::CertRole::Worker,
            node_id: 3,
        };
        let now = std::time::SystemTime::now();
        let old = symphony_pki::ClusterCa::generate("c").unwrap();
        let issued = old
            .issue(&store.request(3).unwrap(), &identity, now)
            .unwrap();
        // Nothing to trust before the node holds a certificate.
        assert!(!store.set_trust(&old.bundle()).unwrap());
        store.store(&issued.cert_pem, &old.bundle()).unwrap();
        assert!(!store.holds_superseded_root());
        // The same roots laid out otherwise change nothing.
        assert!(
            !store
                .set_trust(&CaBundle::of_roots(&[&old.cert_pem]))
                .unwrap()
        );

        let rotated = old.rotate("c", now).unwrap();
        let both = CaBundle::of_roots(&[&rotated.ca.cert_pem, &old.cert_pem]);
        assert!(store.set_trust(&both).unwrap());
        assert!(
            store.holds_superseded_root(),
            "its certificate is of the old root"
        );
        assert!(store.holds_valid_certificate());
        let renewed = rotated
            .ca
            .issue(&store.request(3).unwrap(), &identity, now)
            .unwrap();
        let chain = format!("{}{}", renewed.cert_pem, rotated.cross_signed_pem);
        store.store_certificate(&chain).unwrap();
        assert!(!store.holds_superseded_root());
        assert!(store.set_trust(&rotated.ca.bundle()).unwrap());
        assert!(store.holds_valid_certificate());
        assert!(!store.holds_superseded_root());
        // A certificate the bundle does not cover is not kept.
        let stranger = symphony_pki::ClusterCa::generate("c").unwrap();
        let foreign = stranger
            .issue(&store.request(3).unwrap(), &identity, now)
            .unwrap();
        assert!(store.store_certificate(&foreign.cert_pem).is_err());
        assert_eq!(store.certificate().unwrap(), chain);
    }

    #[test]
    fn removed_nodes_are_remembered_until_changed() {
        let dir = tempfile::tempdir().unwrap();
        let store = TlsStore::open(dir.path()).unwrap();
        assert!(!store.is_removed(7));
        store.set_removed(&BTreeSet::from([7]));
        assert!(store.is_removed(7) && !store.is_removed(8));
        store.set_removed(&BTreeSet::new());
        assert!(!store.is_removed(7));
    }
}
