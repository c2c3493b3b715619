//! Target `csr`: the certificate request a joining node sends in its `Join`, as the leader's
//! admission issues a certificate from it ([`admission::issue_certificate`], over the cluster
//! CA of the fixture).
//!
//! Checked: garbage is a `bad_request` the joiner is told about, never an internal error or a
//! panic; a certificate that is issued verifies against the cluster's bundle and names exactly
//! the node id, role and cluster the leader decided, whatever the request asked for.

use std::sync::OnceLock;
use symphony_agent::manager::admission;
use symphony_consensus::{ClusterInfo, GossipKeyring};
use symphony_ctl::proto::{ErrorCode, Role};
use symphony_pki::{CertIdentity, CertRole, verify};

use crate::fixture;

fn cluster() -> &'static ClusterInfo {
    static CLUSTER: OnceLock<ClusterInfo> = OnceLock::new();
    CLUSTER.get_or_init(|| ClusterInfo {
        cluster_id: fixture::CLUSTER_ID.into(),
        created_at_ms: 1,
        manager_token: String::new(),
        worker_token: String::new(),
        manager_secret: String::new(),
        gossip_keys: GossipKeyring::default(),
        ca: Some(fixture::pki().ca.clone()),
        cert_lifetime_s: None,
        removed_nodes: Default::default(),
        ca_rotation: None,
    })
}

pub fn run(data: &[u8]) {
    // The request travels as a MessagePack str: UTF-8.
    let Ok(csr) = std::str::from_utf8(data) else {
        return;
    };
    let cluster = cluster();
    match admission::issue_certificate(cluster, csr, 7, Role::Worker) {
        Ok(pem) => {
            let der = verify::first_der(&pem).expect("an issued certificate is PEM");
            let bundle = fixture::pki().ca.bundle();
            // Issued now, so checked now (not at the fixture's time).
            let identity = verify::verify_peer(
                &der,
                &bundle,
                fixture::CLUSTER_ID,
                std::time::SystemTime::now(),
            )
            .expect("an issued certificate verifies");
            assert_eq!(
                identity,
                CertIdentity {
                    cluster_id: fixture::CLUSTER_ID.into(),
                    role: CertRole::Worker,
                    node_id: 7,
                }
            );
        }
        Err(error) => assert_eq!(error.code, ErrorCode::BadRequest, "{}", error.message),
    }
}
