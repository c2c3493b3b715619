//! One simulated worker, after its join: what a real worker's session loop, assignments feed
//! and report sender do (`worker/session.rs`, `exec/feed.rs`, `exec/report.rs` in the agent),
//! with the executor replaced by "it runs": every task assigned to run is reported `running`
//! at once, every task asked to stop `shutdown`.
//!
//! Like a real worker it keeps one multiplexed connection to its manager, over which it
//! refreshes its session every few seconds, follows its assignments stream (the whole set
//! first, then increments numbered without gaps; a gap or a broken stream opens the stream
//! again) and sends its reports, one batch in flight at a time, everything that arrived
//! meanwhile in the next batch; the manager passes them to the leader. It does not gossip:
//! the bench starts the managers with a liveness grace that keeps it `ready` regardless. Nor
//! does it dial again when its connection breaks (the managers stay up in this bench): its
//! stream restarts are counted, and the bench's deadline says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use symphony_agent::remote::proto::{
    Assignment, AssignmentUpdate, ManagerContact, Remote, RemoteCall, RemoteReply, RemoteRequest,
};
use symphony_consensus::{DesiredState, TaskReport, TaskState};
use symphony_wire::Mux;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::error::SimError;
use super::join::Joined;
use super::link;
use super::tally::Tally;

/// How often the session is refreshed (a real worker's period).
const SESSION_EVERY: Duration = Duration::from_secs(5);
/// How long a session or report call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The most reports one call carries (a real worker's batch).
const REPORT_BATCH: usize = 1_000;
/// How long the first session call may keep failing.
const SESSION_DEADLINE: Duration = Duration::from_secs(30);
/// How long after a failure the call or stream is tried again.
const RETRY: Duration = Duration::from_millis(200);

/// A worker that joined, and the manager it talks to.
#[derive(Debug)]
pub struct SimWorker {
    /// Its index among the simulated workers, for the tally.
    pub index: usize,
    pub joined: Joined,
    pub manager: ManagerContact,
}

/// The worker's connection and who it is on it; cheap to clone.
#[derive(Clone)]
struct Conn {
    link: Mux<Remote>,
    node_id: u64,
    secret: String,
}

impl Conn {
    async fn call(&self, request: RemoteRequest) -> Result<RemoteReply, SimError> {
        let call = RemoteCall {
            request,
            forwarded: false,
        };
        Ok(self.link.call(&call, Some(CALL_TIMEOUT)).await?)
    }
}

impl SimWorker {
    /// Opens the worker's connection and proves its session once; then [`SimWorker::run`].
    pub async fn connect(self) -> Result<Connected, SimError> {
        let joined = &self.joined;
        let link = link::dial(
            &self.manager.remote_addr,
            joined.node_id,
            link::As::Member(&joined.material),
        )
        .await?;
        let conn = Conn {
            link,
            node_id: joined.node_id,
            secret: joined.secret.clone(),
        };
        // A manager that has not applied the join yet does not know the worker.
        let deadline = Instant::now() + SESSION_DEADLINE;
        while let Err(error) = session(&conn, joined).await {
            if Instant::now() >= deadline {
                return Err(error);
            }
            tokio::time::sleep(RETRY).await;
        }
        Ok(Connected { worker: self, conn })
    }
}

/// A worker whose first session call was answered.
pub struct Connected {
    worker: SimWorker,
    conn: Conn,
}

impl std::fmt::Debug for Connected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connected")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl Connected {
    /// Runs until dropped (the bench's end): the session, the stream and the reports. Errors
    /// on the way are counted in `tally` and retried, as a real worker does.
    pub async fn run(self, tally: Arc<Tally>) {
        let Connected { worker, conn } = self;
        let (reports, queue) = mpsc::unbounded_channel();
        // Dropped with this future, and the two loops with it.
        let mut loops = JoinSet::new();
        loops.spawn(refresh_sessions(
            conn.clone(),
            Arc::new(worker.joined),
            tally.clone(),
        ));
        loops.spawn(send_reports(conn.clone(), queue, tally.clone()));
        follow(conn, worker.index, reports, tally).await;
    }
}

/// One session call; the manager must know the worker and be of its cluster.
async fn session(conn: &Conn, joined: &Joined) -> Result<(), SimError> {
    let reply = conn
        .call(RemoteRequest::Session {
            node_id: joined.node_id,
            secret: joined.secret.clone(),
            // It does not gossip: no view to be sent.
            members_seen: None,
            keyring_version: joined.keyring_version,
        })
        .await?;
    match reply {
        RemoteReply::Session(reply) if reply.cluster_id == joined.cluster_id => Ok(()),
        RemoteReply::Session(reply) => Err(SimError::Unexpected(format!(
            "a manager of cluster {} answered the session",
            reply.cluster_id
        ))),
        _ => Err(SimError::Unexpected(
            "the session was answered with something else".into(),
        )),
    }
}

async fn refresh_sessions(conn: Conn, joined: Arc<Joined>, tally: Arc<Tally>) {
    let mut ticks = tokio::time::interval(SESSION_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is at once, and the session was just proved.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if session(&conn, &joined).await.is_err() {
            tally.session_failed();
        }
    }
}

/// Follows the worker's assignments stream, opening it again after a gap or a break, and
/// queues a report for every task to start or stop.
async fn follow(
    conn: Conn,
    worker: usize,
    reports: mpsc::UnboundedSender<TaskReport>,
    tally: Arc<Tally>,
) {
    // What was reported of each task on this worker: its desired state when reported.
    let mut known: HashMap<u64, DesiredState> = HashMap::new();
    let mut first = true;
    loop {
        let request = RemoteCall {
            request: RemoteRequest::Assignments {
                node_id: conn.node_id,
                secret: conn.secret.clone(),
                heartbeat_ms: None,
            },
            forwarded: false,
        };
        if let Ok(mut stream) = conn.link.stream(&request).await {
            let mut seq: Option<u64> = None;
            while let Some(Ok(RemoteReply::Assignments(update))) = stream.next().await {
                let next = match &update {
                    AssignmentUpdate::Full { seq, .. } => Some(*seq),
                    AssignmentUpdate::Increment { seq: got, .. } => {
                        seq.map(|last| last + 1).filter(|expected| expected == got)
                    }
                    AssignmentUpdate::Heartbeat { seq: got, .. } => seq.filter(|last| last == got),
                    // A simulated worker keeps no TLS files: the bundle changes nothing here.
                    AssignmentUpdate::Trust { .. } => continue,
                };
                // A gap: open the stream again, which starts from a full set.
                let Some(next) = next else { break };
                seq = Some(next);
                let tasks = match update {
                    AssignmentUpdate::Full { tasks, .. } => {
                        if std::mem::take(&mut first) {
                            tally.stream_opened();
                        }
                        tasks
                    }
                    AssignmentUpdate::Increment { changed, .. } => changed,
                    AssignmentUpdate::Heartbeat { .. } | AssignmentUpdate::Trust { .. } => continue,
                };
                act_on(worker, &tasks, &mut known, &reports, &tally);
            }
        }
        tally.stream_restarted();
        tokio::time::sleep(RETRY).await;
    }
}

/// Queues the reports `tasks` call for: `running` for each newly assigned to run,
/// `shutdown` for each asked to stop.
fn act_on(
    worker: usize,
    tasks: &[Assignment],
    known: &mut HashMap<u64, DesiredState>,
    reports: &mpsc::UnboundedSender<TaskReport>,
    tally: &Tally,
) {
    let now = Instant::now();
    let mut placed = Vec::new();
    for task in tasks {
        if known.get(&task.task_id) == Some(&task.desired) {
            continue;
        }
        let state = match task.desired {
            DesiredState::Running => {
                placed.push(task.task_id);
                TaskState::Running
            }
            DesiredState::Shutdown => TaskState::Shutdown,
        };
        known.insert(task.task_id, task.desired);
        let _ = reports.send(TaskReport {
            task_id: task.task_id,
            state,
            exit_code: None,
            error: None,
            health: None,
        });
    }
    if !placed.is_empty() {
        tally.placed(worker, &placed, now);
    }
}

/// Sends the queued reports to the worker's manager, one batch at a time, until each is
/// recorded; a failed batch is sent again (the log ignores what a task already passed).
async fn send_reports(
    conn: Conn,
    mut queue: mpsc::UnboundedReceiver<TaskReport>,
    tally: Arc<Tally>,
) {
    let mut pending: Vec<TaskReport> = Vec::new();
    loop {
        if pending.is_empty() {
            match queue.recv().await {
                Some(report) => pending.push(report),
                None => return,
            }
        }
        while let Ok(report) = queue.try_recv() {
            pending.push(report);
        }
        let batch: Vec<TaskReport> = pending.iter().take(REPORT_BATCH).cloned().collect();
        let count = batch.len();
        let running: Vec<u64> = batch
            .iter()
            .filter(|report| report.state == TaskState::Running)
            .map(|report| report.task_id)
            .collect();
        let sent = conn
            .call(RemoteRequest::TaskReports {
                node_id: conn.node_id,
                secret: conn.secret.clone(),
                reports: batch,
            })
            .await;
        match sent {
            Ok(RemoteReply::Recorded) => {
                tally.reported(&running, Instant::now());
                pending.drain(..count);
            }
            other => {
                let why = match other {
                    Ok(reply) => format!("unexpected reply {reply:?}"),
                    Err(error) => error.to_string(),
                };
                tally.report_retried(why);
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
