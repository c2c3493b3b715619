//! Seed inputs for every target, made by encoding real messages with the code that sends them,
//! so that fuzzing starts from what nodes actually exchange. `examples/seeds.rs` writes them to
//! `fuzz/corpus/<target>/`; they are few and small on purpose.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, TransferLeaderRequest, VoteRequest, VoteResponse,
};
use serde::Serialize;
use symphony_agent::remote::proto::{
    AssignmentUpdate, JoinRequest, Remote, RemoteCall, RemoteReply, RemoteRequest, SessionReply,
};
use symphony_consensus::network::rpc::{PeerIdentity, RaftReply, RaftRequest};
use symphony_consensus::state::{Changes, ClusterInfo, GossipKeyring, KeySecret, NodeRecord};
use symphony_consensus::store::SnapshotPayload;
use symphony_consensus::types::{Entry, LogId, SnapshotMeta, Vote};
use symphony_consensus::{
    Availability, ClusterCommand, ClusterState, Command, KvCommand, NodeRole, NodeStatus,
    Resources, TaskReport, TaskState,
};
use symphony_ctl::proto::{
    Ctl, CtlError, ErrorCode, EventFilter, KvWriteResult, ReadConsistency, Request, Response, Role,
    ServicePatchView, ServiceSpecView,
};
use symphony_gossip::framing::Framing;
use symphony_gossip::packet::cluster_tag;
use symphony_pki::{CertRole, JoinToken, NodeKey, verify};
use symphony_wire::hello::{Hello, LocalHello};
use symphony_wire::{Body, Protocol, RequestFrame, ResponseFrame, frame};

use crate::{fixture, gossip};

/// Seeds by target: each a file name and its bytes.
pub type Seeds = BTreeMap<&'static str, Vec<(&'static str, Vec<u8>)>>;

pub fn all() -> Seeds {
    BTreeMap::from([
        ("frame", frame_seeds()),
        ("control", control_seeds()),
        ("remote", remote_seeds()),
        ("raft", raft_seeds()),
        ("gossip", gossip_seeds()),
        ("token", token_seeds()),
        ("csr", csr_seeds()),
        ("cert", cert_seeds()),
        ("wal", wal_seeds()),
    ])
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    frame::encode(value).expect("a seed encodes")
}

/// Bodies with their length prefixes, as they go over a framed link.
fn stream(bodies: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::new();
    for body in bodies {
        let len = u32::try_from(body.len()).expect("a small seed");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

fn hello<P: Protocol>() -> Bytes {
    encode(&Hello::new(
        P::ID,
        &LocalHello {
            node_id: 0,
            agent_version: "0.1.0".into(),
        },
    ))
}

fn requests() -> Vec<(&'static str, Request)> {
    vec![
        ("status", Request::Status),
        ("ca-rotate", Request::CaRotate),
        (
            "kv-put",
            Request::KvPut {
                key: "greeting".into(),
                value: b"hello".to_vec(),
                if_revision: Some(3),
            },
        ),
        (
            "kv-get",
            Request::KvGet {
                key: "greeting".into(),
                consistency: ReadConsistency::Stale,
                revision: Some(2),
            },
        ),
        (
            "kv-watch",
            Request::KvWatch {
                prefix: "app/".into(),
                from_revision: Some(1),
            },
        ),
        (
            "join",
            Request::Join {
                token: "SYMTKN-1-W-x-y".into(),
                addr: "127.0.0.1:27242".into(),
            },
        ),
        (
            "node-update",
            Request::NodeUpdate {
                node_id: 7,
                availability: Some("drain".into()),
                label_add: BTreeMap::from([("zone".into(), "a".into())]),
                label_rm: vec!["disk".into()],
            },
        ),
        (
            "service-create",
            Request::ServiceCreate {
                name: "web".into(),
                spec: Box::new(ServiceSpecView {
                    command: vec!["sleep".into(), "60".into()],
                    ..ServiceSpecView::default()
                }),
            },
        ),
        (
            "service-update",
            Request::ServiceUpdate {
                name: "web".into(),
                patch: Box::new(ServicePatchView {
                    health: Some(None),
                    workdir: Some(Some("/srv".into())),
                    replicas: Some(3),
                    ..ServicePatchView::default()
                }),
            },
        ),
        (
            "events",
            Request::Events {
                since: Some(10),
                filter: EventFilter {
                    kinds: vec!["task".into()],
                    ..EventFilter::default()
                },
            },
        ),
        ("token-show", Request::TokenShow { role: Role::Worker }),
        (
            "gossip-key-use",
            Request::GossipKeyUse {
                id: 2,
                wait_ms: 1000,
                force: false,
            },
        ),
    ]
}

fn frame_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let requests: Vec<Bytes> = requests()
        .into_iter()
        .zip(1..)
        .map(|((_, request), id)| encode(&RequestFrame::new(id, request)))
        .collect();
    let mut session = vec![hello::<Ctl>()];
    session.extend(requests.iter().take(4).cloned());
    session.push(encode(&RequestFrame::<Request>::cancel(4)));
    // A request this side does not know, and a frame that is no request at all.
    #[derive(Serialize)]
    enum Newer {
        Teleport { to: String },
    }
    session.push(encode(&RequestFrame::new(
        20,
        Newer::Teleport { to: "mars".into() },
    )));
    session.push(Bytes::from_static(b"\x81\xa2id\x15"));
    session.push(Bytes::from_static(b"\xc1"));
    let mut too_large = stream(&[hello::<Ctl>(), requests[0].clone()]);
    too_large.extend_from_slice(&u32::MAX.to_be_bytes());
    let mut partial = stream(&[hello::<Ctl>()]);
    partial.extend_from_slice(&stream(&[requests[1].clone()])[..9]);
    vec![
        ("session", stream(&session)),
        (
            "every-request",
            stream(&[&[hello::<Ctl>()][..], &requests].concat()),
        ),
        ("hello-only", stream(&[hello::<Ctl>()])),
        (
            "another-protocol",
            stream(&[hello::<Remote>(), requests[0].clone()]),
        ),
        ("not-a-hello", stream(&[requests[0].clone()])),
        ("too-large", too_large),
        ("partial", partial),
    ]
}

fn control_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut seeds: Vec<(&'static str, Vec<u8>)> = requests()
        .into_iter()
        .zip(1..)
        .map(|((name, request), id)| (name, encode(&RequestFrame::new(id, request)).to_vec()))
        .collect();
    let responses = [
        (
            "reply-kv-put",
            Body::Reply(Response::KvPut(KvWriteResult { revision: 9 })),
        ),
        ("item-kv-events", Body::Item(Response::KvEvents(Vec::new()))),
        ("end", Body::End),
        (
            "error",
            Body::Error(CtlError::new(ErrorCode::NoLeader, "no leader yet")),
        ),
    ];
    for (name, body) in responses {
        seeds.push((name, encode(&ResponseFrame { id: 5, body }).to_vec()));
    }
    seeds.push((
        "cancel",
        encode(&RequestFrame::<Request>::cancel(3)).to_vec(),
    ));
    seeds
}

fn remote_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let call = |request| RemoteCall {
        request,
        forwarded: false,
    };
    let join = JoinRequest {
        token: Some("SYMTKN-1-W-x-y".into()),
        node_id: 7,
        raft_node_id: 8,
        hostname: "worker-7".into(),
        raft_addr: "127.0.0.1:15761".into(),
        remote_addr: "127.0.0.1:27243".into(),
        agent_version: "0.1.0".into(),
        cpus: 2,
        memory_bytes: 1 << 30,
        docker: None,
        cluster_id: None,
        gossip_addr: Some("127.0.0.1:27243".into()),
        labels: BTreeMap::from([("zone".into(), "a".into())]),
        csr: Some(
            "-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n".into(),
        ),
    };
    let calls = [
        ("join", call(RemoteRequest::Join(join))),
        (
            "forward",
            RemoteCall {
                request: RemoteRequest::Forward {
                    secret: "s".into(),
                    request: Request::KvDelete {
                        key: "k".into(),
                        if_revision: None,
                    },
                },
                forwarded: true,
            },
        ),
        (
            "session",
            call(RemoteRequest::Session {
                node_id: 7,
                secret: "s".into(),
                members_seen: Some(3),
                keyring_version: Some(1),
            }),
        ),
        (
            "assignments",
            call(RemoteRequest::Assignments {
                node_id: 7,
                secret: "s".into(),
                heartbeat_ms: Some(500),
            }),
        ),
        (
            "task-reports",
            call(RemoteRequest::TaskReports {
                node_id: 7,
                secret: "s".into(),
                reports: vec![TaskReport {
                    task_id: 3,
                    state: TaskState::Running,
                    exit_code: None,
                    error: None,
                    health: None,
                }],
            }),
        ),
        (
            "node-resources",
            call(RemoteRequest::NodeResources {
                node_id: 7,
                secret: "s".into(),
                resources: Resources {
                    cpus: 2,
                    memory_bytes: 1 << 30,
                    docker: Some("27.0".into()),
                },
                agent_version: "0.1.0".into(),
            }),
        ),
        (
            "task-logs",
            call(RemoteRequest::TaskLogs {
                task_id: 3,
                secret: "s".into(),
                tail: Some(10),
                follow: true,
            }),
        ),
        ("who-leads", call(RemoteRequest::WhoLeads)),
        ("ca-bundle", call(RemoteRequest::CaBundle)),
        (
            "worker-leaving",
            call(RemoteRequest::WorkerLeaving {
                node_id: 7,
                secret: "s".into(),
            }),
        ),
        (
            "renew-certificate",
            call(RemoteRequest::RenewCertificate {
                csr: NodeKey::generate()
                    .and_then(|key| key.request("symphony node 7"))
                    .expect("a certificate request"),
            }),
        ),
        (
            "certificate-issued",
            call(RemoteRequest::CertificateIssued {
                secret: "s".into(),
                node_id: 7,
                certificate: symphony_consensus::NodeCertificate {
                    key_digest: "ab".repeat(32),
                    not_after_ms: 1_800_000_000_000,
                    root_digest: "cd".repeat(32),
                },
            }),
        ),
    ];
    let mut seeds: Vec<(&'static str, Vec<u8>)> = calls
        .into_iter()
        .zip(1..)
        .map(|((name, call), id)| (name, encode(&RequestFrame::new(id, call)).to_vec()))
        .collect();
    let replies = [
        (
            "reply-session",
            Body::Reply(RemoteReply::Session(SessionReply {
                cluster_id: "c0ffee".into(),
                leader_node_id: Some(1),
                managers: Vec::new(),
                members: Vec::new(),
                gossip_keys: Some(GossipKeyring::first(KeySecret([7; 32]), 1)),
            })),
        ),
        (
            "item-assignments",
            Body::Item(RemoteReply::Assignments(AssignmentUpdate::Heartbeat {
                seq: 4,
                node_ready: true,
            })),
        ),
        (
            "item-trust",
            Body::Item(RemoteReply::Assignments(AssignmentUpdate::Trust {
                bundle: fixture::pki().ca.cert_pem.clone(),
                removed: [5].into(),
            })),
        ),
        (
            "reply-forwarded",
            Body::Reply(RemoteReply::Forwarded(Response::KvPut(KvWriteResult {
                revision: 2,
            }))),
        ),
    ];
    for (name, body) in replies {
        seeds.push((
            name,
            encode(&ResponseFrame::<RemoteReply, CtlError> { id: 2, body }).to_vec(),
        ));
    }
    seeds
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(LeaderId { term, node_id: 2 }, index)
}

/// A small but real cluster state: bootstrapped, with a key written.
fn small_state() -> ClusterState {
    let mut state = ClusterState::default();
    let node = NodeRecord {
        node_id: 1,
        raft_node_id: Some(2),
        role: NodeRole::Manager,
        hostname: "manager-1".into(),
        remote_addr: "127.0.0.1:27242".into(),
        raft_addr: Some("127.0.0.1:15760".into()),
        labels: BTreeMap::new(),
        availability: Availability::Active,
        status: NodeStatus::Ready,
        resources: Resources::default(),
        agent_version: "0.1.0".into(),
        joined_at_ms: 1,
        status_changed_at_ms: 1,
        demoted: false,
        gossip_addr: None,
        node_secret: None,
        certificate: None,
    };
    let cluster = ClusterInfo {
        cluster_id: "c0ffee".into(),
        created_at_ms: 1,
        manager_token: "m".into(),
        worker_token: "w".into(),
        manager_secret: "s".into(),
        gossip_keys: GossipKeyring::first(KeySecret([7; 32]), 1),
        ca: None,
        cert_lifetime_s: None,
        removed_nodes: Default::default(),
        ca_rotation: None,
    };
    for command in [
        Command::Bootstrap {
            cluster: Box::new(cluster),
            node: Box::new(node),
        },
        Command::Kv(KvCommand::Put {
            key: "greeting".into(),
            value: b"hello".to_vec(),
            if_revision: None,
        }),
    ] {
        state.apply(&command, &mut Changes::default());
    }
    state
}

fn raft_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let vote = VoteRequest::<symphony_consensus::TypeConfig> {
        vote: Vote::new(6, 2),
        last_log_id: Some(log_id(5, 10)),
        leadership_transfer: false,
    };
    let transfer_vote = vote.clone();
    let append = AppendEntriesRequest::<symphony_consensus::TypeConfig> {
        vote: Vote::new_committed(6, 2),
        prev_log_id: Some(log_id(5, 10)),
        entries: vec![
            Entry::new_blank(log_id(6, 11)),
            Entry::new_normal(
                log_id(6, 12),
                Command::Kv(KvCommand::Put {
                    key: "k".into(),
                    value: b"v".to_vec(),
                    if_revision: None,
                }),
            ),
            Entry::new_normal(
                log_id(6, 13),
                Command::from(ClusterCommand::FinishCaRotation {
                    root_digest: "ab".repeat(32),
                    manager_token: "m".into(),
                    worker_token: "w".into(),
                }),
            ),
        ],
        leader_commit: Some(log_id(5, 10)),
    };
    let data = SnapshotPayload::encode(&small_state()).expect("a snapshot encodes");
    let (head, tail) = data.split_at(data.len() / 2);
    let snapshot = [
        encode(&RaftRequest::SnapshotBegin {
            vote: Vote::new_committed(6, 2),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(6, 12)),
                ..SnapshotMeta::default()
            },
            total_len: data.len() as u64,
        }),
        encode(&RaftRequest::SnapshotChunk {
            offset: 0,
            data: head.to_vec(),
        }),
        encode(&RaftRequest::SnapshotChunk {
            offset: head.len() as u64,
            data: tail.to_vec(),
        }),
        encode(&RaftRequest::SnapshotEnd),
    ];
    let replies = [
        encode(&RaftReply::Vote(VoteResponse::new(
            Vote::new(6, 2),
            Some(log_id(5, 10)),
            true,
        ))),
        encode(&RaftReply::Append(AppendEntriesResponse::Success)),
        encode(&RaftReply::SnapshotAck { received: 4 }),
        encode(&RaftReply::Identity(PeerIdentity {
            raft_node_id: 2,
            node_id: 1,
            remote_addr: "127.0.0.1:27242".into(),
            initialised: true,
        })),
        encode(&RaftReply::Failed("refused".into())),
    ];
    vec![
        (
            "votes",
            stream(&[
                encode(&RaftRequest::PreVote(vote.clone())),
                encode(&RaftRequest::Vote(vote.clone())),
            ]),
        ),
        ("append", stream(&[encode(&RaftRequest::Append(append))])),
        ("snapshot", stream(&snapshot)),
        (
            "transfer-vote-identify",
            stream(&[
                encode(&RaftRequest::TransferLeader(TransferLeaderRequest::new(
                    Vote::new_committed(5, 1),
                    2,
                    Some(log_id(5, 10)),
                ))),
                encode(&RaftRequest::Vote(VoteRequest {
                    leadership_transfer: true,
                    ..transfer_vote
                })),
                encode(&RaftRequest::Identify),
            ]),
        ),
        ("replies", stream(&replies)),
    ]
}

fn gossip_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let local: SocketAddr = gossip::LOCAL_ADDR.parse().expect("an address");
    let from: SocketAddr = "127.0.0.1:7947".parse().expect("an address");
    let payload = symphony_gossip::testing::announce_payload(gossip::identity(2, from), local)
        .expect("an announce");
    let tag = cluster_tag(gossip::CLUSTER);
    let with_mode = |mode: u8, packet: &[u8]| [&[mode][..], packet].concat();
    let plain = Framing::plain(tag).frame(&payload).expect("framed");
    let sealed = Framing::sealed(tag, gossip::keyring(1), 2, 1)
        .frame(&payload)
        .expect("sealed");
    let record = |sender: u8, epoch: u64, seq: u64, advance: u16, key: u8, body: &[u8]| {
        let mut out = vec![sender];
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&advance.to_be_bytes());
        out.push(key);
        out.extend_from_slice(&u16::try_from(body.len()).expect("small").to_be_bytes());
        out.extend_from_slice(body);
        out
    };
    let authentic = [
        record(2, 1, 1, 0, 0, &payload),
        record(2, 1, 1, 5, 1, &payload),
        record(2, 1, 3, 5, 0, b""),
        record(3, 9, 1, 40_000, 1, &payload),
        record(2, 0, 1, 0, 0, &payload),
    ]
    .concat();
    // A foreign cluster's packet is dropped by its header.
    let foreign = Framing::plain(cluster_tag("elsewhere"))
        .frame(&payload)
        .expect("framed");
    vec![
        ("plain-announce", with_mode(0, &plain)),
        ("plain-foreign", with_mode(0, &foreign)),
        ("sealed-announce", with_mode(1, &sealed)),
        ("plain-to-sealed", with_mode(1, &plain)),
        ("authentic-series", with_mode(2, &authentic)),
    ]
}

fn token_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let digest = fixture::pki().ca.bundle().digest().expect("a digest");
    let worker = JoinToken::generate(CertRole::Worker, &digest).to_string();
    let manager = JoinToken::generate(CertRole::Manager, &digest).to_string();
    vec![
        ("worker", worker.clone().into_bytes()),
        ("manager-uppercase", manager.to_uppercase().into_bytes()),
        ("padded", format!("  {worker}\n").into_bytes()),
        ("old-format", b"SYMTKN-1-W-0123abcd-cdcd".to_vec()),
    ]
}

fn csr_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let key = NodeKey::generate().expect("a key");
    let request = key.request("worker-7").expect("a request");
    let other = NodeKey::generate()
        .expect("a key")
        .request("symphony://fuzzc/manager/1")
        .expect("a request");
    vec![
        ("request", request.into_bytes()),
        ("request-asking-more", other.into_bytes()),
        (
            "empty-block",
            b"-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n".to_vec(),
        ),
    ]
}

/// A certificate of a root that replaced the fixture's, presented with that root cross-signed
/// by the fixture's (as nodes send theirs during `ca rotate`).
fn rotated_chain() -> String {
    let pki = fixture::pki();
    let rotated = pki
        .ca
        .rotate(fixture::CLUSTER_ID, fixture::now())
        .expect("a rotated root");
    let key = NodeKey::generate().expect("a node key");
    let issued = rotated
        .ca
        .issue(
            &key.request("n").expect("a request"),
            &fixture::node_identity(),
            fixture::now(),
        )
        .expect("a certificate of the new root");
    format!("{}{}", issued.cert_pem, rotated.cross_signed_pem)
}

fn cert_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let pki = fixture::pki();
    let der = verify::first_der(&pki.node_cert_pem).expect("the fixture's certificate");
    let with_mode = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
    vec![
        ("node-der", with_mode(0, &der)),
        ("bundle", with_mode(1, pki.ca.cert_pem.as_bytes())),
        (
            "bundle-with-node",
            with_mode(
                1,
                format!("{}{}", pki.ca.cert_pem, pki.node_cert_pem).as_bytes(),
            ),
        ),
        ("node-pem", with_mode(2, pki.node_cert_pem.as_bytes())),
        ("node-chain", with_mode(2, rotated_chain().as_bytes())),
        (
            "uri",
            with_mode(3, fixture::node_identity().uri().as_bytes()),
        ),
    ]
}

/// A segment's records as the store's writer writes them: metadata, appends of real entries,
/// a truncation and a purge; and the same cut off mid-record, as a crash leaves it.
fn wal_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let entries: Vec<Vec<u8>> = (1..=3)
        .map(|index| {
            let entry = Entry::new_normal(
                log_id(2, index),
                Command::Kv(KvCommand::Put {
                    key: format!("key/{index}"),
                    value: b"value".to_vec(),
                    if_revision: None,
                }),
            );
            encode(&entry).to_vec()
        })
        .collect();
    let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let records =
        symphony_consensus::store::wal::sample_records(&refs).expect("the records encode");
    let torn = records[..records.len() - 5].to_vec();
    vec![("records", records), ("torn", torn)]
}
