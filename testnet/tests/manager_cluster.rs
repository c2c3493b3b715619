//! Manager clusters, end to end: several real `symphony-agent` processes formed into one Raft
//! group through their control sockets, then grown, shrunk, crashed and recovered. Every test
//! starts its own agents in temp dirs on OS-given ports, so they run in parallel.
//!
//! Every test records each write the cluster acknowledged and checks at the end, with a
//! linearizable read through the final leader, that none was lost.
//!
//! Needs the agent binary: `cargo build -p symphony-agent` (or set SYMPHONY_AGENT_BIN).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use symphony_ctl::ClientError;
use symphony_ctl::proto::{ErrorCode, NodeInfo, ReadConsistency, Role};
use symphony_testnet::harness::{
    AgentOptions, AgentProcess, Cluster, ClusterOptions, poll_until, restore_snapshot,
};

const TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a write through a survivor may take after the leader of three was killed.
const FAILOVER_BUDGET: Duration = Duration::from_secs(3);

const LINEARIZABLE: ReadConsistency = ReadConsistency::Linearizable;
const STALE: ReadConsistency = ReadConsistency::Stale;

/// The code of a remote error, or a panic naming what came back instead.
fn code_of<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ErrorCode {
    match result {
        Err(ClientError::Remote(error)) => error.code,
        other => panic!("expected an error reply from the agent, got {other:?}"),
    }
}

/// Awaits `call`, failing the test (instead of hanging) if it takes longer than [`TIMEOUT`].
async fn within<T>(what: &str, call: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, call).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {TIMEOUT:?}"),
    }
}

/// Three managers formed with `init --peers` / `init --join-addr`, all voters.
async fn three_static() -> Cluster {
    three_static_with(ClusterOptions::default()).await
}

async fn three_static_with(options: ClusterOptions) -> Cluster {
    let mut cluster = Cluster::start_with(3, options).await.unwrap();
    cluster.bootstrap_static().await.unwrap();
    cluster
}

/// `count` writes `prefix/NNN` through any member, all acknowledged.
async fn write_some(cluster: &Cluster, prefix: &str, count: usize) {
    for n in 0..count {
        cluster
            .put_any(
                &format!("{prefix}/{n:03}"),
                format!("{prefix}-{n}").as_bytes(),
            )
            .await
            .unwrap();
    }
}

/// The end of every test: no acknowledged write is lost, read linearizably on the leader.
async fn assert_nothing_lost(cluster: &Cluster) {
    let checked = cluster.verify_acknowledged().await.unwrap();
    assert!(checked > 0, "the test acknowledged no write at all");
    eprintln!("{checked} acknowledged writes all present");
}

/// Polls the leader's linearizable `node ls` until `check` accepts it; returns the listing.
async fn wait_nodes(
    cluster: &Cluster,
    what: &str,
    check: impl Fn(&[NodeInfo]) -> Result<(), String>,
) -> Vec<NodeInfo> {
    poll_until(TIMEOUT, what, async || {
        let leader = cluster.leader().await.map_err(|e| e.to_string())?;
        let client = cluster.client(leader).await.map_err(|e| e.to_string())?;
        let nodes = client
            .node_list(LINEARIZABLE)
            .await
            .map_err(|e| e.to_string())?;
        check(&nodes).map_err(|problem| format!("{problem}; node ls: {}", brief(&nodes)))?;
        Ok::<_, String>(nodes)
    })
    .await
    .unwrap()
}

/// `node ls` in one line: `id:raft_role:voter`.
fn brief(nodes: &[NodeInfo]) -> String {
    nodes
        .iter()
        .map(|node| {
            format!(
                "{}:{}:{}",
                node.node_id,
                node.raft_role.as_deref().unwrap_or("-"),
                node.voter
                    .map_or("-", |voter| if voter { "voter" } else { "non-voter" })
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The managers of a listing that are still members (not `removed`), by node id, with their
/// Raft role and whether they vote.
fn members(nodes: &[NodeInfo]) -> BTreeMap<u64, (String, bool)> {
    nodes
        .iter()
        .filter(|node| node.role == Role::Manager)
        .filter(|node| node.raft_role.as_deref() != Some("removed"))
        .map(|node| {
            (
                node.node_id,
                (
                    node.raft_role.clone().unwrap_or_default(),
                    node.voter.unwrap_or(false),
                ),
            )
        })
        .collect()
}

/// Checks that the listing has exactly the members `voters` (voting, one of them the leader,
/// the others followers) and `learners` (non-voting, raft_role learner).
fn expect_members(
    cluster: &Cluster,
    nodes: &[NodeInfo],
    voters: &[usize],
    learners: &[usize],
) -> Result<(), String> {
    let members = members(nodes);
    let mut expected: Vec<u64> = voters
        .iter()
        .chain(learners)
        .map(|index| cluster.node_id(*index).unwrap())
        .collect();
    expected.sort_unstable();
    let listed: Vec<u64> = members.keys().copied().collect();
    if listed != expected {
        return Err(format!("members {listed:?}, expected {expected:?}"));
    }
    let mut leaders = 0;
    for index in voters {
        let (role, voter) = &members[&cluster.node_id(*index).unwrap()];
        if !voter || !(role == "leader" || role == "follower") {
            return Err(format!(
                "{} is {role} (voter {voter})",
                cluster.name(*index)
            ));
        }
        leaders += usize::from(role == "leader");
    }
    if leaders != 1 {
        return Err(format!("{leaders} leaders among the voters"));
    }
    for index in learners {
        let (role, voter) = &members[&cluster.node_id(*index).unwrap()];
        if *voter || role != "learner" {
            return Err(format!(
                "{} is {role} (voter {voter})",
                cluster.name(*index)
            ));
        }
    }
    Ok(())
}

/// The raft ids of `indexes`, sorted, to compare with a status's voters or learners.
fn raft_ids(cluster: &Cluster, indexes: &[usize]) -> Vec<u64> {
    let mut ids: Vec<u64> = indexes
        .iter()
        .map(|index| cluster.raft_id(*index).unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

fn sorted(ids: &[u64]) -> Vec<u64> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

/// A formed cluster of three: one cluster id, three voters everywhere, a write through every
/// node (followers forward) replicated to every replica and readable linearizably on each.
async fn check_formed_three(cluster: &Cluster, prefix: &str) {
    let status = cluster.wait_membership(3, 0).await.unwrap();
    let cluster_id = status.cluster.unwrap().cluster_id;
    let all = [0, 1, 2];
    for index in all {
        let status = cluster.status(index).await.unwrap();
        let view = status.cluster.unwrap();
        assert_eq!(view.cluster_id, cluster_id, "{}", cluster.name(index));
        assert_eq!(view.role, Role::Manager);
    }
    let nodes = wait_nodes(cluster, "three voting managers", |nodes| {
        expect_members(cluster, nodes, &all, &[])
    })
    .await;
    for node in &nodes {
        assert_eq!(node.status, "ready", "{node:?}");
    }

    for index in all {
        let key = format!("{prefix}/via-{index}");
        let revision = cluster
            .put_via(index, &key, format!("written through {index}").as_bytes())
            .await
            .unwrap();
        assert!(revision > 0);
    }
    // Stale reads on each replica converge on every acknowledged write...
    cluster.wait_replicated().await.unwrap();
    // ...and a linearizable read on any member sees them at once.
    for reader in all {
        let client = cluster.client(reader).await.unwrap();
        for writer in all {
            let key = format!("{prefix}/via-{writer}");
            let entry = client.kv_get(&key, LINEARIZABLE).await.unwrap();
            assert_eq!(
                entry.map(|entry| entry.value),
                Some(format!("written through {writer}").into_bytes()),
                "{key} read on {}",
                cluster.name(reader)
            );
        }
    }
}

#[tokio::test]
async fn static_bootstrap_forms_three_voters() {
    let cluster = three_static().await;
    check_formed_three(&cluster, "static").await;
    assert_nothing_lost(&cluster).await;
}

#[tokio::test]
async fn dynamic_bootstrap_forms_three_voters() {
    let mut cluster = Cluster::start(3).await.unwrap();
    cluster.bootstrap_dynamic().await.unwrap();
    check_formed_three(&cluster, "dynamic").await;
    assert_nothing_lost(&cluster).await;
}

/// Managers 04, 05 and 06 join with the manager token; the voter count stays odd (3+1, 5, 5+1)
/// until `node promote` forces the sixth to vote.
#[tokio::test]
async fn six_managers_keep_an_odd_voter_count_until_promoted() {
    let mut cluster = three_static().await;
    write_some(&cluster, "grow/before", 5).await;
    let expected = [(3, 1), (5, 0), (5, 1)];
    for (voters, learners) in expected {
        cluster.add_manager_by_join().await.unwrap();
        cluster.wait_membership(voters, learners).await.unwrap();
        write_some(&cluster, &format!("grow/at-{}", voters + learners), 3).await;
    }
    let (leader, status) = cluster.leader_status().await.unwrap();
    let view = status.cluster.unwrap();
    assert_eq!(view.learners.len(), 1);
    let learner = cluster.index_of_raft_id(view.learners[0]).unwrap();
    let voters: Vec<usize> = (0..6).filter(|index| *index != learner).collect();
    wait_nodes(&cluster, "five voters and one learner", |nodes| {
        expect_members(&cluster, nodes, &voters, &[learner])
    })
    .await;

    let client = cluster.client(leader).await.unwrap();
    within(
        "node promote",
        client.node_promote(cluster.node_id(learner).unwrap()),
    )
    .await
    .unwrap();
    let status = cluster.wait_membership(6, 0).await.unwrap();
    assert_eq!(
        sorted(&status.cluster.unwrap().voters),
        raft_ids(&cluster, &[0, 1, 2, 3, 4, 5])
    );
    let all: Vec<usize> = (0..6).collect();
    wait_nodes(&cluster, "six voters", |nodes| {
        expect_members(&cluster, nodes, &all, &[])
    })
    .await;

    write_some(&cluster, "grow/after", 5).await;
    cluster.wait_replicated().await.unwrap();
    assert_nothing_lost(&cluster).await;
}

/// kill -9 of the leader of three: a write through a survivor is acknowledged within three
/// seconds of the kill; the old leader, restarted on its dir, rejoins and catches up.
#[tokio::test]
async fn leader_kill9_fails_over_and_the_old_leader_catches_up() {
    let mut cluster = three_static().await;
    write_some(&cluster, "failover/before", 20).await;
    cluster.wait_caught_up().await.unwrap();
    let (old, old_status) = cluster.leader_status().await.unwrap();
    let old_term = old_status.cluster.unwrap().term;

    cluster.kill9(old).unwrap();
    let killed = Instant::now();
    let revision = cluster
        .put_any("failover/after-kill", b"survived")
        .await
        .unwrap();
    let window = killed.elapsed();
    eprintln!("first write after the kill acknowledged after {window:?} (revision {revision})");
    assert!(
        window <= FAILOVER_BUDGET,
        "a write through a survivor took {window:?} after the leader was killed (budget {FAILOVER_BUDGET:?})"
    );
    let (new, new_status) = cluster.leader_status().await.unwrap();
    assert_ne!(new, old);
    assert!(new_status.cluster.unwrap().term > old_term);

    write_some(&cluster, "failover/during", 10).await;
    cluster.restart(old).await.unwrap();
    // Its stale read shows the writes made while it was dead...
    cluster.wait_replicated_on(old).await.unwrap();
    let client = cluster.client(old).await.unwrap();
    let entry = client
        .kv_get("failover/after-kill", STALE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (entry.value.as_slice(), entry.mod_revision),
        (&b"survived"[..], revision)
    );
    // ...and it follows the new leader.
    let (leader, _) = cluster.leader_status().await.unwrap();
    let status = cluster.status(old).await.unwrap().cluster.unwrap();
    assert_eq!(
        status.leader_raft_id,
        Some(cluster.raft_id(leader).unwrap())
    );
    assert_eq!(sorted(&status.voters), raft_ids(&cluster, &[0, 1, 2]));

    write_some(&cluster, "failover/after-restart", 5).await;
    cluster.wait_replicated().await.unwrap();
    assert_nothing_lost(&cluster).await;
}

/// A manager that missed far more entries than the snapshot interval catches up (through a
/// snapshot, since the leader's log no longer has them) and holds every write.
#[tokio::test]
async fn a_lagging_manager_catches_up_through_a_snapshot() {
    let options = ClusterOptions::with_agent_args(&["--snapshot-interval", "50"]);
    let mut cluster = three_static_with(options).await;
    write_some(&cluster, "lag/before", 10).await;
    cluster.wait_caught_up().await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let lagging = (0..3).find(|index| *index != leader).unwrap();

    cluster.kill9(lagging).unwrap();
    write_some(&cluster, "lag/missed", 300).await;
    cluster.restart(lagging).await.unwrap();
    let started = Instant::now();
    cluster.wait_replicated_on(lagging).await.unwrap();
    eprintln!("caught up {:?} after its restart", started.elapsed());
    // The leader compacted its log long ago: the only way to catch up is a snapshot, which the
    // state machine logs when it installs one.
    let run_log = cluster.run_log(lagging);
    assert!(
        run_log.contains("installed a snapshot"),
        "{} caught up without installing a snapshot; its log:\n{}",
        cluster.name(lagging),
        cluster.log_tail(lagging)
    );
    cluster.wait_caught_up().await.unwrap();
    cluster
        .verify_acknowledged_on(lagging, LINEARIZABLE)
        .await
        .unwrap();
    let status = cluster.status(lagging).await.unwrap().cluster.unwrap();
    assert_eq!(sorted(&status.voters), raft_ids(&cluster, &[0, 1, 2]));

    write_some(&cluster, "lag/after", 5).await;
    cluster.wait_replicated().await.unwrap();
    assert_nothing_lost(&cluster).await;
}

/// promote, demote, remove and leave, each checked in `status` and `node ls`.
#[tokio::test]
async fn promote_demote_remove_and_leave() {
    let mut cluster = three_static().await;
    write_some(&cluster, "members/start", 3).await;
    let fourth = cluster.add_manager_by_join().await.unwrap();
    let status = cluster.wait_membership(3, 1).await.unwrap();
    assert_eq!(
        status.cluster.unwrap().learners,
        vec![cluster.raft_id(fourth).unwrap()]
    );
    wait_nodes(&cluster, "three voters and the new learner", |nodes| {
        expect_members(&cluster, nodes, &[0, 1, 2], &[fourth])
    })
    .await;

    // promote: the learner votes, four voters.
    let leader = cluster.leader().await.unwrap();
    let client = cluster.client(leader).await.unwrap();
    within(
        "node promote",
        client.node_promote(cluster.node_id(fourth).unwrap()),
    )
    .await
    .unwrap();
    let status = cluster.wait_membership(4, 0).await.unwrap();
    assert_eq!(
        sorted(&status.cluster.unwrap().voters),
        raft_ids(&cluster, &[0, 1, 2, 3])
    );
    wait_nodes(&cluster, "four voters", |nodes| {
        expect_members(&cluster, nodes, &[0, 1, 2, 3], &[])
    })
    .await;
    write_some(&cluster, "members/promoted", 3).await;

    // demote a follower: it becomes a learner.
    let leader = cluster.leader().await.unwrap();
    let demoted = (0..4).find(|index| *index != leader).unwrap();
    let client = cluster.client(leader).await.unwrap();
    within(
        "node demote",
        client.node_demote(cluster.node_id(demoted).unwrap()),
    )
    .await
    .unwrap();
    let status = cluster.wait_membership(3, 1).await.unwrap();
    assert_eq!(
        status.cluster.unwrap().learners,
        vec![cluster.raft_id(demoted).unwrap()]
    );
    let voters: Vec<usize> = (0..4).filter(|index| *index != demoted).collect();
    wait_nodes(&cluster, "the demoted node as a learner", |nodes| {
        expect_members(&cluster, nodes, &voters, &[demoted])
    })
    .await;
    write_some(&cluster, "members/demoted", 3).await;

    // remove the learner: three voters remain. It is still running and ready, so only a
    // forced removal takes it.
    let leader = cluster.leader().await.unwrap();
    let client = cluster.client(leader).await.unwrap();
    let refused = within(
        "node rm of a ready node",
        client.node_remove(cluster.node_id(demoted).unwrap(), false),
    )
    .await;
    assert_eq!(code_of(refused), ErrorCode::BadRequest);
    within(
        "node rm --force",
        client.node_remove(cluster.node_id(demoted).unwrap(), true),
    )
    .await
    .unwrap();
    cluster.set_member(demoted, false).unwrap();
    let status = cluster.wait_membership(3, 0).await.unwrap();
    assert_eq!(
        sorted(&status.cluster.unwrap().voters),
        raft_ids(&cluster, &voters)
    );
    wait_nodes(&cluster, "the removed node gone", |nodes| {
        expect_members(&cluster, nodes, &voters, &[])
    })
    .await;
    write_some(&cluster, "members/removed", 3).await;

    // leave on the leader: it hands over leadership, then removes itself.
    let (leaver, _) = cluster.leader_status().await.unwrap();
    let client = cluster.client(leaver).await.unwrap();
    let done = within("leave", client.leave()).await.unwrap();
    eprintln!("leave: {}", done.message);
    cluster.set_member(leaver, false).unwrap();
    let remaining: Vec<usize> = voters
        .iter()
        .copied()
        .filter(|index| *index != leaver)
        .collect();
    let status = cluster.wait_membership(2, 0).await.unwrap();
    assert_eq!(
        sorted(&status.cluster.unwrap().voters),
        raft_ids(&cluster, &remaining)
    );
    let leader = cluster.leader().await.unwrap();
    assert_ne!(leader, leaver);
    wait_nodes(&cluster, "the leaver gone", |nodes| {
        expect_members(&cluster, nodes, &remaining, &[])
    })
    .await;
    if let Ok(client) = cluster.client(leaver).await {
        eprintln!("the leaver's own status: {:?}", client.status().await);
    }

    write_some(&cluster, "members/after-leave", 5).await;
    cluster.wait_replicated().await.unwrap();
    assert_nothing_lost(&cluster).await;
}

/// With one voter of three dead, removing a second (live) voter would leave no quorum: refused
/// with WouldLoseQuorum and nothing changes. With force it proceeds; the change itself needs a
/// quorum of the new configuration (the leader and the dead voter), so it completes once the
/// dead voter is back.
#[tokio::test]
async fn quorum_losing_removal_is_refused_unless_forced() {
    let mut cluster = three_static().await;
    write_some(&cluster, "quorum/before", 10).await;
    cluster.wait_caught_up().await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let followers: Vec<usize> = (0..3).filter(|index| *index != leader).collect();
    let (dead, victim) = (followers[0], followers[1]);
    cluster.kill9(dead).unwrap();
    // The precondition: the leader knows that voter is gone (a kill a moment ago may still
    // look alive to it).
    let dead_id = cluster.node_id(dead).unwrap();
    wait_nodes(
        &cluster,
        "the leader to see the killed voter unreachable",
        |nodes| match nodes.iter().find(|node| node.node_id == dead_id) {
            Some(node) if node.reachable == Some(false) => Ok(()),
            Some(node) => Err(format!("reachable {:?}", node.reachable)),
            None => Err("the killed voter is not listed".to_string()),
        },
    )
    .await;

    let before = within("status", cluster.status(leader))
        .await
        .unwrap()
        .cluster
        .unwrap();
    let client = cluster.client(leader).await.unwrap();
    let nodes_before = members(
        &within("node ls", client.node_list(LINEARIZABLE))
            .await
            .unwrap(),
    );
    eprintln!("asking to remove a second voter while one is dead");
    let refused = within(
        "node rm of a live voter",
        client.node_remove(cluster.node_id(victim).unwrap(), false),
    )
    .await;
    assert_eq!(code_of(refused), ErrorCode::WouldLoseQuorum);
    let after = within("status", cluster.status(leader))
        .await
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(sorted(&after.voters), sorted(&before.voters));
    assert_eq!(after.learners, before.learners);
    assert_eq!(after.kv_revision, before.kv_revision);
    assert_eq!(after.nodes, before.nodes);
    let nodes_after = members(
        &within("node ls", client.node_list(LINEARIZABLE))
            .await
            .unwrap(),
    );
    assert_eq!(
        nodes_after.keys().collect::<Vec<_>>(),
        nodes_before.keys().collect::<Vec<_>>()
    );
    // The two live voters still make a quorum: writes go on.
    write_some(&cluster, "quorum/refused", 5).await;

    // Forced: runs in the background, since it can only commit once the dead voter is back.
    let socket = cluster.socket_path(leader).unwrap();
    let victim_id = cluster.node_id(victim).unwrap();
    let mut forced = tokio::spawn(async move {
        let client = symphony_ctl::Client::connect(&socket).await?;
        client.node_remove(victim_id, true).await
    });
    let early = tokio::time::timeout(Duration::from_secs(3), &mut forced).await;
    let outcome = match early {
        Ok(joined) => {
            eprintln!("the forced removal answered while a voter was dead");
            cluster.restart(dead).await.unwrap();
            joined.unwrap()
        }
        Err(_) => {
            eprintln!("the forced removal waits for the dead voter; restarting it");
            cluster.restart(dead).await.unwrap();
            tokio::time::timeout(TIMEOUT, forced)
                .await
                .unwrap()
                .unwrap()
        }
    };
    outcome.unwrap();
    cluster.set_member(victim, false).unwrap();
    let status = cluster.wait_membership(2, 0).await.unwrap();
    assert_eq!(
        sorted(&status.cluster.unwrap().voters),
        raft_ids(&cluster, &[leader, dead])
    );
    wait_nodes(&cluster, "the forcibly removed node gone", |nodes| {
        expect_members(&cluster, nodes, &[leader, dead], &[])
    })
    .await;

    write_some(&cluster, "quorum/after", 5).await;
    cluster.wait_replicated().await.unwrap();
    assert_nothing_lost(&cluster).await;
}

/// Three managers, two killed for good: `recover` on the survivor makes it a one-voter cluster
/// that keeps all the data and takes writes.
#[tokio::test]
async fn force_new_cluster_recovers_a_survivor_with_its_data() {
    let mut cluster = three_static().await;
    write_some(&cluster, "recover/before", 20).await;
    // The survivor must hold every acknowledged write before the others die.
    cluster.wait_caught_up().await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let survivor = (0..3).find(|index| *index != leader).unwrap();
    let before = cluster.status(survivor).await.unwrap().cluster.unwrap();
    for index in (0..3).filter(|index| *index != survivor) {
        cluster.kill9(index).unwrap();
        cluster.set_member(index, false).unwrap();
    }

    let client = cluster.client(survivor).await.unwrap();
    let done = within("recover", client.recover_force_new_cluster())
        .await
        .unwrap();
    eprintln!("recover: {}", done.message);
    let status = cluster.wait_membership(1, 0).await.unwrap();
    assert_eq!(cluster.leader().await.unwrap(), survivor);
    let view = status.cluster.unwrap();
    assert_eq!(view.voters, vec![cluster.raft_id(survivor).unwrap()]);
    assert_eq!(view.cluster_id, before.cluster_id);
    assert!(view.kv_revision >= before.kv_revision);
    cluster
        .verify_acknowledged_on(survivor, LINEARIZABLE)
        .await
        .unwrap();
    wait_nodes(&cluster, "only the survivor as a member", |nodes| {
        expect_members(&cluster, nodes, &[survivor], &[])
    })
    .await;

    write_some(&cluster, "recover/after", 10).await;
    assert_nothing_lost(&cluster).await;
}

/// A join with a wrong or a rotated manager token is refused with InvalidToken and writes
/// nothing; the right token still works afterwards.
#[tokio::test]
async fn joins_with_a_wrong_or_rotated_token_are_refused() {
    let mut cluster = three_static().await;
    write_some(&cluster, "token/before", 5).await;
    let leader = cluster.leader().await.unwrap();
    let admin = cluster.client(leader).await.unwrap();
    let old_token = admin.token_show(Role::Manager).await.unwrap().token;
    let token = admin.token_rotate(Role::Manager).await.unwrap().token;
    assert_ne!(token, old_token);
    // Same shape as the real token, last character changed.
    let mut wrong = token.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });

    let newcomer = cluster.add_node().await.unwrap();
    let before = cluster.status(leader).await.unwrap().cluster.unwrap();
    let nodes_before = admin.node_list(LINEARIZABLE).await.unwrap().len();
    let addr = cluster.remote_addr(leader).unwrap().to_string();
    let client = cluster.client(newcomer).await.unwrap();
    for (what, bad) in [
        ("a wrong token", &wrong),
        ("the rotated-out token", &old_token),
    ] {
        let refused = within("join", client.join(bad.clone(), addr.clone())).await;
        assert_eq!(code_of(refused), ErrorCode::InvalidToken, "{what}");
        let after = cluster.status(leader).await.unwrap().cluster.unwrap();
        assert_eq!(after.kv_revision, before.kv_revision, "{what}");
        assert_eq!(after.nodes, before.nodes, "{what}");
        assert_eq!(sorted(&after.voters), sorted(&before.voters), "{what}");
        assert_eq!(after.learners, before.learners, "{what}");
        assert_eq!(
            admin.node_list(LINEARIZABLE).await.unwrap().len(),
            nodes_before,
            "{what}"
        );
        assert_eq!(
            cluster.status(newcomer).await.unwrap().cluster,
            None,
            "{what}: the refused node must stay outside any cluster"
        );
    }

    // The right token still admits it.
    let info = within("join", client.join(token, addr)).await.unwrap();
    assert_eq!(info.role, Role::Manager);
    assert_eq!(info.cluster_id, before.cluster_id);
    cluster.set_member(newcomer, true).unwrap();
    cluster.wait_membership(3, 1).await.unwrap();

    write_some(&cluster, "token/after", 5).await;
    cluster.wait_replicated().await.unwrap();
    assert_nothing_lost(&cluster).await;
}

/// A manager of one cluster cannot join another: refused (WrongCluster, or AlreadyInitialised
/// from the joining node itself), and neither cluster changes.
#[tokio::test]
async fn a_member_of_another_cluster_cannot_join() {
    let cluster = three_static().await;
    write_some(&cluster, "a/data", 5).await;
    let mut other = Cluster::start(1).await.unwrap();
    other.bootstrap_dynamic().await.unwrap();
    other.put_any("b/data", b"other cluster").await.unwrap();

    let leader = cluster.leader().await.unwrap();
    let a_before = cluster.status(leader).await.unwrap().cluster.unwrap();
    let b_before = other.status(0).await.unwrap().cluster.unwrap();
    assert_ne!(a_before.cluster_id, b_before.cluster_id);

    // B's manager asks to join A.
    let a_token = cluster.manager_token(leader).await.unwrap();
    let b_client = other.client(0).await.unwrap();
    let refused = within(
        "join of B's manager to A",
        b_client.join(a_token, cluster.remote_addr(leader).unwrap().to_string()),
    )
    .await;
    let code = code_of(refused);
    eprintln!("refused with {code}");
    assert!(
        matches!(
            code,
            ErrorCode::WrongCluster | ErrorCode::AlreadyInitialised
        ),
        "got {code}"
    );
    // A follower of A asks to join B.
    let follower = (0..3).find(|index| *index != leader).unwrap();
    let b_token = other.manager_token(0).await.unwrap();
    let a_client = cluster.client(follower).await.unwrap();
    let refused = within(
        "join of A's follower to B",
        a_client.join(b_token, other.remote_addr(0).unwrap().to_string()),
    )
    .await;
    let code = code_of(refused);
    eprintln!("refused with {code}");
    assert!(
        matches!(
            code,
            ErrorCode::WrongCluster | ErrorCode::AlreadyInitialised
        ),
        "got {code}"
    );

    let a_after = cluster.status(leader).await.unwrap().cluster.unwrap();
    assert_eq!(a_after.cluster_id, a_before.cluster_id);
    assert_eq!(a_after.kv_revision, a_before.kv_revision);
    assert_eq!(a_after.nodes, a_before.nodes);
    assert_eq!(sorted(&a_after.voters), sorted(&a_before.voters));
    let b_after = other.status(0).await.unwrap().cluster.unwrap();
    assert_eq!(b_after.cluster_id, b_before.cluster_id);
    assert_eq!(b_after.kv_revision, b_before.kv_revision);
    assert_eq!(b_after.nodes, b_before.nodes);
    assert_eq!(b_after.voters, b_before.voters);
    let follower_view = cluster.status(follower).await.unwrap().cluster.unwrap();
    assert_eq!(follower_view.cluster_id, a_before.cluster_id);

    write_some(&cluster, "a/after", 3).await;
    assert_nothing_lost(&cluster).await;
    assert_nothing_lost(&other).await;
}

/// `snapshot save` on the leader writes a file; `symphony-agent snapshot restore` seeds a fresh
/// manager from it, which starts as a one-manager cluster with all the data.
#[tokio::test]
async fn snapshot_save_and_restore_seed_a_fresh_manager() {
    let cluster = three_static().await;
    write_some(&cluster, "snap/data", 40).await;
    let leader = cluster.leader().await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("cluster.snapshot");
    let client = cluster.client(leader).await.unwrap();
    let info = within(
        "snapshot save",
        client.snapshot_save(path.to_str().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(info.path, path.to_str().unwrap());
    assert!(info.bytes > 0);
    // `bytes` is the snapshot's size; the file may add a header around it.
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert!(
        on_disk >= info.bytes,
        "file {on_disk} bytes, reported {}",
        info.bytes
    );
    eprintln!("snapshot: {} bytes reported, {on_disk} on disk", info.bytes);
    let source = cluster.status(leader).await.unwrap().cluster.unwrap();

    let work = tempfile::tempdir().unwrap();
    let config_dir = work.path().join("config");
    let said = restore_snapshot(None, &path, &config_dir).unwrap();
    eprintln!("restore: {said}");
    let restored = AgentProcess::start_with(AgentOptions {
        work_dir: Some(work.path().to_path_buf()),
        ..AgentOptions::default()
    })
    .await
    .unwrap();
    let status = restored.wait_leader(TIMEOUT).await.unwrap();
    let view = status.cluster.clone().unwrap();
    assert_eq!(view.voters, vec![status.raft_node_id]);
    assert!(view.learners.is_empty());
    assert_eq!(view.role, Role::Manager);
    assert!(view.kv_revision >= cluster.acknowledged().max_revision());
    eprintln!(
        "restored cluster id {} (source {})",
        view.cluster_id, source.cluster_id
    );

    let mut client = restored.client().await.unwrap();
    cluster
        .acknowledged()
        .verify(&mut client, "", LINEARIZABLE, "the restored manager")
        .await
        .unwrap();
    let revision = client
        .kv_put("snap/restored", b"new life".to_vec(), None)
        .await
        .unwrap()
        .revision;
    assert!(revision > view.kv_revision);
    let entry = client
        .kv_get("snap/restored", LINEARIZABLE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.value, b"new life");
    assert_nothing_lost(&cluster).await;
}

/// Availability and labels are cluster state: set through a follower, they survive the loss of
/// the leader and are what the new leader reports.
#[tokio::test]
async fn drain_and_labels_persist_across_a_leader_change() {
    let mut cluster = three_static().await;
    let leader = cluster.leader().await.unwrap();
    let follower = (leader + 1) % 3;
    let target = cluster.node_id((leader + 2) % 3).unwrap();
    let client = cluster.client(follower).await.unwrap();
    let updated = within(
        "node update",
        client.node_update(
            target,
            Some("drain".into()),
            std::collections::BTreeMap::from([("zone".to_string(), "b".to_string())]),
            vec![],
        ),
    )
    .await
    .unwrap();
    assert_eq!(updated.availability, "drain");
    assert_eq!(updated.labels.get("zone").map(String::as_str), Some("b"));
    write_some(&cluster, "drain", 10).await;

    cluster.kill9(leader).unwrap();
    let new_leader = cluster.leader().await.unwrap();
    assert_ne!(new_leader, leader);
    let client = cluster.client(new_leader).await.unwrap();
    let node = within(
        "node inspect",
        client.node_inspect(target, ReadConsistency::Linearizable),
    )
    .await
    .unwrap();
    assert_eq!(node.availability, "drain");
    assert_eq!(node.labels.get("zone").map(String::as_str), Some("b"));

    // A bad availability is refused and changes nothing.
    let refused = within(
        "node update",
        client.node_update(target, Some("gone".into()), Default::default(), vec![]),
    )
    .await;
    assert!(refused.is_err());
    assert_nothing_lost(&cluster).await;
}
