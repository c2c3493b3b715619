#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::SystemTime;

use symphony_pki::{CertIdentity, CertRole, ClusterCa, NodeKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::tls::{ClientAuth, TlsMaterial, TlsTransport};

const CLUSTER: &str = "c0ffee";

fn material(ca: &ClusterCa, cluster: &str, role: CertRole, node_id: u64) -> TlsMaterial {
    let key = NodeKey::generate().unwrap();
    let identity = CertIdentity {
        cluster_id: cluster.into(),
        role,
        node_id,
    };
    let issued = ca
        .issue(&key.request("n").unwrap(), &identity, SystemTime::now())
        .unwrap();
    TlsMaterial {
        cert_pem: issued.cert_pem,
        key_der: key.der(),
        bundle: ca.bundle(),
        cluster_id: CLUSTER.into(),
    }
}

fn transport(material: &TlsMaterial, auth: ClientAuth) -> Transport {
    Transport::tls(TlsTransport::new(material, auth).unwrap())
}

/// Runs both handshakes over a pipe; the server's result (with what it read) and the
/// client's.
async fn handshake(
    server: &Transport,
    client: &Transport,
) -> (
    std::io::Result<(PeerInfo, Vec<u8>)>,
    std::io::Result<Option<CertIdentity>>,
) {
    let (near, far) = tokio::io::duplex(1 << 16);
    let server = server.clone();
    let accepted = tokio::spawn(async move {
        let (mut stream, peer) = server.server(far, PeerAddr::Local).await?;
        let mut buffer = vec![0u8; 5];
        stream.read_exact(&mut buffer).await?;
        Ok::<_, std::io::Error>((peer, buffer))
    });
    // The client's stream is kept open until the server is done with its end: TLS 1.3
    // servers write after the handshake (tickets), and a closed pipe would fail them.
    let (dialled, _kept) = match client.client(near, "pipe").await {
        Ok((mut stream, identity)) => {
            let _ = stream.write_all(b"hello").await;
            let _ = stream.flush().await;
            (Ok(identity), Some(stream))
        }
        Err(error) => (Err(error), None),
    };
    (accepted.await.unwrap(), dialled)
}

#[tokio::test]
async fn mutual_tls_names_both_sides() {
    let ca = ClusterCa::generate(CLUSTER).unwrap();
    let server = transport(
        &material(&ca, CLUSTER, CertRole::Manager, 1),
        ClientAuth::Required,
    );
    let client = transport(
        &material(&ca, CLUSTER, CertRole::Worker, 2),
        ClientAuth::Required,
    );
    let (accepted, dialled) = handshake(&server, &client).await;
    let (peer, read) = accepted.unwrap();
    assert_eq!(read, b"hello");
    let who = peer.identity.unwrap();
    assert_eq!((who.role, who.node_id), (CertRole::Worker, 2));
    let server_identity = dialled.unwrap().unwrap();
    assert_eq!(
        (server_identity.role, server_identity.node_id),
        (CertRole::Manager, 1)
    );
}

#[tokio::test]
async fn a_plaintext_client_fails_the_handshake() {
    let ca = ClusterCa::generate(CLUSTER).unwrap();
    let server = transport(
        &material(&ca, CLUSTER, CertRole::Manager, 1),
        ClientAuth::Required,
    );
    let (accepted, dialled) = handshake(&server, &Transport::plain()).await;
    assert!(accepted.is_err(), "a plain client got through");
    assert!(dialled.is_ok(), "the plain side only wrote");
}

#[tokio::test]
async fn a_certificate_of_another_ca_fails_the_handshake_either_way() {
    let ours = ClusterCa::generate(CLUSTER).unwrap();
    let theirs = ClusterCa::generate(CLUSTER).unwrap();
    let server = transport(
        &material(&ours, CLUSTER, CertRole::Manager, 1),
        ClientAuth::Required,
    );
    // Their certificate, trusting our CA: the server refuses it.
    let mut intruder = material(&theirs, CLUSTER, CertRole::Manager, 9);
    intruder.bundle = ours.bundle();
    let (accepted, _) = handshake(&server, &transport(&intruder, ClientAuth::Required)).await;
    assert!(accepted.is_err(), "another CA's client got through");
    // A server of another CA: our client refuses it.
    let impostor = transport(
        &material(&theirs, CLUSTER, CertRole::Manager, 9),
        ClientAuth::Optional,
    );
    let client = transport(
        &material(&ours, CLUSTER, CertRole::Worker, 2),
        ClientAuth::Required,
    );
    let (_, dialled) = handshake(&impostor, &client).await;
    assert!(dialled.is_err(), "our client trusted another CA's server");
}

#[tokio::test]
async fn a_certificate_of_another_cluster_of_the_same_ca_is_refused() {
    let ca = ClusterCa::generate(CLUSTER).unwrap();
    let server = transport(
        &material(&ca, CLUSTER, CertRole::Manager, 1),
        ClientAuth::Required,
    );
    let client = transport(
        &material(&ca, "other", CertRole::Manager, 3),
        ClientAuth::Required,
    );
    let (accepted, _) = handshake(&server, &client).await;
    assert!(accepted.is_err());
}

#[tokio::test]
async fn a_client_without_a_certificate_passes_only_where_newcomers_may() {
    let ca = ClusterCa::generate(CLUSTER).unwrap();
    let node = material(&ca, CLUSTER, CertRole::Manager, 1);
    let newcomer =
        Transport::tls(TlsTransport::newcomer(ca.bundle(), Some(CLUSTER.into())).unwrap());
    let (accepted, _) = handshake(&transport(&node, ClientAuth::Required), &newcomer).await;
    assert!(
        accepted.is_err(),
        "no certificate, yet through a listener that requires one"
    );
    let (accepted, dialled) = handshake(&transport(&node, ClientAuth::Optional), &newcomer).await;
    let (peer, _) = accepted.unwrap();
    assert_eq!(peer.identity, None);
    assert_eq!(
        dialled.unwrap().unwrap().node_id,
        1,
        "the newcomer still checks the server"
    );
    // A newcomer serves nothing.
    let (accepted, _) = handshake(&newcomer, &transport(&node, ClientAuth::Required)).await;
    assert!(accepted.is_err());
}

#[tokio::test]
async fn a_newcomer_that_knows_only_the_bundle_checks_the_server_by_it() {
    let ca = ClusterCa::generate(CLUSTER).unwrap();
    let other = ClusterCa::generate(CLUSTER).unwrap();
    let node = material(&ca, CLUSTER, CertRole::Manager, 1);
    let newcomer = Transport::tls(TlsTransport::newcomer(ca.bundle(), None).unwrap());
    let (accepted, dialled) = handshake(&transport(&node, ClientAuth::Optional), &newcomer).await;
    accepted.unwrap();
    assert_eq!(dialled.unwrap().unwrap().cluster_id, CLUSTER);
    let stranger = Transport::tls(TlsTransport::newcomer(other.bundle(), None).unwrap());
    let (_, dialled) = handshake(&transport(&node, ClientAuth::Optional), &stranger).await;
    assert!(dialled.is_err(), "a server of another CA, trusted");
}

#[tokio::test]
async fn discovery_reaches_only_listeners_that_let_newcomers_in_and_learns_no_identity() {
    let ca = ClusterCa::generate(CLUSTER).unwrap();
    let node = material(&ca, CLUSTER, CertRole::Manager, 1);
    let discovery = Transport::tls(TlsTransport::discovery().unwrap());
    let (accepted, dialled) = handshake(&transport(&node, ClientAuth::Optional), &discovery).await;
    let (peer, _) = accepted.unwrap();
    assert_eq!(peer.identity, None);
    assert_eq!(dialled.unwrap(), None, "discovery trusts no server's name");
    let (accepted, _) = handshake(&transport(&node, ClientAuth::Required), &discovery).await;
    assert!(accepted.is_err());
}

#[tokio::test]
async fn a_live_transport_follows_its_channel_per_connection() {
    let ca = ClusterCa::generate(CLUSTER).unwrap();
    let node = material(&ca, CLUSTER, CertRole::Manager, 1);
    let (set, current) = tokio::sync::watch::channel(None);
    let live = Transport::live(current);
    let plain = Transport::plain();
    let (accepted, _) = handshake(&live, &plain).await;
    assert_eq!(
        accepted.unwrap().1,
        b"hello",
        "plain while it holds nothing"
    );
    set.send_replace(Some(std::sync::Arc::new(
        TlsTransport::new(&node, ClientAuth::Required).unwrap(),
    )));
    let (accepted, _) = handshake(&live, &plain).await;
    assert!(accepted.is_err(), "a plaintext client once it holds TLS");
    let (accepted, _) = handshake(&live, &transport(&node, ClientAuth::Required)).await;
    assert_eq!(accepted.unwrap().0.identity.unwrap().node_id, 1);
}

#[tokio::test]
async fn a_peer_the_check_refuses_fails_the_handshake_and_others_pass() {
    let ca = ClusterCa::generate(CLUSTER).unwrap();
    // The server refuses node 2 (say, removed from its cluster) and no one else.
    let check: crate::tls::PeerCheck =
        std::sync::Arc::new(|identity: &CertIdentity| identity.node_id != 2);
    let server = Transport::tls(
        TlsTransport::checked(
            &material(&ca, CLUSTER, CertRole::Manager, 1),
            ClientAuth::Required,
            Some(check),
        )
        .unwrap(),
    );
    let refused = transport(
        &material(&ca, CLUSTER, CertRole::Worker, 2),
        ClientAuth::Required,
    );
    let (accepted, _) = handshake(&server, &refused).await;
    assert!(accepted.is_err(), "a refused identity got through");
    let other = transport(
        &material(&ca, CLUSTER, CertRole::Worker, 3),
        ClientAuth::Required,
    );
    let (accepted, _) = handshake(&server, &other).await;
    assert_eq!(accepted.unwrap().0.identity.unwrap().node_id, 3);
}
