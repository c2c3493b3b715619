//! Real gossip over UDP on 127.0.0.1 with OS-given ports: discovery from one seed, crash
//! detection, graceful leave, and hostile packets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use symphony_gossip::packet::{self, cluster_tag};
use symphony_gossip::{
    FocaConfig, Gossip, GossipConfig, GossipIdentity, GossipKey, Keyring, MemberEvent,
    PeriodicParams, Profile, Role,
};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;
use tokio::time::{Instant, sleep, timeout};

const CLUSTER: &str = "test-cluster";
/// Generous bound for anything the fast timings do in well under a second.
const DEADLINE: Duration = Duration::from_secs(10);
/// Suspicion for tests that must not see crash detection at all.
const SLOW_SUSPICION: Duration = Duration::from_secs(60);

/// Timings tens of times faster than the LAN preset. `suspect_to_down_after` is a parameter so
/// the leave test can make crash detection too slow to explain what it observes.
fn fast_timings(suspect_to_down_after: Duration) -> FocaConfig {
    let mut config = FocaConfig::new_lan(NonZeroU32::new(3).unwrap());
    config.probe_period = Duration::from_millis(100);
    config.probe_rtt = Duration::from_millis(40);
    config.suspect_to_down_after = suspect_to_down_after;
    config.periodic_gossip = Some(PeriodicParams {
        frequency: Duration::from_millis(50),
        num_members: NonZeroUsize::new(2).unwrap(),
    });
    config.periodic_announce = Some(PeriodicParams {
        frequency: Duration::from_millis(500),
        num_members: NonZeroUsize::new(1).unwrap(),
    });
    config
}

async fn start_node(node_id: u64, cluster_id: &str, suspect_to_down_after: Duration) -> Gossip {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let identity = GossipIdentity::new(
        node_id,
        Role::Worker,
        any_port,
        format!("127.0.0.1:{}", 9000 + node_id),
        None,
    );
    Gossip::start(GossipConfig {
        identity,
        bind_addr: any_port,
        cluster_id: cluster_id.into(),
        profile: Profile::Custom(fast_timings(suspect_to_down_after)),
        keyring: None,
    })
    .await
    .unwrap()
}

fn keyring(primary: u32, keys: &[(u32, u8)]) -> Keyring {
    Keyring::new(
        primary,
        keys.iter()
            .map(|(id, byte)| (*id, GossipKey::from_bytes([*byte; 32]))),
    )
    .unwrap()
}

async fn start_sealed(node_id: u64, keyring: Keyring) -> Gossip {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let identity = GossipIdentity::new(
        node_id,
        Role::Worker,
        any_port,
        format!("127.0.0.1:{}", 9000 + node_id),
        None,
    );
    Gossip::start(GossipConfig {
        identity,
        bind_addr: any_port,
        cluster_id: CLUSTER.into(),
        profile: Profile::Custom(fast_timings(SLOW_SUSPICION)),
        keyring: Some(keyring),
    })
    .await
    .unwrap()
}

async fn node_ids(gossip: &Gossip) -> BTreeSet<u64> {
    gossip
        .members()
        .await
        .unwrap()
        .into_iter()
        .map(|member| member.node_id)
        .collect()
}

/// Polls `check` until it holds, failing the test at the deadline.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for an event matching `wanted`, skipping others.
async fn expect_event(
    events: &mut broadcast::Receiver<MemberEvent>,
    within: Duration,
    wanted: impl Fn(&MemberEvent) -> bool,
) -> MemberEvent {
    timeout(within, async {
        loop {
            let event = events.recv().await.expect("event stream open");
            if wanted(&event) {
                return event;
            }
        }
    })
    .await
    .expect("event within the deadline")
}

fn is_up(node_id: u64) -> impl Fn(&MemberEvent) -> bool {
    move |event| matches!(event, MemberEvent::Up(id) if id.node_id == node_id)
}

fn is_down(node_id: u64) -> impl Fn(&MemberEvent) -> bool {
    move |event| matches!(event, MemberEvent::Down(id) if id.node_id == node_id)
}

/// Three nodes; the second and third know only the first.
async fn three_node_cluster(suspect_to_down_after: Duration) -> [Gossip; 3] {
    let nodes = [
        start_node(1, CLUSTER, suspect_to_down_after).await,
        start_node(2, CLUSTER, suspect_to_down_after).await,
        start_node(3, CLUSTER, suspect_to_down_after).await,
    ];
    let mut events: Vec<_> = nodes.iter().map(Gossip::subscribe).collect();
    let seed = nodes[0].local_addr();
    nodes[1].announce(vec![seed]).await.unwrap();
    nodes[2].announce(vec![seed]).await.unwrap();

    let all = BTreeSet::from([1, 2, 3]);
    for node in &nodes {
        wait_until("every member to know all three", || async {
            node_ids(node).await == all
        })
        .await;
    }
    for (own_id, node_events) in (1..=3).zip(events.iter_mut()) {
        for other in (1..=3).filter(|id| *id != own_id) {
            expect_event(node_events, DEADLINE, is_up(other)).await;
        }
    }
    nodes
}

#[tokio::test]
async fn three_nodes_find_each_other_from_one_seed() {
    let nodes = three_node_cluster(SLOW_SUSPICION).await;
    let members = nodes[2].members().await.unwrap();
    let seed = members.iter().find(|member| member.node_id == 1).unwrap();
    assert_eq!(seed.gossip_addr, nodes[0].local_addr());
    assert_eq!(seed.remote_addr, "127.0.0.1:9001");
}

#[tokio::test]
async fn a_node_that_stops_without_leaving_is_declared_down() {
    let [a, b, c] = three_node_cluster(Duration::from_millis(300)).await;
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    c.shutdown();
    expect_event(&mut a_events, DEADLINE, is_down(3)).await;
    expect_event(&mut b_events, DEADLINE, is_down(3)).await;
    assert_eq!(node_ids(&a).await, BTreeSet::from([1, 2]));
    assert_eq!(node_ids(&b).await, BTreeSet::from([1, 2]));
    assert!(matches!(
        c.members().await,
        Err(symphony_gossip::GossipError::Stopped)
    ));
}

#[tokio::test]
async fn a_graceful_leave_is_seen_quickly() {
    // Crash detection would take a minute: only the leave message can explain a quick Down.
    let [a, b, c] = three_node_cluster(SLOW_SUSPICION).await;
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    c.leave().await.unwrap();
    let quickly = Duration::from_secs(3);
    expect_event(&mut a_events, quickly, is_down(3)).await;
    expect_event(&mut b_events, quickly, is_down(3)).await;
}

#[tokio::test]
async fn foreign_and_garbage_packets_are_dropped_and_counted() {
    // Slow suspicion: a loaded machine must not turn a late probe into a membership change.
    let a = start_node(1, CLUSTER, SLOW_SUSPICION).await;
    let b = start_node(2, CLUSTER, SLOW_SUSPICION).await;
    b.announce(vec![a.local_addr()]).await.unwrap();
    wait_until("a and b to meet", || async {
        node_ids(&a).await.len() == 2 && node_ids(&b).await.len() == 2
    })
    .await;
    let mut a_events = a.subscribe();

    // A node of another cluster whose seed list points at `a`.
    let stranger = start_node(9, "other-cluster", SLOW_SUSPICION).await;
    stranger.announce(vec![a.local_addr()]).await.unwrap();

    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = a.local_addr();
    let mut bad_version = packet::encode(cluster_tag(CLUSTER), b"x").to_vec();
    bad_version[4] = 99;
    let mut bad_checksum = packet::encode(cluster_tag(CLUSTER), b"foca payload").to_vec();
    if let Some(last) = bad_checksum.last_mut() {
        *last ^= 0xff;
    }
    let hostile: [&[u8]; 5] = [
        b"",
        b"short",
        b"definitely not a gossip packet at all",
        &bad_version,
        &bad_checksum,
    ];
    for datagram in hostile {
        raw.send_to(datagram, target).await.unwrap();
    }
    // Well framed for this cluster, but not something foca can decode.
    let nonsense = packet::encode(cluster_tag(CLUSTER), &[0xff; 40]);
    raw.send_to(&nonsense, target).await.unwrap();

    wait_until("every hostile packet to be counted", || async {
        let stats = a.stats();
        stats.dropped_too_short == 2
            && stats.dropped_bad_magic == 1
            && stats.dropped_wrong_version == 1
            && stats.dropped_bad_checksum == 1
            && stats.dropped_foreign_cluster >= 1
            && stats.dropped_by_foca >= 1
    })
    .await;

    assert_eq!(node_ids(&a).await, BTreeSet::from([1, 2]));
    assert_eq!(node_ids(&b).await, BTreeSet::from([1, 2]));
    assert_eq!(node_ids(&stranger).await, BTreeSet::from([9]));
    // Nothing happened to the membership meanwhile.
    assert!(matches!(
        a_events.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));
}

#[tokio::test]
async fn sealed_nodes_meet_and_refuse_plain_foreign_and_replayed_packets() {
    let a = start_sealed(1, keyring(1, &[(1, 0x11)])).await;
    let b = start_sealed(2, keyring(1, &[(1, 0x11)])).await;
    b.announce(vec![a.local_addr()]).await.unwrap();
    wait_until("a and b to meet", || async {
        node_ids(&a).await.len() == 2 && node_ids(&b).await.len() == 2
    })
    .await;

    // Plain nodes, and sealed nodes with another key, cannot join.
    let plain = start_node(8, CLUSTER, SLOW_SUSPICION).await;
    plain.announce(vec![a.local_addr()]).await.unwrap();
    let foreign = start_sealed(9, keyring(1, &[(1, 0x99)])).await;
    foreign.announce(vec![a.local_addr()]).await.unwrap();
    let unknown_id = start_sealed(10, keyring(7, &[(7, 0x11)])).await;
    unknown_id.announce(vec![a.local_addr()]).await.unwrap();

    // A packet sealed by `b`, captured on its way to a seed that does not exist, and sent to
    // `a` twice: the second copy is a replay.
    let spy = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    b.announce(vec![a.local_addr(), spy.local_addr().unwrap()])
        .await
        .unwrap();
    let mut captured = vec![0_u8; 2048];
    let (len, _) = timeout(DEADLINE, spy.recv_from(&mut captured))
        .await
        .unwrap()
        .unwrap();
    captured.truncate(len);
    let raw = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for _ in 0..3 {
        raw.send_to(&captured, a.local_addr()).await.unwrap();
    }

    wait_until("every refused packet to be counted by reason", || async {
        let stats = a.stats();
        stats.dropped_unsealed >= 1
            && stats.dropped_unauthenticated >= 1
            && stats.dropped_unknown_key >= 1
            && stats.dropped_replayed >= 2
    })
    .await;
    assert_eq!(node_ids(&a).await, BTreeSet::from([1, 2]));
    assert_eq!(node_ids(&b).await, BTreeSet::from([1, 2]));
    assert_eq!(node_ids(&foreign).await, BTreeSet::from([9]));
}

#[tokio::test]
async fn a_key_rotation_keeps_sealed_nodes_together() {
    let nodes = [
        start_sealed(1, keyring(1, &[(1, 0x11)])).await,
        start_sealed(2, keyring(1, &[(1, 0x11)])).await,
        start_sealed(3, keyring(1, &[(1, 0x11)])).await,
    ];
    let seed = nodes[0].local_addr();
    nodes[1].announce(vec![seed]).await.unwrap();
    nodes[2].announce(vec![seed]).await.unwrap();
    let all = BTreeSet::from([1, 2, 3]);
    for node in &nodes {
        wait_until("all three to meet", || async {
            node_ids(node).await == all
        })
        .await;
    }
    let mut events: Vec<_> = nodes.iter().map(Gossip::subscribe).collect();
    // Install, use, remove: each step reaches the nodes one at a time.
    for step in [
        keyring(1, &[(1, 0x11), (2, 0x22)]),
        keyring(2, &[(1, 0x11), (2, 0x22)]),
        keyring(2, &[(2, 0x22)]),
    ] {
        for node in &nodes {
            node.set_keyring(step.clone()).await.unwrap();
            // Some traffic in this mixed state before the next node moves on.
            let before = node.stats().packets_received;
            wait_until("traffic after a keyring change", || async {
                node.stats().packets_received > before + 3
            })
            .await;
        }
    }
    // New packets are sealed with key 2 only; the pool still holds together.
    let before = nodes[0].stats().packets_received;
    wait_until("traffic under the new key", || async {
        nodes[0].stats().packets_received > before + 5
    })
    .await;
    for node in &nodes {
        assert_eq!(node_ids(node).await, all);
        let stats = node.stats();
        assert_eq!(
            stats.dropped_unknown_key + stats.dropped_unauthenticated,
            0,
            "{stats:?}"
        );
    }
    for node_events in &mut events {
        assert!(matches!(
            node_events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
    }
}

/// A node started before its seed keeps announcing, and joins once the seed is up.
#[tokio::test]
async fn a_node_started_before_its_seed_joins_when_the_seed_comes_up() {
    // Reserve a port for the seed, then free it so the seed can bind it later.
    let seed_addr = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let early = start_node(21, "late-seed", Duration::from_secs(5)).await;
    early.announce(vec![seed_addr]).await.unwrap();
    // The first announce must have gone out (into the void) before the seed exists, or this
    // would only test an ordinary join.
    wait_until("the first announce is sent", || async {
        let stats = early.stats();
        stats.packets_sent + stats.send_failures >= 1
    })
    .await;
    let identity = GossipIdentity::new(20, Role::Manager, seed_addr, "127.0.0.1:9020".into(), None);
    let seed = Gossip::start(GossipConfig {
        identity,
        bind_addr: seed_addr,
        cluster_id: "late-seed".into(),
        profile: Profile::Custom(fast_timings(Duration::from_secs(5))),
        keyring: None,
    })
    .await
    .unwrap();
    wait_until("the early node joins the late seed", || async {
        node_ids(&early).await == BTreeSet::from([20, 21])
            && node_ids(&seed).await == BTreeSet::from([20, 21])
    })
    .await;
}

#[tokio::test]
async fn a_newcomer_learns_the_whole_pool_from_one_members_state() {
    let [a, _b, _c] = three_node_cluster(SLOW_SUSPICION).await;
    // A fourth node that announced to nobody: alone.
    let d = start_node(4, CLUSTER, SLOW_SUSPICION).await;
    assert_eq!(d.member_count(), 0);

    let state = a.membership_state().await.unwrap();
    let known: BTreeSet<u64> = state.iter().map(|member| member.id().node_id).collect();
    assert_eq!(
        known,
        BTreeSet::from([2, 3]),
        "a's view holds the others, not a itself"
    );
    d.apply(state).await.unwrap();

    // Applied in one step: d knows b and c at once; it then meets a (and the others meet d)
    // through ordinary probes.
    assert!(d.member_count() >= 2);
    let all = BTreeSet::from([1, 2, 3, 4]);
    wait_until("everyone to know the newcomer", || async {
        node_ids(&a).await == all && node_ids(&d).await == all
    })
    .await;
    assert_eq!(d.unseen(vec![a.local_addr()]).await.unwrap(), vec![]);
    assert_eq!(
        d.managers().await.unwrap(),
        vec![],
        "every member here is a worker"
    );
}
