//! The Raft transport over real TCP on 127.0.0.1: election and replication, catching up through
//! snapshots (one of them larger than a frame), leader failover, and a peer that goes away and
//! comes back. Every wait polls a condition under a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use symphony_consensus::network::rpc::{RaftReply, RaftRequest};
use symphony_consensus::network::{LocalIdentity, RAFT_PROTOCOL};
use symphony_consensus::{
    Command, Consensus, ConsensusConfig, ConsensusError, KvCommand, ManagerNode, ServerState,
};
use symphony_wire::{Limits, LocalHello, ServerConfig, Transport};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Generous: the machine running the tests may be small and busy.
const DEADLINE: Duration = Duration::from_secs(30);

struct Node {
    id: u64,
    addr: SocketAddr,
    dir: PathBuf,
    consensus: Consensus,
    /// Stops the node's accept loop (and frees its port).
    stop: CancellationToken,
}

/// Accepts Raft connections on `listener` for `consensus`, as the agent's Raft port does.
fn serve(id: u64, listener: TcpListener, consensus: Consensus, stop: CancellationToken) {
    let config = ServerConfig {
        protocol: RAFT_PROTOCOL,
        transport: Transport::plain(),
        limits: Limits::default(),
        local: Arc::new(move || LocalHello {
            node_id: id,
            agent_version: String::new(),
        }),
    };
    tokio::spawn(symphony_wire::listen::serve(
        listener,
        config,
        stop,
        move |connection| {
            let consensus = consensus.clone();
            async move { consensus.serve_connection(connection).await }
        },
    ));
}

impl Node {
    /// Starts node `id` on `listener` with its store in `dir`.
    async fn start(id: u64, dir: &Path, listener: TcpListener, snapshot_interval: u64) -> Node {
        let addr = listener.local_addr().unwrap();
        let mut config = ConsensusConfig::new(id, dir.to_path_buf());
        config.snapshot_interval = snapshot_interval;
        config.heartbeat_interval = Duration::from_millis(100);
        config.election_timeout_min = Duration::from_millis(500);
        config.election_timeout_max = Duration::from_millis(1000);
        let identity = LocalIdentity {
            node_id: id * 100,
            remote_addr: format!("127.0.0.1:{}", 20_000 + id),
        };
        let consensus = Consensus::start(config, identity).await.unwrap();
        let stop = CancellationToken::new();
        serve(id, listener, consensus.clone(), stop.clone());
        Node {
            id,
            addr,
            dir: dir.to_path_buf(),
            consensus,
            stop,
        }
    }

    async fn start_fresh(id: u64, root: &TempDir, snapshot_interval: u64) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Node::start(
            id,
            &root.path().join(format!("node-{id}")),
            listener,
            snapshot_interval,
        )
        .await
    }

    fn manager(&self) -> ManagerNode {
        ManagerNode {
            raft_addr: format!("http://{}", self.addr),
            remote_addr: format!("127.0.0.1:{}", 20_000 + self.id),
        }
    }

    fn kv_len(&self) -> usize {
        self.consensus.read_stale(|state| state.kv.len())
    }

    fn applied_index(&self) -> u64 {
        self.consensus
            .metrics()
            .last_applied
            .map(|id| id.index)
            .unwrap_or(0)
    }
}

/// Polls `condition` until it holds, failing the test after [`DEADLINE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Binds `addr` again once the stopped node's listener is gone: `Consensus::shutdown` returns
/// before its accept task has dropped the listener.
async fn bind_again(addr: SocketAddr) -> TcpListener {
    let start = Instant::now();
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                assert!(start.elapsed() < DEADLINE, "{addr} stayed in use");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!("cannot bind {addr}: {error}"),
        }
    }
}

/// Starts `count` nodes and makes them one group of voters.
async fn voters(root: &TempDir, count: u64, snapshot_interval: u64) -> Vec<Node> {
    let mut nodes = Vec::new();
    for id in 1..=count {
        nodes.push(Node::start_fresh(id, root, snapshot_interval).await);
    }
    let members: BTreeMap<u64, ManagerNode> =
        nodes.iter().map(|node| (node.id, node.manager())).collect();
    nodes[0].consensus.initialise(members).await.unwrap();
    leader(&nodes).await;
    nodes
}

/// The index in `nodes` of the node that is leader, once one is.
async fn leader(nodes: &[Node]) -> usize {
    let mut found = None;
    eventually("a leader is elected", || {
        found = nodes.iter().position(|node| {
            let metrics = node.consensus.metrics();
            metrics.state == ServerState::Leader && metrics.current_leader == Some(node.id)
        });
        found.is_some()
    })
    .await;
    found.unwrap()
}

fn put(key: String, value: Vec<u8>) -> Command {
    Command::Kv(KvCommand::Put {
        key,
        value,
        if_revision: None,
    })
}

/// Proposes `command` to whichever node leads, retrying while leadership moves.
async fn write(nodes: &[Node], command: Command) {
    let start = Instant::now();
    loop {
        let at = leader(nodes).await;
        match nodes[at].consensus.propose(command.clone()).await {
            Ok(_) => return,
            Err(ConsensusError::NotLeader { .. }) if start.elapsed() < DEADLINE => continue,
            Err(error) => panic!("write failed: {error}"),
        }
    }
}

/// Proposes `count` puts (`key-0`..) with up to 64 in flight, so appends pipeline.
async fn write_many(nodes: &[Node], prefix: &str, count: usize, value_len: usize) {
    futures_util::stream::iter(0..count)
        .for_each_concurrent(64, |i| {
            write(
                nodes,
                put(format!("{prefix}-{i}"), vec![i as u8; value_len]),
            )
        })
        .await;
}

async fn shutdown_all(nodes: &[Node]) {
    for node in nodes {
        node.stop.cancel();
        node.consensus.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_replicate_1000_writes() {
    let root = tempfile::tempdir().unwrap();
    let nodes = voters(&root, 3, 10_000).await;
    write_many(&nodes, "key", 1000, 16).await;
    let at = leader(&nodes).await;
    let target = nodes[at].applied_index();
    for node in &nodes {
        eventually("every node applies every write", || {
            node.applied_index() >= target && node.kv_len() == 1000
        })
        .await;
    }
    let states: Vec<_> = nodes
        .iter()
        .map(|node| node.consensus.read_stale(|state| state.kv.clone()))
        .collect();
    assert!(
        states.windows(2).all(|pair| pair[0] == pair[1]),
        "replicas differ"
    );
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_added_after_compaction_catches_up_through_a_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = voters(&root, 3, 50).await;
    write_many(&nodes, "key", 300, 16).await;
    let at = leader(&nodes).await;
    eventually("the leader compacts its log", || {
        nodes[at]
            .consensus
            .metrics()
            .purged
            .is_some_and(|id| id.index > 100)
    })
    .await;

    let learner = Node::start_fresh(4, &root, 50).await;
    nodes[at]
        .consensus
        .raft()
        .add_learner(4, learner.manager(), true)
        .await
        .unwrap();
    // Its log begins after the leader's purge point, so only a snapshot can have brought it
    // there (the metrics are published shortly after the state, hence both in the condition).
    eventually(
        "the learner installs a snapshot and holds every write",
        || {
            learner.kv_len() == 300
                && learner
                    .consensus
                    .metrics()
                    .snapshot
                    .is_some_and(|id| id.index > 100)
        },
    )
    .await;
    nodes.push(learner);
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_larger_than_a_frame_is_sent_in_chunks() {
    const VALUE_LEN: usize = 1024 * 1024;
    const KEYS: usize = 40;
    let root = tempfile::tempdir().unwrap();
    let nodes = voters(&root, 1, 10).await;
    // 40 MiB of state: well over the 16 MiB frame limit.
    for i in 0..KEYS {
        write(&nodes, put(format!("big-{i}"), vec![i as u8; VALUE_LEN])).await;
    }
    eventually("the leader compacts its log", || {
        nodes[0]
            .consensus
            .metrics()
            .purged
            .is_some_and(|id| id.index > 20)
    })
    .await;

    let learner = Node::start_fresh(2, &root, 10).await;
    nodes[0]
        .consensus
        .raft()
        .add_learner(2, learner.manager(), true)
        .await
        .unwrap();
    eventually("the learner installs the large snapshot", || {
        learner.kv_len() == KEYS && learner.consensus.metrics().snapshot.is_some()
    })
    .await;
    learner.consensus.read_stale(|state| {
        for i in 0..KEYS {
            let record = state.kv.get(&format!("big-{i}")).unwrap();
            assert_eq!(record.value.len(), VALUE_LEN);
            assert!(record.value.iter().all(|byte| *byte == i as u8));
        }
    });
    // Both ends know how large it was: the leader made it, the learner installed it.
    let size = learner.consensus.snapshot_bytes();
    assert!(size > (KEYS * VALUE_LEN) as u64, "{size}");
    assert!(
        nodes
            .iter()
            .any(|node| node.consensus.snapshot_bytes() == size)
    );
    learner.stop.cancel();
    learner.consensus.shutdown().await;
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_stops_a_new_one_is_elected_and_writes_continue() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = voters(&root, 3, 10_000).await;
    write_many(&nodes, "before", 20, 16).await;
    let old = leader(&nodes).await;
    let stopped = nodes.remove(old);
    stopped.stop.cancel();
    stopped.consensus.shutdown().await;

    let new = leader(&nodes).await;
    assert_ne!(nodes[new].id, stopped.id);
    write_many(&nodes, "after", 20, 16).await;
    for node in &nodes {
        eventually("the survivors hold every write", || node.kv_len() == 40).await;
    }
    shutdown_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_is_down_is_retried_with_backoff_and_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = voters(&root, 3, 10_000).await;
    write_many(&nodes, "before", 10, 16).await;
    let at = leader(&nodes).await;
    let down = (at + 1) % nodes.len();
    let stopped = nodes.remove(down);
    let (id, addr, dir) = (stopped.id, stopped.addr, stopped.dir.clone());
    stopped.stop.cancel();
    stopped.consensus.shutdown().await;
    drop(stopped);

    // While the peer is away, something answers on its port with the wrong protocol, so every
    // attempt fails as unreachable; count how often the others dial it.
    let impostor = bind_again(addr).await;
    let dials = Arc::new(AtomicUsize::new(0));
    let counting = {
        let dials = dials.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            loop {
                let Ok((mut socket, _)) = impostor.accept().await else {
                    return;
                };
                dials.fetch_add(1, Ordering::Relaxed);
                // A frame whose body is not a Raft hello.
                let _ = socket.write_all(&[0, 0, 0, 1, 0xc0]).await;
            }
        })
    };
    let window = Instant::now();
    write_many(&nodes, "while-down", 100, 16).await;
    let leader_at = leader(&nodes).await;
    let target = nodes[leader_at].applied_index();
    // Let a second and a half of retries accumulate, measured rather than slept on.
    eventually("time passes for retries", || {
        window.elapsed() > Duration::from_millis(1500)
    })
    .await;
    counting.abort();
    let _ = counting.await;
    let elapsed = window.elapsed().as_secs_f64();
    let dials = dials.load(Ordering::Relaxed) as f64;
    eprintln!("the down peer was dialled {dials} times in {elapsed:.1}s");
    // Heartbeats (one per 100 ms from the leader) plus a backed-off replication stream: tens
    // of connections per second; a hot loop would make thousands.
    assert!(
        dials / elapsed < 100.0,
        "the down peer was dialled {dials} times in {elapsed:.1}s"
    );

    let listener = bind_again(addr).await;
    let back = Node::start(id, &dir, listener, 10_000).await;
    eventually("the returning peer catches up", || {
        back.applied_index() >= target && back.kv_len() == 110
    })
    .await;
    nodes.push(back);
    shutdown_all(&nodes).await;
}

/// Sends one Raft request to `node` as Raft node `as_id`, and reads the reply.
async fn forged(node: &Node, as_id: u64, request: &RaftRequest) -> RaftReply {
    let dialer = symphony_wire::Dialer::new(
        RAFT_PROTOCOL,
        LocalHello {
            node_id: as_id,
            agent_version: String::new(),
        },
    );
    let mut connection = dialer
        .tcp(&node.addr.to_string(), None, Duration::from_secs(5))
        .await
        .unwrap();
    use futures_util::SinkExt;
    connection
        .framed
        .send(symphony_wire::frame::encode(request).unwrap())
        .await
        .unwrap();
    let reply = connection.framed.next().await.unwrap().unwrap();
    symphony_wire::frame::decode(&reply).unwrap()
}

/// A peer that lies: a vote with a term near `u64::MAX` (which would overflow openraft's next
/// term into a panic, durable across restarts), a vote from outside the group, a vote in
/// another node's name and a forged leadership transfer are all refused or defused, and the
/// group goes on as if nothing happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_votes_are_refused_and_the_group_carries_on() {
    use openraft::raft::VoteRequest;
    use symphony_consensus::types::Vote;

    let root = tempfile::tempdir().unwrap();
    let nodes = voters(&root, 3, 10_000).await;
    let at = leader(&nodes).await;
    let follower = &nodes[(at + 1) % 3];
    let other = nodes[(at + 2) % 3].id;
    // The guard knows the group from the follower's membership: until the follower has the
    // entry that made it, it belongs to no group and takes votes from anyone (a node being
    // joined must).
    eventually("the follower knows its group", || {
        follower
            .consensus
            .metrics()
            .membership_config
            .membership()
            .voter_ids()
            .count()
            == 3
    })
    .await;
    let vote = |term, candidate, transfer| {
        RaftRequest::Vote(VoteRequest {
            vote: Vote::new(term, candidate),
            last_log_id: None,
            leadership_transfer: transfer,
        })
    };
    for (as_id, request) in [
        (other, vote(u64::MAX, other, false)),
        (99, vote(50, 99, false)),
        (99, vote(50, other, false)),
    ] {
        match forged(follower, as_id, &request).await {
            RaftReply::Failed(reason) => assert!(!reason.is_empty()),
            reply => panic!("a forged vote was answered: {reply:?}"),
        }
    }
    // A transfer nobody announced does not override the leader's lease.
    match forged(follower, other, &vote(1_000, other, true)).await {
        RaftReply::Vote(reply) => assert!(!reply.is_granted_to(&Vote::new(1_000, other))),
        reply => panic!("{reply:?}"),
    }
    assert_eq!(leader(&nodes).await, at, "the leader kept its place");
    let term = nodes[at].consensus.metrics().current_term;
    assert!(term < 1_000, "the forged terms did not take: {term}");
    write_many(&nodes, "after", 10, 8).await;
    shutdown_all(&nodes).await;
}
