//! [`Context`]: the handles request handlers draw on. Each part is owned by one task and only
//! read (or asked) through its handle here: the node's role by its supervisor, the gossip driver
//! by its keeper, a worker's session by its loop; the connection pool is shared by design, and
//! the gossip keyring is written under its own lock.

use std::sync::Arc;

use crate::gossip::GossipWatch;
use crate::keyring::KeyringStore;
use crate::node::NodeHandle;
use crate::remote::RemotePool;
use crate::tls::TlsStore;
use crate::worker::session::SessionHandle;

#[derive(Clone)]
pub struct Context {
    pub node: NodeHandle,
    pub gossip: GossipWatch,
    pub session: SessionHandle,
    pub remote: Arc<RemotePool>,
    /// The node's gossip keys.
    pub keys: Arc<KeyringStore>,
    /// The node's TLS key, certificate and CA bundle.
    pub tls: Arc<TlsStore>,
    /// The agent's instruments, for the metrics scrape a support bundle holds.
    pub metrics: crate::metrics::Metrics,
}
