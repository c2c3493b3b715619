//! `testnet status`: what the backend says of each node (running, paused, killed) joined with
//! what the cluster says (each answering node's own Raft state, the leader, and the status the
//! leader gives every node in `node ls`).
//!
//! Every control call has a short deadline and paused nodes are not asked at all, so a status
//! always comes back, with a note for each node that did not answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use symphony_ctl::Client;
use symphony_ctl::proto::{NodeInfo, ReadConsistency, Role, StatusInfo};
use tokio::task::JoinSet;

use super::backend::{Backend, BackendKind, ProcessState};
use super::plan::Addressing;
use super::rpc::call;
use super::state::{Intent, LabState, NodeRecord};

/// How long one status or `node ls` call may take.
pub const STATUS_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A testnet as `testnet status` shows it (and `--json` prints).
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    pub dir: PathBuf,
    pub backend: BackendKind,
    pub subnet: String,
    pub cluster_id: Option<String>,
    /// The node that says it leads, with the highest term among those that do.
    pub leader: Option<String>,
    pub term: Option<u64>,
    /// The sides of the current partition, if any.
    pub partition: Option<Vec<Vec<String>>>,
    /// Which node's `node ls` the status column comes from, and whether that was a
    /// linearizable read on the leader (`false`: a possibly stale local replica).
    pub listed_by: Option<String>,
    pub listed_by_leader: bool,
    pub nodes: Vec<NodeRow>,
}

/// One node's line.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub name: String,
    pub role: Role,
    /// `running`, `paused`, `killed` or `stopped` (by testnet), `exited` (by itself) or `not
    /// started`.
    pub process: String,
    pub pid: Option<u32>,
    pub container: Option<String>,
    pub remote_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    /// The node's own Raft state (`leader`, `follower`, `candidate`, `learner`, ...), when it
    /// answered.
    pub raft_state: Option<String>,
    /// Whether this is the leader named in [`LabStatus::leader`].
    pub leader: bool,
    pub term: Option<u64>,
    /// `ready`, `down` or `left`, as the leader's `node ls` says.
    pub status: Option<String>,
    pub node_id: Option<u64>,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// Why the cluster columns are empty, when they are.
    pub note: Option<String>,
}

impl LabStatus {
    /// The row of node `name`.
    pub fn node(&self, name: &str) -> Option<&NodeRow> {
        self.nodes.iter().find(|node| node.name == name)
    }

    /// How many nodes `node ls` shows as ready.
    pub fn ready(&self) -> usize {
        self.nodes
            .iter()
            .filter(|node| node.status.as_deref() == Some("ready"))
            .count()
    }
}

/// The backend's word on a node, as the table shows it.
fn process_word(backend: &dyn Backend, node: &NodeRecord) -> (ProcessState, &'static str) {
    if node.handle.is_none() {
        return (ProcessState::Gone, "not started");
    }
    let state = backend.probe(node);
    let word = match (state, node.intent) {
        (ProcessState::Running, _) => "running",
        (ProcessState::Paused, _) => "paused",
        (ProcessState::Gone, Intent::Killed) => "killed",
        (ProcessState::Gone, Intent::Stopped) => "stopped",
        (ProcessState::Gone, _) => "exited",
    };
    (state, word)
}

/// Gathers the status of every node of `lab`.
pub async fn gather(lab: &LabState, backend: &dyn Backend) -> LabStatus {
    let mut rows = Vec::with_capacity(lab.nodes.len());
    let mut asks = JoinSet::new();
    for (index, node) in lab.nodes.iter().enumerate() {
        let (state, word) = process_word(backend, node);
        rows.push(NodeRow {
            name: node.name.clone(),
            role: node.role,
            process: word.to_string(),
            pid: node.pid(),
            container: node
                .handle
                .as_ref()
                .and_then(|handle| handle.container().map(str::to_string)),
            remote_addr: node.remote_addr,
            raft_addr: node.raft_addr,
            raft_state: None,
            leader: false,
            term: None,
            status: None,
            node_id: node.node_id,
            socket: node.socket_path(),
            log: node.log_path.clone(),
            note: match state {
                ProcessState::Running => None,
                ProcessState::Paused => Some("paused: not asked".to_string()),
                ProcessState::Gone => Some("not running".to_string()),
            },
        });
        if state == ProcessState::Running {
            let socket = node.socket_path();
            asks.spawn(async move {
                let answer = call(&socket, STATUS_CALL_TIMEOUT, async |client: &mut Client| {
                    client.status().await
                })
                .await
                .map_err(|error| error.to_string());
                (index, answer)
            });
        }
    }
    let mut statuses: BTreeMap<usize, StatusInfo> = BTreeMap::new();
    while let Some(joined) = asks.join_next().await {
        let Ok((index, answer)) = joined else {
            continue;
        };
        match answer {
            Ok(status) => {
                statuses.insert(index, status);
            }
            Err(error) => {
                if let Some(row) = rows.get_mut(index) {
                    row.note = Some(error);
                }
            }
        }
    }
    for (index, status) in &statuses {
        let Some(row) = rows.get_mut(*index) else {
            continue;
        };
        row.node_id = Some(status.node_id);
        match &status.cluster {
            Some(cluster) => {
                row.raft_state = Some(cluster.raft_state.clone());
                row.term = Some(cluster.term);
            }
            None => row.note = Some("not in a cluster".to_string()),
        }
    }
    // The leader: a node that says it leads, the highest term winning (a leader cut off from
    // the majority may still believe it leads, in an older term).
    let leader = statuses
        .iter()
        .filter_map(|(index, status)| {
            let cluster = status.cluster.as_ref()?;
            (cluster.raft_state == "leader").then_some((*index, cluster.term))
        })
        .max_by_key(|(_, term)| *term);
    for (index, status) in &statuses {
        let Some(row) = rows.get_mut(*index) else {
            continue;
        };
        let claims = status
            .cluster
            .as_ref()
            .is_some_and(|cluster| cluster.raft_state == "leader");
        if leader.is_some_and(|(chosen, _)| chosen == *index) {
            row.leader = true;
        } else if claims {
            row.note = Some("stale leader: another leads in a newer term".to_string());
        }
    }
    let listing = node_list(lab, leader.map(|(index, _)| index), &statuses).await;
    let listed_by = listing
        .as_ref()
        .and_then(|(index, _)| lab.nodes.get(*index).map(|node| node.name.clone()));
    let listed_by_leader = match (&listing, leader) {
        (Some((by, _)), Some((chosen, _))) => *by == chosen,
        _ => false,
    };
    if let Some((_, listing)) = listing {
        let by_id: BTreeMap<u64, &NodeInfo> = listing.iter().map(|n| (n.node_id, n)).collect();
        for row in &mut rows {
            if let Some(info) = row.node_id.and_then(|id| by_id.get(&id)) {
                row.status = Some(info.status.clone());
            }
        }
    }
    LabStatus {
        dir: lab.dir.clone(),
        backend: lab.backend,
        subnet: match lab.addressing {
            Addressing::Subnet => lab.subnet.to_string(),
            Addressing::OsPorts => "127.0.0.1 (ports from the OS)".to_string(),
        },
        cluster_id: lab.cluster_id.clone(),
        leader: leader.and_then(|(index, _)| lab.nodes.get(index).map(|n| n.name.clone())),
        term: leader.map(|(_, term)| term),
        partition: lab.partition.clone(),
        listed_by,
        listed_by_leader,
        nodes: rows,
    }
}

/// `node ls` from the leader (linearizable), or else from any manager that answered (its
/// local replica), with the index of the node that answered.
async fn node_list(
    lab: &LabState,
    leader: Option<usize>,
    answered: &BTreeMap<usize, StatusInfo>,
) -> Option<(usize, Vec<NodeInfo>)> {
    let mut candidates: Vec<(usize, ReadConsistency)> = Vec::new();
    if let Some(leader) = leader {
        candidates.push((leader, ReadConsistency::Linearizable));
    }
    for (index, status) in answered {
        let manager = status
            .cluster
            .as_ref()
            .is_some_and(|cluster| cluster.role == Role::Manager);
        if manager && Some(*index) != leader {
            candidates.push((*index, ReadConsistency::Stale));
        }
    }
    for (index, consistency) in candidates {
        let Some(node) = lab.nodes.get(index) else {
            continue;
        };
        let listing = call(
            &node.socket_path(),
            STATUS_CALL_TIMEOUT,
            async move |client: &mut Client| client.node_list(consistency).await,
        )
        .await;
        if let Ok(listing) = listing {
            return Some((index, listing));
        }
    }
    None
}
